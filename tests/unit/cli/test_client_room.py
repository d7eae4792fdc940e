"""The client room's boundary, read from the source (ast): `consortium_node.client` is an SDK
over the wire API — it may use `crypto` (the one key-file and signature implementation), the
pure `ledger` core (the same bytes every node checks, e.g. governance endorsement messages;
import-linter keeps ledger pure) and its own modules, and no other part of the node
(runtime, transport, storage, consensus, provision, localnet, the CLI); `crypto` itself
depends on nothing of ours. Nothing imports the old
`consortium_node.client` names from the package root (it re-exports nothing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
NODE = ROOT / "node" / "consortium_node"


def _imports(path: Path, package: str) -> list[str]:
    """Absolute names of the modules `path` imports (relative imports resolved)."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.append(node.module)
    return out


ALLOWED = ("consortium_node.client", "consortium_node.crypto", "consortium_node.ledger")


def test_the_client_uses_only_itself_crypto_and_the_pure_ledger() -> None:
    files = sorted((NODE / "client").glob("*.py"))
    assert {f.stem for f in files} >= {"errors", "tx", "keys", "discovery", "rpc", "loadgen"}
    for f in files:
        for name in _imports(f, "consortium_node.client"):
            if name.startswith("consortium_node"):
                assert name in ALLOWED or name.startswith(tuple(f"{a}." for a in ALLOWED)), (
                    f"client/{f.name} imports {name}"
                )


def test_crypto_depends_on_nothing_of_ours() -> None:
    for name in _imports(NODE / "crypto.py", "consortium_node"):
        assert not name.startswith(("consortium_node", "consortium_operator")), name


def test_nobody_imports_names_from_the_client_package_root() -> None:
    """`from consortium_node.client import tx` (a module) is fine; a name is not."""
    modules = {f.stem for f in (NODE / "client").glob("*.py")}
    offenders: list[str] = []
    for top in ("node", "operator", "tests", "bench"):
        for f in (ROOT / top).rglob("*.py"):
            if ".venv" in f.parts:
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "consortium_node.client":
                    names = {a.name for a in node.names} - modules
                    offenders.extend(f"{f.relative_to(ROOT)}: {n}" for n in sorted(names))
    assert offenders == []
