# The operator's make targets; included from the top-level Makefile.
CRD_DIR := charts/consortium-crds/templates
OPERATOR_NAMESPACE ?=
OPERATOR_FLAGS ?= --standalone --verbose
# cluster.mk's $(KUBECTL) when it exists, else kubectl on PATH
OPERATOR_KUBECTL = $(shell test -x "$(KUBECTL)" && echo "$(KUBECTL)" || echo kubectl)

##@ Operator
.PHONY: operator-run operator-crd
operator-crd: ## install/upgrade the Consortium CRD in the current kubeconfig's cluster
	$(OPERATOR_KUBECTL) apply --server-side -f $(CRD_DIR)

operator-run: install operator-crd ## run the operator locally (kopf) against the current kubeconfig
	$(VENV)/bin/consortium-operator $(OPERATOR_FLAGS) $(if $(OPERATOR_NAMESPACE),--namespace $(OPERATOR_NAMESPACE))
