"""The ExportBackup RPC and `consortium backup create --from-node`: what the operator's backup
CronJob runs. A TLS local consortium under load; backups streamed over gRPC into a directory,
verified before they take their name, pruned to --keep; the report the operator reads."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import yaml
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc
from consortium_node.backup.archive import list_backups, opened, verify_backup
from consortium_node.backup.format import BLOCKS
from consortium_node.backup.restore import existing_ledger
from consortium_node.cli import app
from consortium_node.config import NodeConfig
from consortium_node.ledger.block import Block
from consortium_node.localnet import LocalNet, init_data_dir, parse_manifest
from consortium_node.storage.blocks import read_records
from consortium_node.transport.codec import decode_tx
from typer.testing import CliRunner

from tests.integration.test_backup import Load, _manifest
from tests.support.wait import wait_for


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNet, Load]]:
    root = tmp_path_factory.mktemp("backup-rpc")
    init_data_dir(parse_manifest(_manifest("bkrpc")), root / "net", fsync=False)
    net = LocalNet(root / "net")
    net.start()
    load = Load(net)
    thread = threading.Thread(target=load.run, daemon=True)
    try:
        thread.start()
        wait_for(lambda: len(load.acked) >= 100, 60, "100 txs committed before the backups")
        yield net, load
    finally:
        load.stop.set()
        thread.join(30)
        net.stop()


def _create(
    net: LocalNet, out: Path, *extra: str, node: str = ""
) -> tuple[int, str, dict[str, object]]:
    report = out.parent / "report.json"
    r = CliRunner().invoke(
        app,
        [
            "backup", "create", str(out), "--from-node", node or net.nodes[1].endpoint,
            "--tls-dir", str(net.data_dir / "tls"), "--report", str(report), *extra,
        ],
    )  # fmt: skip
    return r.exit_code, r.output, json.loads(report.read_text())


def test_backups_over_grpc_verify_hold_every_acked_tx_and_are_pruned_to_keep(
    loaded: tuple[LocalNet, Load], tmp_path: Path
) -> None:
    net, load = loaded
    dest = tmp_path / "backups"
    dest.mkdir()
    (dest / "notes.txt").write_text("not a backup: never pruned")
    reports = []
    for _ in range(3):
        code, out, doc = _create(net, dest, "--keep", "2")
        assert code == 0, out
        reports.append(doc)
    heights = [int(str(d["height"])) for d in reports]
    assert heights == sorted(heights) and heights[0] > 0
    names = sorted(p.name for p, m, _ in list_backups(dest) if m is not None)
    assert names == sorted(str(d["name"]) for d in reports[1:]), "the oldest was not pruned"
    assert reports[2]["pruned"] == [reports[0]["name"]]
    assert (dest / "notes.txt").exists() and not list(dest.glob(".incoming-*"))
    last = dest / str(reports[2]["name"])
    m = verify_backup(last)
    assert m.height == heights[2] and m.chain_id == "bkrpc"
    assert int(str(reports[2]["bytes"])) == last.stat().st_size
    in_backup: set[bytes] = set()
    with opened(last) as root:
        for seg in sorted((root / BLOCKS).glob("seg-*.blk")):
            for payload in read_records(seg):
                in_backup.update(decode_tx(raw).id for raw in Block.decode(payload).txs)
    upto = {t for t, h in dict(load.acked).items() if h <= m.height}
    assert upto and upto <= in_backup
    # the node cleaned its scratch space after each export
    assert not list((net.nodes[1].directory).rglob("export-*.tar*"))


def test_a_refused_export_is_one_line_and_reported(
    loaded: tuple[LocalNet, Load], tmp_path: Path
) -> None:
    net, _ = loaded
    dest = tmp_path / "b.tar"
    dest.write_bytes(b"someone's file")
    code, out, doc = _create(net, dest)
    assert code == 1 and "already exists" in out and len(out.strip().splitlines()) == 1
    assert "already exists" in str(doc["error"]) and dest.read_bytes() == b"someone's file"
    # the first address does not answer: the next one exports (the operator lists several)
    dead = "127.0.0.1:1"
    code, out, doc = _create(net, tmp_path / "d", node=f"{dead},{net.nodes[2].endpoint}")
    assert code == 0, out
    assert doc["source"] == net.nodes[2].endpoint
    code, out, doc = _create(net, tmp_path / "e", node=dead)
    assert code == 1 and len(out.strip().splitlines()) == 1 and dead in str(doc["error"])
    assert not list((tmp_path / "e").iterdir())


def test_the_rpc_needs_a_client_certificate(loaded: tuple[LocalNet, Load]) -> None:
    """Without a client certificate the mutual-TLS port refuses the connection itself; the
    servicer's own check (defence in depth) is what the read-only public port answers."""
    net, _ = loaded
    ca = (net.data_dir / "tls" / "ca.pem").read_bytes()
    ch = grpc.secure_channel(net.nodes[0].endpoint, grpc.ssl_channel_credentials(ca))
    try:
        stub = ledger_pb2_grpc.LedgerStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.ExportBackup(ledger_pb2.ExportBackupRequest(), timeout=10))
        assert e.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        ch.close()


def test_restore_once_is_what_an_init_step_runs_on_every_start(
    loaded: tuple[LocalNet, Load], tmp_path: Path
) -> None:
    """First start: verify + restore, RESTORED.json names the backup; later starts: nothing
    to do; another (older) backup into the same volume: refused, reported, nothing changed."""
    net, _ = loaded
    dest = tmp_path / "backups"
    _, out1, older = _create(net, dest)
    _, out2, newer = _create(net, dest)
    assert int(str(newer["height"])) > int(str(older["height"])), (out1, out2)
    cfg = NodeConfig.load(net.nodes[0].directory / "config.yaml")
    mine = replace(cfg, data_dir=tmp_path / "pod-data")
    conf = tmp_path / "pod.yaml"
    conf.write_text(yaml.safe_dump(mine.to_dict()))
    report = tmp_path / "restore.json"

    def restore(name: str) -> tuple[int, str, dict[str, object]]:
        r = CliRunner().invoke(
            app,
            ["backup", "restore", str(dest / name), "--config", str(conf), "--once",
             "--report", str(report)],
        )  # fmt: skip
        return r.exit_code, r.output, json.loads(report.read_text())

    code, out, doc = restore(str(newer["name"]))
    assert code == 0, out
    assert doc == {"restored": newer["name"], "height": newer["height"]}
    assert existing_ledger(mine.data_dir).height == newer["height"]
    code, out, doc = restore(str(newer["name"]))
    assert code == 0 and "nothing to do" in out and doc["skip"] is True
    code, out, doc = restore(str(older["name"]))
    assert code == 1 and len(out.strip().splitlines()) == 1
    assert "restore refused" in str(doc["error"]) and "newer data" in str(doc["error"])
    assert existing_ledger(mine.data_dir).height == newer["height"]
