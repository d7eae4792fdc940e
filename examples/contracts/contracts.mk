# Example contracts (included from the Makefile). `make contracts` installs what it needs on a
# fresh machine — the AssemblyScript compiler pinned by examples/contracts/package-lock.json
# (npm ci; Node.js >= 18 from the distribution if none is installed) and wasmtime (the
# project's venv) for WAT — and builds examples/contracts/wasm/*.wasm, byte for byte the same
# every time (tests/unit/contracts/test_build.py rebuilds and compares with the committed ones).
CONTRACTS_DIR := examples/contracts
CONTRACTS_STAMP := $(CONTRACTS_DIR)/node_modules/.installed

$(CONTRACTS_STAMP): $(CONTRACTS_DIR)/package.json $(CONTRACTS_DIR)/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	cd $(CONTRACTS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

##@ Contracts
.PHONY: contracts
contracts: install $(CONTRACTS_STAMP) ## build the example contracts (AssemblyScript + WAT) into examples/contracts/wasm/
	$(PY) $(CONTRACTS_DIR)/build.py

# tests/unit/contracts/test_build.py rebuilds the examples with the pinned compiler
test-fast: $(CONTRACTS_STAMP)
