"""Ed25519 keys and key files (crypto.py): round trip, file mode, overwrite refusal, mismatched
keys, signature verification never raising."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from consortium_node.crypto import Ed25519Key, KeyFileError, verify
from nacl.signing import SigningKey

pytestmark = pytest.mark.unit

SEED = bytes(range(32))
# RFC 8032 section 7.1, TEST 1: secret key, public key, and the signature of the empty message.
RFC_SK = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PK = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_rfc8032_known_answer() -> None:
    k = Ed25519Key(RFC_SK)
    assert k.public == RFC_PK
    assert k.sign(b"") == RFC_SIG
    assert verify(RFC_PK, b"", RFC_SIG)


def test_sign_and_verify() -> None:
    k = Ed25519Key(SEED)
    assert k.seed == SEED
    assert k.public == bytes(SigningKey(SEED).verify_key)
    sig = k.sign(b"message")
    assert len(sig) == 64
    assert verify(k.public, b"message", sig)
    assert not verify(k.public, b"messagE", sig)
    assert not verify(Ed25519Key(bytes(32)).public, b"message", sig)
    bad = bytearray(sig)
    bad[10] ^= 1
    assert not verify(k.public, b"message", bytes(bad))


@pytest.mark.parametrize(
    ("pk", "sig"),
    [
        (b"", b"s" * 64),
        (b"p" * 31, b"s" * 64),
        (b"p" * 33, b"s" * 64),
        (RFC_PK, b""),
        (RFC_PK, b"s" * 63),
        (RFC_PK, b"s" * 65),
    ],
    ids=["empty-key", "short-key", "long-key", "empty-sig", "short-sig", "long-sig"],
)
def test_verify_never_raises_on_malformed_input(pk: bytes, sig: bytes) -> None:
    assert verify(pk, b"data", sig) is False


def test_generate_is_random() -> None:
    a, b = Ed25519Key.generate(), Ed25519Key.generate()
    assert a.public != b.public and len(a.seed) == 32


def test_json_round_trip() -> None:
    k = Ed25519Key(SEED)
    d = json.loads(k.to_json())
    assert d == {"public_key": k.public.hex(), "private_key": SEED.hex()}
    back = Ed25519Key.from_json(k.to_json())
    assert back.public == k.public and back.seed == k.seed
    # the public key is optional (derived from the seed)
    assert Ed25519Key.from_json(json.dumps({"private_key": SEED.hex()})).public == k.public


def test_file_round_trip_and_mode(tmp_path: Path) -> None:
    k = Ed25519Key(SEED)
    path = tmp_path / "keys" / "sub" / "node.key"
    k.save(path)  # creates parent directories
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().endswith("\n")
    back = Ed25519Key.load(path)
    assert back.public == k.public and back.seed == SEED


def test_mode_is_0600_regardless_of_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Ed25519Key(SEED).save(tmp_path / "a.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    Ed25519Key(SEED).save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        Ed25519Key(bytes(32)).save(path)
    assert path.read_bytes() == before
    # explicit overwrite replaces the key entirely (no stale trailing bytes)
    other = Ed25519Key(bytes(32))
    other.save(path, overwrite=True)
    assert Ed25519Key.load(path).public == other.public
    assert path.read_text() == other.to_json() + "\n"


def test_overwrite_tightens_a_permissive_mode(tmp_path: Path) -> None:
    """BUG: `os.open(..., 0o600)` applies the mode only when the file is created; overwriting an
    existing 0644 file leaves the new private key world-readable. Fix: `os.fchmod(fd, 0o600)`
    after opening (the client's Signer.save writes through this same save)."""
    path = tmp_path / "node.key"
    path.write_text("old")
    path.chmod(0o644)
    Ed25519Key(SEED).save(path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_mismatched_public_key(tmp_path: Path) -> None:
    text = json.dumps({"public_key": Ed25519Key(bytes(32)).public.hex(), "private_key": SEED.hex()})
    with pytest.raises(KeyFileError, match="does not match"):
        Ed25519Key.from_json(text)
    path = tmp_path / "bad.key"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=r"bad\.key: public_key does not match"):
        Ed25519Key.load(path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "null",
        "{}",
        '{"public_key": "00"}',
        '{"private_key": "zz"}',
        '{"private_key": "0011"}',  # not 32 bytes
        '{"private_key": 5}',
        '{"private_key": null}',
    ],
    ids=[
        "empty",
        "garbage",
        "list",
        "null",
        "no-private",
        "only-public",
        "bad-hex",
        "short",
        "int",
        "none",
    ],
)
def test_bad_key_files(tmp_path: Path, text: str) -> None:
    with pytest.raises(KeyFileError, match="not a consortium key file"):
        Ed25519Key.from_json(text)
    path = tmp_path / "k.json"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=r"k\.json"):
        Ed25519Key.load(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"cannot read key file .*missing\.key"):
        Ed25519Key.load(tmp_path / "missing.key")
