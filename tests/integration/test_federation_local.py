"""A local federated consortium (issue 15, "Local"): three organisations, three data
directories, each holding only its own keys; the genesis ceremony through the `consortium
ceremony` CLI; each organisation started as its own `consortium up --org ORG` process (three
terminals); blocks commit, a proposal of org1 executes only after org2 votes, a node whose
genesis was changed refuses to start without writing state, and a peer certificate from
another organisation's CA than the one the chain registered the validator with is refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from consortium_api.v1 import peer_pb2, peer_pb2_grpc, types_pb2
from consortium_node import pki
from consortium_node.cli import app
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.crypto import Ed25519Key
from consortium_node.localnet import load_ca
from consortium_node.transport.peers import hello_bytes
from typer.testing import CliRunner, Result

from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

ORGS = ("org1", "org2", "org3")
MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "fed"},
    "spec": {
        "chainId": "fed-chain",
        "consensus": {"type": "raft", "tickMs": 5, "blockIntervalMs": 5},
        "organizations": [{"name": o, "validators": 1} for o in ORGS],
    },
}
SEED = int(os.environ.get("FEDERATION_SEED", "15"))
runner = CliRunner()
CONSORTIUM = [sys.executable, "-c", "from consortium_node.cli import main; main()"]


def cli(*args: str) -> Result:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


def one_error(r: Result) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


@dataclass
class Fed:
    root: Path  # the shared ceremony folder is root/fed, organisation X's directory root/X

    def dir(self, org: str) -> Path:
        return self.root / org

    @property
    def files(self) -> Path:
        return self.root / "fed"

    def endpoint(self, org: str) -> str:
        doc = json.loads((self.dir(org) / "endpoints.json").read_text())
        return str(doc["nodes"][0]["endpoint"])

    def client(self, org: str) -> Client:
        return Client(self.endpoint(org), 10.0, tls=ClientTLS.from_dir(self.dir(org) / "tls"))


def ceremony(root: Path) -> Fed:
    """The whole ceremony with the CLI, as the README walks it; contributions assembled in a
    seeded random order."""
    f = Fed(root)
    manifest = root / "fed.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    cli("ceremony", "init", "-f", str(manifest), "-o", str(f.files / "ceremony.json"))
    for o in ORGS:
        cli(
            "up",
            "--org",
            o,
            "-d",
            str(f.dir(o)),
            "--no-fsync",
            "--ceremony-init",
            str(f.files / "ceremony.json"),
        )
        cli(
            "ceremony",
            "contribute",
            "-d",
            str(f.dir(o)),
            "-o",
            str(f.files / f"contribution-{o}.json"),
        )
    order = list(ORGS)
    random.Random(SEED).shuffle(order)
    print(f"FEDERATION_SEED={SEED}: contributions in order {order}")
    cli(
        "ceremony",
        "assemble",
        str(f.files / "ceremony.json"),
        *(str(f.files / f"contribution-{o}.json") for o in order),
        "-o",
        str(f.files / "genesis.json"),
    )
    for o in ORGS:
        cli(
            "ceremony",
            "sign",
            str(f.files / "genesis.json"),
            "--org",
            o,
            "--contribution",
            str(f.files / f"contribution-{o}.json"),
            "-k",
            str(f.dir(o) / "keys" / f"admin-{o}.json"),
            "--ceremony",
            str(f.files / "ceremony.json"),
            "-o",
            str(f.files / f"genesis-{o}.sig"),
        )
    return f


def _up(f: Fed, org: str) -> subprocess.Popen[bytes]:
    log = (f.root / f"up-{org}.log").open("ab")
    try:
        return subprocess.Popen(
            [
                *CONSORTIUM,
                "up",
                "--org",
                org,
                "-d",
                str(f.dir(org)),
                "--genesis",
                str(f.files / "genesis.json"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    f = ceremony(tmp_path_factory.mktemp("federation"))
    # three terminals: one `consortium up --org` per organisation, each its own directory
    procs = {o: _up(f, o) for o in ORGS}
    try:

        def serving() -> bool:
            for o, p in procs.items():
                if p.poll() is not None:
                    raise AssertionError(
                        f"consortium up --org {o} exited: {(f.root / f'up-{o}.log').read_text()}"
                    )
            return all((f.dir(o) / "endpoints.json").exists() for o in ORGS)

        wait_for(serving, 60, "every organisation's 'consortium up' to serve")
        yield f
    finally:
        _stop(procs)


def gov(f: Fed, org: str, *args: str) -> dict[str, Any]:
    """`consortium gov ARGS --json` through ORG's own directory and admin key."""
    key = str(f.dir(org) / "keys" / f"admin-{org}.json")
    r = cli("gov", *args, "--json", "--data-dir", str(f.dir(org)), "--key", key)
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def test_each_directory_holds_only_its_own_organisations_secrets(fed: Fed) -> None:
    for o in ORGS:
        keys = {p.name for p in (fed.dir(o) / "keys").iterdir()}
        assert keys == {f"admin-{o}.json", "client.json"}
        assert [p.name for p in (fed.dir(o) / "ca").iterdir()] == [o]
        assert {p.name for p in (fed.dir(o) / "nodes").iterdir()} == {f"{o}-0"}


def test_blocks_commit_and_every_organisation_sees_one_chain(fed: Fed) -> None:
    signer = Signer.load(fed.dir("org1") / "keys" / "client.json")
    with fed.client("org1") as c:
        tx_id, tx = signer.build_tx(
            "fed-chain", c.next_nonce(signer.public_key), types_pb2.KvPut(key=b"k", value=b"v")
        )
        (res,) = c.submit([tx])
        assert res.code == 0, res.message
        height = c.wait_tx(tx_id, 20).receipt.height
    for o in ORGS:
        with fed.client(o) as c:
            got = c.wait_tx(tx_id, 20)  # applied by org's own node
            assert got.receipt.height == height
            st = c.status()
            assert sorted(st.organizations) == list(ORGS) and len(st.validators) == 3


def test_a_proposal_of_org1_executes_only_after_org2_votes(fed: Fed) -> None:
    out = gov(fed, "org1", "propose", "set-param", "max_block_txs", "777")
    prop = out["proposal"]
    assert (prop["state"], prop["yes"], prop["needed"]) == ("PENDING", 1, 2)
    pid = str(prop["id"])
    # org1 alone: still pending, seen the same from org3's node
    shown = json.loads(cli("gov", "show", pid, "--json", "-d", str(fed.dir("org3"))).stdout)
    assert shown["state"] == "PENDING"
    out = gov(fed, "org2", "vote", pid, "yes")  # org2 votes through its own node and key
    assert out["proposal"]["state"] == "EXECUTED"

    def executed_on_org3() -> bool:
        shown = json.loads(cli("gov", "show", pid, "--json", "-d", str(fed.dir("org3"))).stdout)
        return bool(shown["state"] == "EXECUTED")

    wait_for(executed_on_org3, 20, "org3's node to apply the executed proposal")


def _exchange(f: Fed, target: str, cert: pki.Issued, claim: Ed25519Key) -> grpc.RpcError | None:
    """A peer Exchange to TARGET's node with TLS `cert` and a hello signed by `claim`."""
    cfg = yaml.safe_load((f.dir(target) / "nodes" / f"{target}-0" / "config.yaml").read_text())
    server_id = bytes.fromhex(
        json.loads((f.dir(target) / "nodes" / f"{target}-0" / "key.json").read_text())["public_key"]
    )
    ca = (f.dir(target) / "tls" / "ca.pem").read_bytes()
    creds = grpc.ssl_channel_credentials(ca, cert.key_pem, cert.cert_pem)
    gh = hashlib.sha256((f.files / "genesis.json").read_bytes()).digest()
    t = int(time.time() * 1000)
    hello = peer_pb2.PeerHello(
        node_id=claim.public,
        peer_id=server_id,
        chain_id="fed-chain",
        genesis_hash=gh,
        time_ms=t,
        signature=claim.sign(hello_bytes("fed-chain", gh, claim.public, server_id, t)),
    )
    opts = [("grpc.ssl_target_name_override", pki.node_dns_name(server_id))]
    with grpc.secure_channel(cfg["peer_listen"], creds, options=opts) as ch:
        try:
            replies = peer_pb2_grpc.PeerStub(ch).Exchange(
                iter([peer_pb2.PeerBatch(hello=hello)]), timeout=5
            )
            assert next(iter(replies)).HasField("hello")
            return None
        except grpc.RpcError as e:
            return e


def test_a_peer_certificate_from_another_organisations_ca_is_refused(fed: Fed) -> None:
    # org2 (holding only its own CA, in its own directory) issues a certificate binding
    # org1's validator and dials org3's node with it: the chain registered that validator
    # with org1, so org3 refuses — across data directories, end to end over TLS
    victim = Ed25519Key.load(fed.dir("org1") / "nodes" / "org1-0" / "key.json")
    now = dt.datetime.now(dt.UTC)
    forged = pki.issue_node_cert(
        load_ca(fed.dir("org2"), "org2"),
        "org1",
        "impostor",
        victim.public,
        now,
        pki.new_private_key(),
        4242,
    )
    err = _exchange(fed, "org3", forged, victim)
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "issued by the CA of org2, but the validator belongs to org1" in (err.details() or "")
    # the same certificate from org1's own CA is accepted (the check is the issuer)
    real = pki.issue_node_cert(
        load_ca(fed.dir("org1"), "org1"),
        "org1",
        "org1-0",
        victim.public,
        now,
        pki.new_private_key(),
        4243,
    )
    assert _exchange(fed, "org3", real, victim) is None


def test_a_tampered_genesis_is_refused_and_the_node_writes_no_state(tmp_path: Path) -> None:
    f = ceremony(tmp_path)
    genesis = f.files / "genesis.json"
    doc = json.loads(genesis.read_text())
    doc["time_ms"] += 1000
    tampered = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    # a changed genesis beside the signatures: `up --genesis` refuses it in one line
    bad = f.root / "bad"
    bad.mkdir()
    for p in f.files.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "genesis.json").write_bytes(tampered)
    r = runner.invoke(
        app,
        ["up", "--org", "org1", "-d", str(f.dir("org1")), "--genesis", str(bad / "genesis.json")],
    )
    assert "the signature of" in one_error(r) and "is for another genesis" in r.stderr
    assert not (f.dir("org1") / "genesis.json").exists()
    # install the real one (starting needs the others), then change it in place: the node
    # itself refuses at start with one line and exits non-zero before opening any state
    from consortium_node.localnet import install_genesis

    assert install_genesis(f.dir("org1"), genesis) == list(ORGS)
    (f.dir("org1") / "genesis.json").write_bytes(tampered)
    r = runner.invoke(app, ["up", "--org", "org1", "-d", str(f.dir("org1"))])
    assert r.exit_code == 1, r.output
    assert "consortium-node: error: genesis refused: genesis sha256 is" in r.stderr
    assert not (f.dir("org1") / "nodes" / "org1-0" / "ledger").exists()
    # a signature file removed: refused too
    (f.dir("org1") / "genesis.json").write_bytes(genesis.read_bytes())
    (f.dir("org1") / "signatures" / "genesis-org3.sig").unlink()
    r = runner.invoke(app, ["up", "--org", "org1", "-d", str(f.dir("org1"))])
    assert r.exit_code == 1, r.output
    assert "genesis refused: cannot read" in r.stderr
    assert not (f.dir("org1") / "nodes" / "org1-0" / "ledger").exists()
