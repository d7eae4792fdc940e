# Helm chart targets; included by the top-level Makefile. helm comes from `make
# cluster-tools` (cluster/cluster.mk: $(HELM) in ~/.cache/consortium/bin).
CHARTS := charts/consortium-crds charts/consortium-operator charts/consortium
HELM ?= $(HOME)/.cache/consortium/bin/helm
CHART_PYTEST_FLAGS ?=

##@ Charts
.PHONY: helm-lint test-charts

helm-lint: cluster-tools ## helm lint the charts (strict)
	@for c in $(CHARTS); do $(HELM) lint --strict $$c || exit 1; done

test-charts: install cluster-tools ## chart tests: helm lint/template, values schema, RBAC vs the operator's calls
	HELM=$(HELM) $(PY) -m pytest -q -p no:cacheprovider $(CHART_PYTEST_FLAGS) tests/charts
