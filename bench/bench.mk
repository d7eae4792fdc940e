# Benchmark targets beyond `make bench` (see bench/README.md). Included by the top-level
# Makefile; PY, VENV and install come from it.

PYSYNCOBJ_VERSION ?= 0.3.17

##@ Benchmarks (parts and helpers)
.PHONY: bench-deps bench-quick bench-raft bench-bft bench-scale bench-operator bench-model bench-table

bench-deps: install ## install what the peer benchmarks need: PySyncObj into the venv, etcd-server, etcd's benchmark tool
	@$(PY) -c 'import pysyncobj' 2>/dev/null || $(PY) -m pip install -q 'pysyncobj==$(PYSYNCOBJ_VERSION)'
	@command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server; }
	@$(PY) -c 'from pathlib import Path; from bench.etcd import build_benchmark_tool; print(build_benchmark_tool(Path("/tmp/etcd-benchmark-build.log")))'

bench-quick: bench-deps ## a tiny run of every benchmark (< 2 min) to check the harness; results in bench/results/latest.json
	$(PY) -m bench.run --quick

bench-raft: bench-deps ## only ours Raft 3 vs etcd vs PySyncObj vs the model peer (with ratios)
	$(PY) -m bench.run --only raft

bench-bft: install ## only ours BFT 4 validators (light, saturation, paced) beside the model peer
	$(PY) -m bench.run --only bft

bench-scale: install ## only the BFT scale table (4/7/10 validators x tx sizes)
	$(PY) -m bench.run --only scale

bench-operator: install ## only the operator figures (local kube-apiserver; test cluster if up)
	$(PY) -m bench.run --only operator

bench-model: install ## only the model peer (bench/model.py: our per-block work without the framework)
	$(PY) -m bench.run --only model

bench-table: ## print the table of the last results (bench/results/latest.json) again
	@$(PY) -c 'import json; from bench.report import print_report; print_report(json.load(open("bench/results/latest.json")))'
