"""Key files and transaction building of `consortium_node.client` (no node needed)."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.client.errors import translate_rpc_error
from consortium_node.client.keys import Signer
from consortium_node.client.tx import build_body, parse_hex, tx_id_of, verify_tx
from consortium_node.crypto import KeyFileError
from nacl.signing import VerifyKey

pytestmark = pytest.mark.unit


def test_key_file_round_trip_and_mode(tmp_path: Path) -> None:
    s = Signer.generate()
    p = tmp_path / "sub" / "key.json"
    s.save(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    data = json.loads(p.read_text())
    assert data == {"public_key": s.public_key.hex(), "private_key": s.seed.hex()}
    assert len(bytes.fromhex(data["private_key"])) == 32
    loaded = Signer.load(p)
    assert loaded.public_key == s.public_key and loaded.seed == s.seed


def test_key_file_refuses_overwrite_unless_forced(tmp_path: Path) -> None:
    p = tmp_path / "key.json"
    a, b = Signer.generate(), Signer.generate()
    a.save(p)
    with pytest.raises(KeyFileError, match="already exists"):
        b.save(p)
    assert Signer.load(p).public_key == a.public_key
    p.chmod(0o644)
    b.save(p, force=True)
    assert Signer.load(p).public_key == b.public_key
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "not a valid key file"),
        ('{"public_key": "00"}', "not a valid key file"),
        ('{"private_key": "abcd"}', "not a valid key file"),
        (json.dumps({"public_key": "00" * 32, "private_key": "11" * 32}), "does not match"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "k.json"
    p.write_text(content)
    with pytest.raises(KeyFileError, match=match):
        Signer.load(p)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        Signer.load(tmp_path / "nope.json")


def test_build_tx_id_is_sha256_of_signed_body() -> None:
    s = Signer.from_seed(bytes(range(32)))
    payload = types_pb2.KvPut(key=b"k", value=b"v")
    tx_id, tx = s.build_tx("chain-1", 7, payload)
    assert tx_id == hashlib.sha256(tx.body).digest() == tx_id_of(tx.body)
    VerifyKey(s.public_key).verify(tx.body, tx.signature)  # raises if invalid
    assert len(tx.signature) == 64
    assert verify_tx(tx)
    body = types_pb2.TxBody.FromString(tx.body)
    assert body.chain_id == "chain-1" and body.nonce == 7 and body.sender == s.public_key
    assert body.WhichOneof("payload") == "kv_put" and body.kv_put.value == b"v"
    # the wire form carries the exact signed bytes
    again = types_pb2.SignedTx.FromString(tx.SerializeToString())
    assert again.body == tx.body


def test_tampered_tx_does_not_verify() -> None:
    s = Signer.generate()
    _, tx = s.build_tx("c", 0, types_pb2.KvDelete(key=b"k"))
    bad = types_pb2.SignedTx(body=tx.body + b"\x00", signature=tx.signature)
    assert not verify_tx(bad)
    assert not verify_tx(types_pb2.SignedTx(body=b"garbage", signature=b"x"))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (types_pb2.KvPut(key=b"a", value=b"b"), "kv_put"),
        (types_pb2.KvDelete(key=b"a"), "kv_delete"),
        (types_pb2.AssetIssue(asset="gold", to=b"\x01" * 32, amount=5), "asset_issue"),
        (types_pb2.AssetTransfer(asset="gold", to=b"\x01" * 32, amount=5), "asset_transfer"),
        (types_pb2.AddValidator(node_id=b"\x02" * 32, organization="o"), "add_validator"),
        (types_pb2.RemoveValidator(node_id=b"\x02" * 32), "remove_validator"),
        (types_pb2.SetParam(name="n", value="v"), "set_param"),
    ],
)
def test_every_payload_lands_in_its_oneof_field(payload: types_pb2.KvPut, field: str) -> None:
    body = build_body("c", b"\x03" * 32, 1, payload)
    assert body.WhichOneof("payload") == field


def test_build_body_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        build_body("c", b"short", 0, types_pb2.KvDelete(key=b"k"))
    with pytest.raises(ValueError, match="nonce"):
        build_body("c", b"\x00" * 32, -1, types_pb2.KvDelete(key=b"k"))
    with pytest.raises(TypeError):
        build_body("c", b"\x00" * 32, 0, types_pb2.TxBody())  # type: ignore[arg-type]


def test_parse_hex() -> None:
    assert parse_hex("0xABcd", "x") == b"\xab\xcd"
    with pytest.raises(ValueError, match="must be hex"):
        parse_hex("zz", "x")
    with pytest.raises(ValueError, match="32 bytes"):
        parse_hex("00", "x", 32)


def test_translate_rpc_error_is_one_line() -> None:
    import grpc

    class FakeCall(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            self._c, self._d = code, details

        def code(self) -> grpc.StatusCode:
            return self._c

        def details(self) -> str:
            return self._d

    e = translate_rpc_error(
        FakeCall(
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
            "Failed to connect to remote host: Connection refused",
        ),
        "127.0.0.1:1",
        2.0,
    )
    assert str(e) == "node 127.0.0.1:1 unreachable (connection refused)"
    e = translate_rpc_error(FakeCall(grpc.StatusCode.DEADLINE_EXCEEDED, ""), "h:1", 2.0)
    assert str(e) == "node h:1 did not answer within 2s"
    e = translate_rpc_error(FakeCall(grpc.StatusCode.INVALID_ARGUMENT, "bad\nthing"), "h:1", 2.0)
    assert str(e) == "node h:1: INVALID_ARGUMENT: bad thing"


def test_client_key_files_are_written_by_the_one_durable_implementation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Signer.save` writes through `crypto.Ed25519Key.save` (one key-file implementation):
    the file and its directory are fsynced before it returns. The old `client.Signer.save`
    wrote its own copy of the format and never fsynced."""
    import os

    from consortium_node.crypto import Ed25519Key

    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    p = tmp_path / "keys" / "me.json"
    s = Signer.generate()
    s.save(p)
    assert synced == [str(p), str(p.parent)]
    assert isinstance(s, Ed25519Key)
    assert Ed25519Key.load(p).public == s.public_key


def test_every_payload_of_the_wire_oneof_can_be_built() -> None:
    """A tx type added to TxBody's `payload` oneof must be added to client/tx.py too (else
    build_body raises TypeError for it)."""
    import typing

    from consortium_node.client import tx as client_tx

    oneof = types_pb2.TxBody.DESCRIPTOR.oneofs_by_name["payload"]
    wire = {f.name: f.message_type.name for f in oneof.fields if f.message_type is not None}
    assert len(wire) == len(oneof.fields)  # every payload is a message
    built = {field: t.DESCRIPTOR.name for t, field in client_tx._PAYLOAD_FIELD.items()}
    assert built == wire
    assert set(typing.get_args(client_tx.Payload)) == set(client_tx._PAYLOAD_FIELD)
