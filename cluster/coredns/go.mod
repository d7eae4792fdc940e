// Build-only module: pins CoreDNS (built by cluster/build-k8s.sh, no registry needed).
module consortium.local/cluster/coredns

go 1.23.0

require github.com/coredns/coredns v1.12.1
