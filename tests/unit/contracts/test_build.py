"""`make contracts` is reproducible and the committed wasm/*.wasm are what it builds.

The built modules are committed so that the node tests, the README and the operator's
ConfigMaps need no Node.js; this test (run by `make test-fast`, which installs the pinned
AssemblyScript compiler first) rebuilds them twice into temporary directories and asserts
both builds equal the committed bytes — a compiler bump or a source edit without a rebuild
fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import wasmtime

from tests.support.contract_harness import EXAMPLES, WASM


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts_build", EXAMPLES / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rebuild_is_byte_identical_to_the_committed_modules(tmp_path: Path) -> None:
    build = _build_module()
    first = build.build_all(tmp_path / "one")
    second = build.build_all(tmp_path / "two")
    names = sorted(p.name for p in first)
    assert names == sorted(p.name for p in WASM.glob("*.wasm"))
    assert names == ["counter.wasm", "escrow.wasm", "token.wasm"]
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes(), f"{one.name}: two builds differ"
        assert one.read_bytes() == (WASM / one.name).read_bytes(), (
            f"{one.name}: the committed module is stale; run 'make contracts' and commit it"
        )


def test_modules_import_only_the_abi_and_export_memory() -> None:
    abi = {
        "input_len", "input_read", "get", "put", "delete", "emit", "set_result", "caller",
        "height", "abort",
    }  # fmt: skip
    engine = wasmtime.Engine()
    for path in sorted(WASM.glob("*.wasm")):
        module = wasmtime.Module(engine, path.read_bytes())
        imports = {(i.module, i.name) for i in module.imports}
        assert imports <= {("consortium", name) for name in abi}, path.name
        exports = {e.name: e.type for e in module.exports}
        assert isinstance(exports.pop("memory"), wasmtime.MemoryType), path.name
        for name, ty in exports.items():
            assert isinstance(ty, wasmtime.FuncType), (path.name, name)
            assert ty.params == [] and ty.results == [], (path.name, name)


def test_wat_sdk_is_spliced_exactly_once() -> None:
    build = _build_module()
    text = build.wat_with_sdk("(module\n;;@sdk\n)\n")
    assert '(import "consortium" "abort"' in text
    assert all(line.strip() != ";;@sdk" for line in text.splitlines())
    for bad in ("(module)\n", "(module\n;;@sdk\n;;@sdk\n)\n"):
        try:
            build.wat_with_sdk(bad)
        except ValueError as err:
            assert "exactly one" in str(err)
        else:
            raise AssertionError(f"accepted {bad!r}")
