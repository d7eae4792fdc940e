"""The import boundaries of docs/ARCHITECTURE.md are enforced, not just written down: plant a
forbidden import in a copy of the source tree and `lint-imports` (the contracts in
pyproject.toml, as `make lint` runs them) must fail on it — and pass on the unchanged copy.
Run by pytest in the unit tier (~10 s: three graph builds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = {
    "consortium_node": ROOT / "node" / "consortium_node",
    "consortium_operator": ROOT / "operator" / "consortium_operator",
    "consortium_api": ROOT / "proto" / "consortium_api",
}


def _copy_tree(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, src in PACKAGES.items():
        shutil.copytree(src, dst / name, ignore=ignore)
    shutil.copytree(ROOT / "tests" / "support", dst / "tests" / "support", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plant(path: Path, line: str) -> None:
    text = path.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep, f"{path} has no __future__ import to plant after"
    path.write_text(head + sep + line + "\n" + rest)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_tree(tmp_path_factory.mktemp("pristine"))


def test_contracts_pass_on_the_tree(pristine: Path) -> None:
    proc = _lint(pristine)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("consortium_node/ledger/hashing.py", "import subprocess", "The pure core"),
        ("consortium_node/ledger/state.py", "import logging", "The pure core"),
        ("consortium_node/consensus/raft/log.py", "import time", "The pure core"),
        (
            "consortium_node/metrics.py",
            "from consortium_operator import plan",
            "never imports the operator",
        ),
    ],
)
def test_a_planted_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    _plant(tree / module, line)
    proc = _lint(tree)
    assert proc.returncode != 0, f"{line!r} in {module} passed every contract"
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, proc.stdout


def test_a_new_top_level_module_must_be_placed_in_a_layer(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "consortium_node" / "newroom.py").write_text('"""Unplaced."""\n')
    proc = _lint(tree)
    assert proc.returncode != 0
    assert "Node layers" in proc.stdout.split("Broken contracts", 1)[-1], proc.stdout
