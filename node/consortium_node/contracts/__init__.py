"""The WebAssembly contract runtime adapter (wasmtime), behind ledger.contracts.ContractVM.

    from consortium_node.contracts import WasmEngine
    vm = WasmEngine(cache_dir=data_dir / "contracts-cache")   # or cache_dir=None
    vm.check_code(code, limits)        # deploy-time validation -> problem or None
    vm.call(code_hash, code, "transfer", input, env, limits) -> CallOutcome

The runtime (runtime/node.py) builds one and injects it into execute_block; the ledger's
rules are in ledger/contracts.py and the ABI in docs/CONTRACTS.md."""

from .engine import ENGINE_VERSION, WasmEngine

__all__ = ["ENGINE_VERSION", "WasmEngine"]
