"""`consortium contract` inputs and results: `--arg TYPE:VALUE` pieces become the bytes the
example contracts read (u64 little-endian, 32-byte keys from hex or a key file), bad pieces
are usage errors naming the piece, results print as numbers, hex or text."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from consortium_node.cli.contract import arg_bytes, call_input, render_result
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer

pytestmark = pytest.mark.unit


def test_pieces_are_little_endian_integers_keys_hex_and_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert arg_bytes("u64:1000") == (1000).to_bytes(8, "little")
    assert arg_bytes("u32:0x10") == b"\x10\x00\x00\x00"
    assert arg_bytes("u8:255") == b"\xff"
    assert arg_bytes("hex:00ff") == b"\x00\xff"
    assert arg_bytes("str:héllo") == "héllo".encode()
    signer = Signer.generate()
    assert arg_bytes("key:" + signer.public_key.hex()) == signer.public_key
    key_file = tmp_path / "k.json"
    key_file.write_text(signer.to_json())
    assert arg_bytes(f"key:{key_file}") == signer.public_key
    # a key file whose path is 64 characters long, as long as a hex key (a fresh CI clone's
    # pytest-8 tmp dir made one: "must be hex"), is still a key file
    monkeypatch.chdir(tmp_path)
    name = "k" * 59 + ".json"  # relative to the working directory
    Path(name).write_text(signer.to_json())
    assert len(name) == 64
    assert arg_bytes(f"key:{name}") == signer.public_key
    pieces = ["u64:1", "str:x"]
    assert call_input(pieces, None, None) == (1).to_bytes(8, "little") + b"x"


@pytest.mark.parametrize(
    ("piece", "message"),
    [
        ("u64", "is not TYPE:VALUE"),
        ("u64:-1", "out of range"),
        ("u8:256", "out of range"),
        ("u64:ten", "is not a number"),
        ("key:abcd", "key:abcd"),
        ("f64:1.5", "unknown type 'f64'"),
    ],
)
def test_bad_pieces_are_usage_errors(piece: str, message: str) -> None:
    with pytest.raises(typer.BadParameter, match=message):
        arg_bytes(piece)


def test_one_way_of_giving_the_input(tmp_path: Path) -> None:
    f = tmp_path / "in.bin"
    f.write_bytes(b"\x01\x02")
    assert call_input([], None, f) == b"\x01\x02"
    assert call_input([], "0102", None) == b"\x01\x02"
    with pytest.raises(typer.BadParameter, match="--arg pieces, --input-hex or --input-file"):
        call_input(["u8:1"], "01", None)


def test_results() -> None:
    v = (250).to_bytes(8, "little")
    assert render_result(v, "u64") == "250"
    assert render_result(v, "hex") == "0x" + v.hex()
    assert render_result(b"ok", "auto") == "ok"
    assert render_result(b"", "auto") == "(empty)"
    with pytest.raises(ClientError, match="not a u64"):
        render_result(b"\x01", "u64")
