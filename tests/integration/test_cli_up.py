"""`consortium up` on real node processes: a node that cannot start is shown with the last lines
of its log (not a squashed traceback), and a second `up` on a running data directory is refused
with one line, leaving the running nodes (and their ready files) alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from consortium_node.cli import app
from consortium_node.localnet import init_data_dir, parse_manifest
from typer.testing import CliRunner

from .localnets import answers, running

pytestmark = pytest.mark.integration

MANIFEST = {
    "apiVersion": "consortium.dev/v1alpha1",
    "kind": "Consortium",
    "metadata": {"name": "solo"},
    "spec": {
        "chainId": "up-chain",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "acme", "validators": 1}],
    },
}


def _init(tmp_path: Path) -> tuple[Path, Path]:
    manifest = tmp_path / "consortium.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    d = tmp_path / "net"
    init_data_dir(parse_manifest(MANIFEST), d, fsync=False)
    return manifest, d


def test_a_node_that_cannot_start_is_shown_with_its_log_lines(tmp_path: Path) -> None:
    manifest, d = _init(tmp_path)
    (d / "genesis.json").write_text("{")  # the node refuses its genesis file
    r = CliRunner().invoke(app, ["up", "-f", str(manifest), "-d", str(d), "--no-fsync"])
    assert r.exit_code == 1, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: node acme-0 exited with code 2 before serving"), r.stderr
    assert str(d / "nodes" / "acme-0" / "node.log") in lines[0]
    # the node's own error line, verbatim and on a line of its own (indented)
    assert any(ln.startswith("  consortium-node: error: ") for ln in lines[1:]), r.stderr
    assert "Traceback" not in r.stderr


def test_a_second_up_on_a_running_directory_is_refused(tmp_path: Path) -> None:
    manifest, d = _init(tmp_path)
    with running(d) as net:
        node = net.nodes[0]
        ready = node.directory / "ready.json"
        before = ready.read_bytes()
        r = CliRunner().invoke(app, ["up", "-f", str(manifest), "-d", str(d), "--no-fsync"])
        assert r.exit_code == 1, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "is in use" in lines[0], r.stderr
        assert r.stdout == ""
        # the running consortium is untouched: its ready file and its node still answer
        assert ready.read_bytes() == before
        assert node.proc is not None and node.proc.poll() is None
        assert net.tls is not None and answers(node.endpoint, net.tls)
