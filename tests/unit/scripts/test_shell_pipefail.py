"""Static check of the shell scripts under cluster/, images/ and .ci/: under `set -o pipefail`
a pipeline into a reader that stops early (`grep -q`, `head`) fails whenever the writer is
still writing — it gets SIGPIPE and the pipeline's status is its 141. That made a fresh
machine's first `make test` fail in cluster/up.sh ("the running Docker engine lacks the
runtime"). Run by pytest as part of the unit tier."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = sorted(
    p
    for d in ("cluster", "images", ".ci")
    for p in (ROOT / d).rglob("*")
    if p.is_file() and (p.suffix == ".sh" or p.read_bytes()[:20].startswith(b"#!/usr/bin/env bash"))
)
# a pipe into a reader that may exit before its writer is done
EARLY_EXIT_READER = re.compile(r"\|\s*(grep\s+-[a-zA-Z]*q|head\b|grep\s+-m)")


def test_scripts_found() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_early_exit_reader_under_pipefail(script: Path) -> None:
    text = script.read_text()
    if "pipefail" not in text:
        return
    bad = [
        f"{script.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if not line.lstrip().startswith("#") and EARLY_EXIT_READER.search(line)
    ]
    assert not bad, "capture the output first, then match it:\n" + "\n".join(bad)
