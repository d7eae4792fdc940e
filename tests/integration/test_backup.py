"""Issue 17 on real node processes: a backup taken while a 4-validator BFT chain commits under
load verifies offline; every single-byte flip, truncation, extra or missing file and re-sealed
forgery is refused with one line; restoring is refused for another chain or newer data
(nothing changed); a wiped node restored from the backup syncs forward; and the disaster
drill — every node's ledger lost, all restored from the backup with the existing keys — keeps
every transaction committed at or below H and continues the chain from H."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.backup.archive import verify_backup
from consortium_node.backup.export import export_backup
from consortium_node.backup.format import (
    CERTIFIER,
    MANIFEST,
    SEAL,
    STATE,
    BackupError,
    FileEntry,
    Manifest,
    decode_entry,
    encode_entry,
    seal,
)
from consortium_node.backup.restore import existing_ledger, restore_backup
from consortium_node.cli import app
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.config import NodeConfig
from consortium_node.crypto import Ed25519Key
from consortium_node.ledger.block import Block, CommitCertificate, commit_sign_bytes, tx_root
from consortium_node.ledger.lthash import LtHash
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest
from consortium_node.storage.blocks import frame, read_records
from consortium_node.storage.state import StateStore
from consortium_node.transport.codec import decode_tx
from typer.testing import CliRunner

from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def _manifest(chain: str) -> dict[str, object]:
    return {
        "kind": "Consortium",
        "metadata": {"name": chain},
        "spec": {
            "chainId": chain,
            "consensus": {
                "type": "bft",
                "tickMs": 5,
                "blockIntervalMs": 5,
                "emptyBlockIntervalMs": 50,
            },
            "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
        },
    }


@dataclass
class Load:
    """Submits KvPut batches from the genesis client key until stopped; records each acked tx
    id with its committed height."""

    net: LocalNet
    acked: dict[bytes, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        signer = Signer.load(self.net.data_dir / "keys" / "client.json")
        i = 0
        while not self.stop.is_set():
            try:
                with self.net.client(0, 10.0) as c:
                    nonce = c.next_nonce(signer.public_key)
                    batch = [
                        signer.build_tx(
                            self.net.chain_id,
                            nonce + k,
                            types_pb2.KvPut(key=b"k/%d" % (i + k), value=b"v" * 64),
                        )
                        for k in range(20)
                    ]
                    c.submit([t for _, t in batch])
                    for tx_id, _ in batch:
                        self.acked[tx_id] = c.wait_tx(tx_id, timeout=20).receipt.height
                    i += 20
            except ClientError as e:
                self.errors.append(str(e))
                if self.stop.wait(0.2):
                    return


@dataclass
class Chain:
    net: LocalNet
    load: Load
    thread: threading.Thread
    backup: Path
    manifest: Manifest
    committed_during_export: int  # blocks node 0 committed while the export ran


def _ledger(n: LocalNode) -> NodeConfig:
    return NodeConfig.load(n.directory / "config.yaml")


def _height(net: LocalNet, n: LocalNode) -> int:
    try:
        with net.client(n, 2.0) as c:
            return int(c.status().height)
    except ClientError:
        return -1


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("backup")
    init_data_dir(parse_manifest(_manifest("bk")), root / "net", fsync=False)
    net = LocalNet(root / "net")
    net.start()
    load = Load(net)
    thread = threading.Thread(target=load.run, daemon=True)
    try:
        thread.start()
        wait_for(lambda: len(load.acked) >= 200, 60, "200 txs committed before the backup")
        before = _height(net, net.nodes[0])
        cfg = _ledger(net.nodes[0])
        # small segments so the backup has several of them (the truncation cases need that)
        r = export_backup(cfg.data_dir, cfg.genesis_file, root / "b1", segment_bytes=16 * 1024)
        # the export waits for the block certifying its last one: the chain committed while it
        # ran (counting the load's acks instead failed when the export ended before the load's
        # next wait_tx returned: CI of dca3327)
        chain = Chain(net, load, thread, r.path, r.manifest, _height(net, net.nodes[0]) - before)
        yield chain
    finally:
        load.stop.set()
        thread.join(30)
        net.stop()


def test_a_backup_taken_under_load_verifies_and_holds_every_tx_up_to_its_height(
    chain: Chain,
) -> None:
    m = chain.manifest
    assert chain.committed_during_export > 0, "the chain did not commit while the export ran"
    assert verify_backup(chain.backup) == m
    segs = sorted((chain.backup / "blocks").glob("seg-*.blk"))
    assert len(segs) > 2
    in_backup: set[bytes] = set()
    last = 0
    for seg in segs:
        for payload in read_records(seg):
            b = Block.decode(payload)
            assert b.height == last + 1 and b.certificate is not None
            last = b.height
            in_backup.update(decode_tx(raw).id for raw in b.txs)
    assert last == m.height
    upto = {t for t, h in dict(chain.load.acked).items() if h <= m.height}
    assert upto and upto <= in_backup
    above = {t for t, h in dict(chain.load.acked).items() if h > m.height}
    assert not (above & in_backup)
    # no key material of any kind in it
    for p in chain.backup.rglob("*"):
        if p.is_file():
            assert b"PRIVATE KEY" not in p.read_bytes() and b"private_key" not in p.read_bytes()


def _copy(chain: Chain, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(chain.backup, dst)
    return dst


def _refused(path: Path) -> str:
    with pytest.raises(BackupError) as e:
        verify_backup(path)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_every_flipped_byte_truncation_and_odd_file_is_refused_with_one_line(
    chain: Chain, tmp_path: Path
) -> None:
    files = sorted(p.relative_to(chain.backup) for p in chain.backup.rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {SEAL, MANIFEST, STATE, CERTIFIER, "genesis.json"}
    cases = 0
    for rel in files:
        size = (chain.backup / rel).stat().st_size
        for pos in sorted({0, size // 3, size // 2, size - 1}):
            d = _copy(chain, tmp_path)
            data = bytearray((d / rel).read_bytes())
            data[pos] ^= 0x01
            (d / rel).write_bytes(bytes(data))
            _refused(d)
            shutil.rmtree(d)
            cases += 1
        d = _copy(chain, tmp_path)
        (d / rel).write_bytes((d / rel).read_bytes()[:-1])
        _refused(d)
        shutil.rmtree(d)
    assert cases >= 4 * len(files) - 4
    d = _copy(chain, tmp_path)
    last = sorted((d / "blocks").glob("seg-*.blk"))[-1]
    last.unlink()  # a backup cut short by a whole segment
    assert "missing file blocks/" in _refused(d)
    shutil.rmtree(d)
    d = _copy(chain, tmp_path)
    (d / "notes.txt").write_text("x")
    assert "unexpected file notes.txt" in _refused(d)


def seg_of(d: Path, i: int) -> Path:
    return sorted((d / "blocks").glob("seg-*.blk"))[i]


def _reseal(d: Path, m: Manifest, **changes: object) -> None:
    """Re-computes every checksum, the manifest and the seal: a forger's consistent backup."""
    files = {}
    for name in m.files:
        data = (d / name).read_bytes()
        files[name] = FileEntry(hashlib.sha256(data).hexdigest(), len(data))
    fields = {k: getattr(m, k) for k in Manifest.__dataclass_fields__}
    fields.update(files=files, **changes)
    new = Manifest(**fields)
    (d / MANIFEST).write_bytes(new.encode())
    (d / SEAL).write_bytes(seal(new.encode()))


def test_resealed_forgeries_are_refused_by_the_chain_rules(chain: Chain, tmp_path: Path) -> None:
    m = chain.manifest
    # a transaction changed inside a block (record CRC and every checksum recomputed)
    d = _copy(chain, tmp_path)
    seg = sorted((d / "blocks").glob("seg-*.blk"))[0]
    records = list(read_records(seg))
    for i, payload in enumerate(records):
        b = Block.decode(payload)
        if b.txs:
            raw = bytearray(b.txs[0])
            raw[-1] ^= 0x01  # the signature's last byte: same tx id, same tx_root and hash
            forged = Block(b.header, (bytes(raw), *b.txs[1:]), b.certificate)
            records[i] = forged.encode()
            break
    else:
        pytest.fail("no block with txs in the first segment")
    seg.write_bytes(b"".join(frame(p) for p in records))
    _reseal(d, m)
    assert "has a bad signature" in _refused(d)
    shutil.rmtree(d)
    # a certificate cut below a BFT quorum (2 of 4 signatures left)
    d = _copy(chain, tmp_path)
    records = list(read_records(seg_of(d, 0)))
    b = Block.decode(records[2])
    assert b.certificate is not None
    weak = replace(b.certificate, signatures=b.certificate.signatures[:2])
    records[2] = Block(b.header, b.txs, weak).encode()
    seg_of(d, 0).write_bytes(b"".join(frame(p) for p in records))
    _reseal(d, m)
    assert "2 valid validator signatures, needs 3" in _refused(d)
    shutil.rmtree(d)
    # two blocks swapped: the heights and the hash chain no longer follow
    d = _copy(chain, tmp_path)
    records = list(read_records(seg_of(d, 0)))
    records[1], records[2] = records[2], records[1]
    seg_of(d, 0).write_bytes(b"".join(frame(p) for p in records))
    _reseal(d, m)
    assert "where 2 belongs" in _refused(d)
    shutil.rmtree(d)
    # a lower height claimed in the manifest (the last blocks then exceed it)
    d = _copy(chain, tmp_path)
    _reseal(d, m, height=m.height - 1)
    assert "above the backup height" in _refused(d)
    shutil.rmtree(d)
    # a transaction replaced by another one its sender validly signed, header untouched
    d = _copy(chain, tmp_path)
    client = Signer.load(chain.net.data_dir / "keys" / "client.json")
    records = list(read_records(seg_of(d, 0)))
    i = next(j for j, p in enumerate(records) if Block.decode(p).txs)
    b = Block.decode(records[i])
    _, other = client.build_tx(m.chain_id, 10**9, types_pb2.KvPut(key=b"swap", value=b"x"))
    records[i] = Block(b.header, (other.SerializeToString(), *b.txs[1:]), b.certificate).encode()
    seg_of(d, 0).write_bytes(b"".join(frame(p) for p in records))
    _reseal(d, m)
    assert "tx_root does not match its txs" in _refused(d)
    shutil.rmtree(d)
    # a state value changed, the manifest's root left as it was
    d = _copy(chain, tmp_path)
    entries = [decode_entry(p) for p in read_records(d / STATE)]
    entries[0] = (entries[0][0], entries[0][1] + b"!")
    (d / STATE).write_bytes(b"".join(frame(encode_entry(k, v)) for k, v in entries))
    _reseal(d, m)
    assert "does not hash to the manifest's state root" in _refused(d)
    shutil.rmtree(d)
    # a state value changed, its root and lanes in the manifest recomputed to match
    d = _copy(chain, tmp_path)
    entries = [decode_entry(p) for p in read_records(d / STATE)]
    k0, v0 = entries[-1]
    entries[-1] = (k0, v0 + b"!")
    (d / STATE).write_bytes(b"".join(frame(encode_entry(k, v)) for k, v in entries))
    acc = LtHash()
    for k, v in entries:
        acc.add(k, v)
    _reseal(d, m, lthash=acc.lanes(), state_root=acc.digest())
    assert "certifies another state root" in _refused(d)


def test_a_chain_re_signed_by_a_quorum_with_a_changed_tx_fails_only_the_replay(
    chain: Chain, tmp_path: Path
) -> None:
    """A forger holding every validator key changes one committed tx (re-signed by its
    sender) and re-certifies every block from there, keeping the headers' state roots: all
    signatures and certificates verify, so only re-executing the blocks can tell."""
    m, net = chain.manifest, chain.net
    vkeys = [Ed25519Key.from_json((n.directory / "key.json").read_text()) for n in net.nodes]
    client = Signer.load(net.data_dir / "keys" / "client.json")
    d = _copy(chain, tmp_path)
    segs = sorted((d / "blocks").glob("seg-*.blk"))
    blocks = [Block.decode(p) for seg in segs for p in read_records(seg)]
    blocks.append(Block.decode(next(read_records(d / CERTIFIER))))
    k = max(b.height for b in blocks if b.txs and b.height < m.height)
    prev = blocks[k - 2].hash
    forged: list[Block] = blocks[: k - 1]
    for b in blocks[k - 1 :]:
        txs = b.txs
        header = replace(b.header, prev_hash=prev)
        if b.height == k:
            old = decode_tx(txs[0])
            _, tx = client.build_tx(
                m.chain_id, old.nonce, types_pb2.KvPut(key=b"forged", value=b"x")
            )
            txs = (tx.SerializeToString(), *txs[1:])
            header = replace(header, tx_root=tx_root([decode_tx(r).id for r in txs]))
        h = header.hash
        msg = commit_sign_bytes(m.chain_id, b.height, 0, h)
        cert = CommitCertificate(b.height, 0, h, tuple((v.public, v.sign(msg)) for v in vkeys))
        forged.append(Block(header, txs, cert))
        prev = h
    by_seg = {}
    for seg in segs:
        first = int(seg.stem.split("-")[1])
        by_seg[seg] = [b for b in forged[:-1] if b.height >= first]
    for seg, bs in by_seg.items():
        later = [f for f in by_seg if int(f.stem.split("-")[1]) > int(seg.stem.split("-")[1])]
        stop = min((int(f.stem.split("-")[1]) for f in later), default=m.height + 1)
        seg.write_bytes(b"".join(frame(b.encode()) for b in bs if b.height < stop))
    (d / CERTIFIER).write_bytes(frame(forged[-1].encode()))
    _reseal(d, m, block_hash=forged[m.height - 1].hash)
    assert verify_backup(d) is not None  # every certificate is a valid quorum
    with pytest.raises(BackupError, match=f"replay: block {k + 1} carries another state root"):
        verify_backup(d, deep=True)


def _validator_keys(net: LocalNet) -> list[Ed25519Key]:
    return [Ed25519Key.from_json((n.directory / "key.json").read_text()) for n in net.nodes]


def _recertified(b: Block, chain_id: str, keys: list[Ed25519Key], **header: object) -> Block:
    """Block `b` with header fields changed and a fresh quorum certificate over the result."""
    h = replace(b.header, **header)  # type: ignore[arg-type]
    msg = commit_sign_bytes(chain_id, b.height, 0, h.hash)
    cert = CommitCertificate(b.height, 0, h.hash, tuple((k.public, k.sign(msg)) for k in keys))
    return Block(h, b.txs, cert)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("prev_hash", b"\x07" * 32, "block 3 does not link to its predecessor"),
        ("validators_hash", b"\x07" * 32, "block 3 validators_hash is not its validator set"),
    ],
)
def test_a_header_re_certified_by_every_validator_must_still_link_and_name_its_set(
    chain: Chain, tmp_path: Path, field: str, value: bytes, why: str
) -> None:
    m = chain.manifest
    d = _copy(chain, tmp_path)
    records = list(read_records(seg_of(d, 0)))
    b = Block.decode(records[2])
    assert b.height == 3
    records[2] = _recertified(b, m.chain_id, _validator_keys(chain.net), **{field: value}).encode()
    seg_of(d, 0).write_bytes(b"".join(frame(p) for p in records))
    _reseal(d, m)
    assert why in _refused(d)


def test_the_cli_verifies_lists_and_refuses_in_one_line(chain: Chain, tmp_path: Path) -> None:
    for extra in ([], ["--replay"]):
        r = CliRunner().invoke(app, ["backup", "verify", str(chain.backup), *extra])
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("ok: ") and f"height {chain.manifest.height}" in r.stdout
    d = _copy(chain, tmp_path)
    (d / STATE).write_bytes((d / STATE).read_bytes()[:-7])
    r = CliRunner().invoke(app, ["backup", "verify", str(d)])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "state.bin" in r.stderr
    tar = tmp_path / "b.tar"
    r = CliRunner().invoke(app, ["backup", "create", str(tar), "-c", str(cfg_path(chain, 1))])
    assert r.exit_code == 0, r.output
    later = verify_backup(tar)  # taken later, from another node, as a tar
    assert later.genesis_hash == chain.manifest.genesis_hash
    assert later.height > chain.manifest.height
    r = CliRunner().invoke(app, ["backup", "list", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = r.stdout.splitlines()
    assert rows[0].startswith("b.tar ") and f"height {later.height}" in rows[0]
    assert rows[1].startswith("copy ") and f"height {chain.manifest.height}" in rows[1]


def cfg_path(chain: Chain, i: int) -> Path:
    return chain.net.nodes[i].directory / "config.yaml"


def _listing(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_size for p in d.rglob("*") if p.is_file()}


def test_restore_refuses_another_chain_and_newer_data_and_a_wiped_node_syncs_forward(
    chain: Chain, tmp_path: Path
) -> None:
    net, m = chain.net, chain.manifest
    # another chain: a node of a different consortium refuses the backup
    init_data_dir(parse_manifest(_manifest("other")), tmp_path / "other", fsync=False)
    other = NodeConfig.load(tmp_path / "other" / "nodes" / "org1-0" / "config.yaml")
    with pytest.raises(BackupError, match="another chain"):
        restore_backup(chain.backup, other.data_dir, other.genesis_file)
    assert not other.data_dir.exists() or not any(other.data_dir.iterdir())
    # newer data: node org2-1 stopped above the backup height; refused, nothing changed
    victim = net.nodes[3]
    cfg = _ledger(victim)
    assert victim.stop(signal.SIGTERM) == 0
    assert existing_ledger(cfg.data_dir).height > m.height
    before = _listing(cfg.data_dir)
    with pytest.raises(BackupError, match="holds newer data"):
        restore_backup(chain.backup, cfg.data_dir, cfg.genesis_file)
    assert _listing(cfg.data_dir) == before
    # the volume is lost: restore into an empty directory, start, sync forward from peers
    shutil.rmtree(cfg.data_dir)
    r = restore_backup(chain.backup, cfg.data_dir, cfg.genesis_file)
    assert r.moved_aside is None and existing_ledger(cfg.data_dir).height == m.height
    # restoring again over data of the same chain not above H keeps that data aside
    again = restore_backup(chain.backup, cfg.data_dir, cfg.genesis_file)
    assert again.moved_aside == cfg.data_dir / "pre-restore" / "1"
    assert {p.name for p in again.moved_aside.iterdir()} == {"blocks", "state"}
    assert existing_ledger(again.moved_aside).height == m.height
    store = StateStore(cfg.data_dir / "state", readonly=True)
    try:  # the replayed state is the backup's certified state, tx index included
        meta = store.meta()
        assert meta is not None and (meta.height, meta.state_root) == (m.height, m.state_root)
        below_h = [t for t, h in dict(chain.load.acked).items() if h <= m.height]
        assert all(store.tx_location(t) is not None for t in below_h)
    finally:
        store.close()
    victim.start()
    victim.wait_ready(time.monotonic() + 60)
    target = _height(net, net.nodes[0])
    wait_for(lambda: _height(net, victim) >= target, 90, "the restored node synced forward")
    acked = dict(chain.load.acked)
    below = next(t for t, h in acked.items() if h <= m.height)
    above_h = [t for t, h in acked.items() if m.height < h <= target]
    with net.client(victim, 10.0) as c:
        assert c.get_tx(below) is not None
        assert above_h and c.get_tx(above_h[-1]) is not None  # synced from peers
        mine = c.get_block(m.height)
    with net.client(0, 10.0) as c:
        assert c.get_block(m.height).header == mine.header


def test_backup_restore_refuses_a_running_local_consortium(chain: Chain) -> None:
    r = CliRunner().invoke(
        app, ["backup", "restore", str(chain.backup), "-d", str(chain.net.data_dir)]
    )
    assert r.exit_code == 1 and "in use" in r.stderr and r.stderr.count("\n") == 1, r.output


def test_disaster_recovery_restores_every_node_and_the_chain_continues_from_h(
    chain: Chain, tmp_path: Path
) -> None:
    net, m = chain.net, chain.manifest
    chain.load.stop.set()
    chain.thread.join(30)
    net.stop()
    acked = dict(chain.load.acked)
    lost_volumes = [_ledger(n).data_dir for n in net.nodes]
    for d in lost_volumes:
        shutil.rmtree(d)
    # the README drill: `consortium up -d DIR --restore BACKUP`, a real process until SIGTERM
    (net.data_dir / "endpoints.json").unlink()
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from consortium_node.cli import main; main()",
            "up",
            "-d",
            str(net.data_dir),
            "--no-fsync",
            "--restore",
            str(chain.backup),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: up.poll() is not None or (net.data_dir / "endpoints.json").exists(),
            90,
            "'consortium up --restore' serving",
        )
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        text = (tmp_path / "up.log").read_text()
        assert text.count(f"to height {m.height}") == len(net.nodes), text
        dr = LocalNet(net.data_dir)
        wait_for(
            lambda: min(_height(dr, n) for n in dr.nodes) > m.height + 2,
            90,
            "every restored node committing beyond H",
        )
        with dr.client(0, 10.0) as c:
            for tx_id, h in acked.items():
                if h <= m.height:
                    got = c.get_tx(tx_id)
                    assert got is not None and got.receipt.height == h
            # after H: not on the restored chain until its sender submits it again
            lost = [t for t, h in acked.items() if h > m.height]
            assert lost and c.get_tx(lost[-1]) is None
            signer = Signer.load(net.data_dir / "keys" / "client.json")
            nonce = c.next_nonce(signer.public_key)
            tx_id, tx = signer.build_tx(
                net.chain_id, nonce, types_pb2.KvPut(key=b"after", value=b"dr")
            )
            assert c.submit([tx])[0].code == 0
            assert c.wait_tx(tx_id, timeout=30).receipt.height > m.height
    finally:
        if up.poll() is None:
            os.kill(up.pid, signal.SIGTERM)
        assert up.wait(60) == 0, (tmp_path / "up.log").read_text()
        log.close()


def test_up_with_a_backup_of_another_chain_refuses_before_starting_anything(
    chain: Chain, tmp_path: Path
) -> None:
    d = tmp_path / "other"
    init_data_dir(parse_manifest(_manifest("other2")), d, fsync=False)
    r = CliRunner().invoke(app, ["up", "-d", str(d), "--no-fsync", "--restore", str(chain.backup)])
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and "another chain" in r.stderr, r.stderr
    assert not list(d.glob("nodes/*/ready.json")) and not list(d.glob("nodes/*/ledger"))


def test_a_wiped_raft_follower_restored_from_a_backup_rejoins_and_syncs_forward(
    tmp_path: Path,
) -> None:
    """Raft assumes durable logs: a follower restored to H (no WAL) acks less than it once
    did; the leader probes it again from its hint and it catches up (issue 17 + the raft
    re-seed rule), keeping every tx at or below H and getting those above it."""
    doc = _manifest("rk")
    spec = doc["spec"]
    assert isinstance(spec, dict)
    spec["consensus"] = {**spec["consensus"], "type": "raft"}
    spec["organizations"] = [{"name": f"org{i}", "validators": 1} for i in (1, 2, 3)]
    init_data_dir(parse_manifest(doc), tmp_path / "net", fsync=False)
    net = LocalNet(tmp_path / "net")
    net.start()
    try:
        signer = Signer.load(net.data_dir / "keys" / "client.json")
        with net.client(0, 10.0) as c:
            wait_for(lambda: c.status().leader, 30, "a raft leader")
            leader = c.status().leader.hex()
        lead = next(n for n in net.nodes if n.node_id == leader)

        def put(key: bytes) -> tuple[bytes, int]:
            # through the leader: the restored node answers next_nonce from height H until
            # it has synced (any lagging node does), which would reuse a committed nonce
            with net.client(lead, 10.0) as c:
                nonce = c.next_nonce(signer.public_key)
                tx_id, tx = signer.build_tx(
                    net.chain_id, nonce, types_pb2.KvPut(key=key, value=b"v")
                )
                assert c.submit([tx])[0].code == 0
                return tx_id, int(c.wait_tx(tx_id, timeout=20).receipt.height)

        before = put(b"before")
        cfg0 = _ledger(lead)  # holds every block put() saw committed
        m = export_backup(cfg0.data_dir, cfg0.genesis_file, tmp_path / "b").manifest
        assert before[1] <= m.height
        follower = next(n for n in net.nodes if n.node_id != leader)
        cfg = _ledger(follower)
        after = put(b"after")
        wait_for(lambda: _height(net, follower) >= after[1], 30, "the follower has 'after'")
        assert follower.stop(signal.SIGTERM) == 0
        shutil.rmtree(cfg.data_dir)
        restore_backup(tmp_path / "b", cfg.data_dir, cfg.genesis_file)
        follower.start()
        follower.wait_ready(time.monotonic() + 60)
        later = put(b"later")
        wait_for(lambda: _height(net, follower) >= later[1], 60, "the restored follower synced")
        with net.client(follower, 10.0) as c:
            for tx_id, h in (before, after, later):
                got = c.get_tx(tx_id)
                assert got is not None and got.receipt.height == h
    finally:
        net.stop()


def test_restore_into_a_data_dir_with_an_unreadable_state_is_refused_unchanged(
    chain: Chain, tmp_path: Path
) -> None:
    d = tmp_path / "ledger"
    (d / "state").mkdir(parents=True)
    (d / "state" / "data.mdb").write_bytes(b"not an lmdb file" * 512)
    before = _listing(d)
    with pytest.raises(BackupError, match="cannot read the state"):
        restore_backup(chain.backup, d, None)
    assert _listing(d) == before
