# consortium — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
SIM_SEEDS ?= 200
PYTEST_FLAGS ?=

##@ Setup
.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (need Python >= 3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 required")'
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the project with its test extras

##@ Run
.PHONY: demo
demo: install ## start a local 4-validator BFT consortium (no cluster) and commit blocks
	$(VENV)/bin/consortium demo --data-dir data/demo

.PHONY: node-dev
node-dev: install ## run one solo node on 127.0.0.1:7050 with data in ./data/dev
	$(VENV)/bin/consortium-node dev --data-dir data/dev --listen 127.0.0.1:7050

##@ Code
PROTO_DIR := proto
PROTO_SRC := $(wildcard $(PROTO_DIR)/consortium_api/v1/*.proto)

.PHONY: proto
proto: install ## regenerate the gRPC/protobuf Python code from proto/
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$(PROTO_DIR) --grpc_python_out=$(PROTO_DIR) \
		--mypy_out=$(PROTO_DIR) --mypy_grpc_out=$(PROTO_DIR) $(PROTO_SRC)

.PHONY: verify
verify: install ## regenerate generated code and fail if it differs from what is committed
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(PY) -m grpc_tools.protoc -I $(PROTO_DIR) --python_out=$$tmp --grpc_python_out=$$tmp \
		--mypy_out=$$tmp --mypy_grpc_out=$$tmp $(PROTO_SRC) && \
	diff -r -x '__init__.py' -x '__pycache__' $$tmp/consortium_api/v1 $(PROTO_DIR)/consortium_api/v1 \
		| grep -v '^Only in $(PROTO_DIR)' | grep . && { echo "error: generated code is stale, run 'make proto'"; exit 1; } || echo "generated code up to date"

.PHONY: lint
lint: install ## ruff (incl. unused args, complexity), mypy --strict, import-linter allowlists, vulture
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=. $(VENV)/bin/lint-imports
	$(VENV)/bin/vulture

.PHONY: fmt
fmt: install ## auto-format with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

##@ Test
.PHONY: test-fast
# The mutation check runs here too (about a minute): a change to an engine or to the simulator
# that lets a planted consensus bug pass every CI seed fails test-fast, not only `make sim-mutants`
# (c53eb9b's raft commit heartbeat did, unnoticed for a session).
test-fast: verify lint ## lint + unit, sim and integration tests (no cluster), then the sim's mutation check
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_FLAGS) -m "not e2e" --sim-seeds $(SIM_SEEDS) tests
	$(MAKE) --no-print-directory sim-mutants

.PHONY: test
# The e2e tier runs on kind (cluster/cluster.mk: kind-up, offline here); the operator tier in
# test-fast needs only the kube-apiserver + etcd binaries (control-plane-bins), no cluster.
# The self-booted cluster (make cluster-up / make e2e) is no longer part of `make test`.
test: install ## everything: test-fast (operator tier on its own kube-apiserver), then the e2e tier on a kind cluster
	@rc=0; \
	$(MAKE) --no-print-directory test-fast && \
	$(MAKE) --no-print-directory kind-up >/dev/null && \
	E2E_KUBECONFIG=$(KIND_KUBECONFIG) $(MAKE) --no-print-directory test-e2e || rc=$$?; \
	if [ "$${KEEP_CLUSTER:-0}" != 1 ]; then $(MAKE) --no-print-directory kind-down || { [ $$rc -ne 0 ] || rc=1; }; fi; \
	exit $$rc

SIM_LONG_SECONDS ?= 3600
SIM_LONG_TICKS ?= 10000
.PHONY: test-sim-long
test-sim-long: install ## engine sims at 2,000 seeds, then whole-node seeds of 10,000 ticks for an hour
	$(PY) -m pytest -q -p no:cacheprovider -m sim --sim-seeds 2000 tests/sim/test_raft_sim.py tests/sim/test_bft_sim.py
	$(PY) -m tests.sim.long --seconds $(SIM_LONG_SECONDS) --ticks $(SIM_LONG_TICKS)

.PHONY: sim-mutants
sim-mutants: install ## plant classic consensus bugs one at a time; each must fail a seed < SIM_SEEDS
	$(PY) -m tests.sim.mutants --seeds $(SIM_SEEDS)

##@ Benchmarks
.PHONY: bench
bench: install bench-deps ## run the benchmarks; results in bench/results/latest.json
	$(PY) -m bench.run

-include cluster/cluster.mk
-include operator/operator.mk
-include bench/bench.mk
-include charts/charts.mk
-include examples/contracts/contracts.mk

# The chart tests in test-fast need helm; cluster-tools installs it (from npm). The operator
# tier needs kube-apiserver and etcd binaries (no running cluster): control-plane-bins.
test-fast: cluster-tools control-plane-bins
