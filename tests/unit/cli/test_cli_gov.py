"""`consortium gov` without a node: argument errors are one line, the offline path's
endorsement files (sign with --chain-id/--config-seq/--expiry, co-sign, merge) carry
signatures the chain's decoder accepts, and mismatched files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.cli import app
from consortium_node.client.gov import EndorsementFile
from consortium_node.client.keys import Signer
from consortium_node.client.tx import build_body
from consortium_node.ledger.tx import SetParam, SubmitEndorsed
from consortium_node.transport import codec
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

runner = CliRunner()


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _key(tmp_path: Path, name: str) -> tuple[Signer, Path]:
    s = Signer.generate()
    path = tmp_path / f"{name}.json"
    s.save(path)
    return s, path


OFFLINE = ["--chain-id", "c1", "--config-seq", "3", "--expiry", "50"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["gov", "vote", "1", "maybe"], "vote must be yes or no"),
        (["gov", "vote", "0", "yes"], "greater than or equal to 1"),
        (["gov", "propose", "add-org", "x"], "--admin"),
        (["gov", "propose", "set-param", "a", "1", "--ttl", "0"], "--ttl"),
        (["gov", "sign", "file", "/nonexistent/e.json"], "cannot read endorsement file"),
        (["gov", "migrate", "--admin", "noequals"], "ORG=KEY"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    _, key = _key(tmp_path, "k")
    r = runner.invoke(app, [*args, "--key", str(key)] if args[1] != "sign" else args)
    assert r.exit_code != 0
    assert needle in _one_error_line(r.stderr)


def test_offline_sign_cosign_and_submit_payload(tmp_path: Path) -> None:
    a, ka = _key(tmp_path, "a")
    b, kb = _key(tmp_path, "b")
    out = tmp_path / "e.json"
    r = runner.invoke(
        app,
        [
            "gov",
            "sign",
            "set-param",
            "max_block_txs",
            "9",
            "--out",
            str(out),
            "--key",
            str(ka),
            *OFFLINE,
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["gov", "sign", "file", str(out), "--key", str(kb)])
    assert r.exit_code == 0, r.output
    assert "(2 endorsements)" in r.stdout
    r = runner.invoke(app, ["gov", "sign", "file", str(out), "--key", str(kb)])  # again: once
    assert "(2 endorsements)" in r.stdout
    f = EndorsementFile.load(out)
    assert (f.chain_id, f.config_seq, f.expiry, f.summary) == ("c1", 3, 50, "set max_block_txs = 9")
    assert [k for k, _ in f.endorsements] == [a.public_key, b.public_key]

    # what `gov submit` sends decodes on a node with both endorsements valid
    body = build_body("c1", a.public_key, 0, f.payload()).SerializeToString()
    tx = codec.decode_tx(types_pb2.SignedTx(body=body, signature=a.sign(body)).SerializeToString())
    assert isinstance(tx.payload, SubmitEndorsed)
    assert tx.payload.action == SetParam("max_block_txs", "9")
    assert [e.valid for e in tx.payload.endorsements] == [True, True]
    # ... but not on another chain
    body = build_body("c2", a.public_key, 0, f.payload()).SerializeToString()
    tx = codec.decode_tx(types_pb2.SignedTx(body=body, signature=a.sign(body)).SerializeToString())
    assert isinstance(tx.payload, SubmitEndorsed)
    assert [e.valid for e in tx.payload.endorsements] == [False, False]


def test_submit_refuses_files_of_different_terms(tmp_path: Path) -> None:
    _, ka = _key(tmp_path, "a")
    one, two = tmp_path / "1.json", tmp_path / "2.json"
    for path, value in ((one, "9"), (two, "10")):
        r = runner.invoke(
            app,
            [
                "gov",
                "sign",
                "set-param",
                "max_block_txs",
                value,
                "--out",
                str(path),
                "--key",
                str(ka),
                *OFFLINE,
            ],
        )
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["gov", "submit", str(one), str(two), "--key", str(ka)])
    assert r.exit_code == 1
    assert "endorsement files differ" in _one_error_line(r.stderr)


def test_a_damaged_endorsement_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"chain_id": "c"}))
    r = runner.invoke(app, ["gov", "submit", str(bad)])
    assert r.exit_code == 1
    assert "is not an endorsement file" in _one_error_line(r.stderr)
