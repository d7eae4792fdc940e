"""Every `<!-- run: local -->` block of README.md, in order, as a new user runs them: from a
fresh scratch directory standing for the repository root (a copy of examples/, nothing
else), with a fresh HOME and the project's `consortium` command on PATH (what
`. .venv/bin/activate` gives). Background blocks (`consortium up`) are stopped at the end.

A README command that stops working fails this test, showing the block and its output."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.readme import ROOT, Journey, ReadmeError, blocks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def scratch_env(home: Path) -> dict[str, str]:
    """PATH with this interpreter's bin directory first (its `consortium`), a fresh HOME, and
    none of the caller's CONSORTIUM_* settings (contexts, endpoint, TLS directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSORTIUM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env.pop("VIRTUAL_ENV", None)
    return env


def test_every_local_block_of_the_readme_runs_in_order(tmp_path: Path) -> None:
    todo = blocks("local")
    assert len(todo) >= 10, [b.where() for b in todo]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "examples", repo / "examples")
    home = tmp_path / "home"
    home.mkdir()
    failure, outputs = None, []
    with Journey(cwd=repo, env=scratch_env(home), timeout=300) as journey:
        try:
            outputs = journey.run_all(todo)
        except ReadmeError as e:
            failure = str(e)
    for entry in journey.log:  # shown with -s, and on a failed assertion below
        print(entry.splitlines()[0])
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    joined = "\n".join(outputs)
    # what the README promises along the way
    assert "hello" in joined  # the greeting read back
    assert "proposal 1 EXECUTED" in joined and "proposal 2 EXECUTED" in joined
    assert "backup" in joined  # the key committed before the backup, read after the restore
