// The pod sandbox ("pause") binary, built locally because no registry is reachable.
module consortium.local/cluster/pause

go 1.23.0
