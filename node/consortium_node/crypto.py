"""Ed25519 keys (PyNaCl): node and client signing keys, key files, signature checks.

Key file: JSON {"public_key": hex, "private_key": hex of the 32-byte seed}, mode 0600. Used by
runtime (node key, tx signature checks), the CLI/client (client keys), `consortium up` and the
operator (key generation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey


class KeyFileError(ValueError):
    pass


class Ed25519Key:
    __slots__ = ("_sk", "public")

    def __init__(self, seed: bytes) -> None:
        self._sk = SigningKey(seed)
        self.public: bytes = bytes(self._sk.verify_key)

    @classmethod
    def generate(cls) -> Ed25519Key:
        return cls(bytes(SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._sk)

    def sign(self, data: bytes) -> bytes:
        return bytes(self._sk.sign(data).signature)

    def to_json(self) -> str:
        return json.dumps({"public_key": self.public.hex(), "private_key": self.seed.hex()})

    @classmethod
    def from_json(cls, text: str, source: str = "key") -> Ed25519Key:
        try:
            d = json.loads(text)
            key = cls(bytes.fromhex(d["private_key"]))
        except (ValueError, KeyError, TypeError) as e:
            raise KeyFileError(f"{source}: not a consortium key file ({e})") from e
        if "public_key" in d and str(d["public_key"]).lower() != key.public.hex():
            raise KeyFileError(f"{source}: public_key does not match private_key")
        return key

    @classmethod
    def load(cls, path: Path) -> Ed25519Key:
        try:
            text = path.read_text()
        except OSError as e:
            raise KeyFileError(f"cannot read key file {path}: {e.strerror}") from e
        return cls.from_json(text, str(path))

    def save(self, path: Path, overwrite: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # an overwritten file keeps its old mode otherwise
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


_VERIFY_KEYS: dict[bytes, VerifyKey] = {}
_VERIFY_KEYS_MAX = 100_000


def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Ed25519 check. Parsed public keys are cached (parsing costs about a third of a verify)."""
    try:
        vk = _VERIFY_KEYS.get(public_key)
        if vk is None:
            if len(_VERIFY_KEYS) >= _VERIFY_KEYS_MAX:
                _VERIFY_KEYS.clear()
            vk = _VERIFY_KEYS[public_key] = VerifyKey(public_key)
        vk.verify(data, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
