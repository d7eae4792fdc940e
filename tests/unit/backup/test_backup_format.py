"""backup/format.py, the pure half: the manifest is accepted only in its canonical sealed
form (a changed byte cannot hide in whitespace, an unknown field or a reordered key), and
state records round-trip and refuse truncation. The chain rules run on real chains in
tests/integration/test_backup.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from consortium_node.backup.format import (
    BackupError,
    FileEntry,
    Manifest,
    check_seal,
    decode_entry,
    encode_entry,
    seal,
)

pytestmark = pytest.mark.unit

M = Manifest(
    chain_id="c",
    consensus="bft",
    genesis_hash=b"\x01" * 32,
    height=7,
    block_hash=b"\x02" * 32,
    state_root=b"\x03" * 32,
    lthash=b"\x04" * 2048,
    state_entries=3,
    created_unix=1_700_000_000,
    files={"state.bin": FileEntry("ab" * 32, 10)},
)


def test_the_manifest_round_trips_in_canonical_form() -> None:
    raw = M.encode()
    assert Manifest.decode(raw) == M
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: json.dumps(d, sort_keys=True).encode(), "canonical"),  # spaces
        (
            lambda d: json.dumps(
                {**d, "note": "x"}, sort_keys=True, separators=(",", ":")
            ).encode(),
            "canonical",
        ),
        (lambda d: json.dumps({**d, "format": "other/1"}).encode(), "not a consortium-backup/1"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "height"}).encode(), "malformed"),
        (lambda d: json.dumps({**d, "block_hash": "zz"}).encode(), "malformed"),
        (lambda d: b"[1]", "not a consortium-backup/1"),
        (lambda d: b"{", "malformed"),
    ],
)
def test_a_manifest_not_in_canonical_valid_form_is_refused_in_one_line(
    edit: Callable[[dict[str, Any]], bytes], why: str
) -> None:
    with pytest.raises(BackupError, match=why) as e:
        Manifest.decode(edit(json.loads(M.encode())))
    assert "\n" not in str(e.value)


def test_the_seal_binds_the_manifest_bytes() -> None:
    raw = M.encode()
    check_seal(seal(raw), raw)
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 1
    with pytest.raises(BackupError, match="SEAL"):
        check_seal(seal(raw), bytes(flipped))
    with pytest.raises(BackupError, match="SEAL"):
        s = seal(raw)
        check_seal(s[:-2] + (b"1" if s[-2:-1] == b"0" else b"0") + b"\n", raw)


def test_state_records_round_trip_and_refuse_truncation() -> None:
    assert decode_entry(encode_entry(b"key", b"value")) == (b"key", b"value")
    assert decode_entry(encode_entry(b"", b"")) == (b"", b"")
    with pytest.raises(BackupError, match="truncated"):
        decode_entry(b"\x00\x00")
    with pytest.raises(BackupError, match="runs past"):
        decode_entry(encode_entry(b"key", b"")[:-1])
