"""Ed25519 keys (PyNaCl): signing keys, THE key-file format, signature checks.

Key file: JSON {"public_key": hex, "private_key": hex of the 32-byte seed} and a newline, mode
0600. This module is the one implementation of that format: node keys (runtime), client keys
(`consortium_node.client.keys.Signer` subclasses `Ed25519Key` and only rewords its errors for
the CLI), `consortium up` and the operator (key generation) all read and write through it.

Durability: `save` writes the whole file, fsyncs it, then fsyncs the directory that holds it,
so a key that `save` returned for survives a crash (a node's identity must not vanish after
its public key was put into a genesis)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

KEY_LEN = 32  # bytes of an Ed25519 seed and of a public key

KeyFileProblem = Literal["malformed", "mismatch", "missing", "unreadable", "exists", "unwritable"]


class KeyFileError(ValueError):
    """A key file (or key text) that cannot be used. `problem` says which kind, so a caller
    can phrase its own advice (the CLI adds "create one with ..." to `missing`); `str(err)`
    is one line naming the source."""

    def __init__(self, message: str, problem: KeyFileProblem, detail: str = "") -> None:
        super().__init__(message)
        self.problem: KeyFileProblem = problem
        self.detail = detail


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
        """Detached 64-byte Ed25519 signature of `data`."""
        return bytes(self._sk.sign(data).signature)

    def to_json(self) -> str:
        return json.dumps({"public_key": self.public.hex(), "private_key": self.seed.hex()})

    @classmethod
    def from_json(cls, text: str, source: str = "key") -> Ed25519Key:
        try:
            d = json.loads(text)
            key = cls(bytes.fromhex(d["private_key"]))
        except (ValueError, KeyError, TypeError) as e:
            detail = " ".join(str(e).split())
            raise KeyFileError(
                f"{source}: not a consortium key file ({detail})", "malformed", detail
            ) from e
        if "public_key" in d and str(d["public_key"]).lower() != key.public.hex():
            raise KeyFileError(f"{source}: public_key does not match private_key", "mismatch")
        return key

    @classmethod
    def load(cls, path: Path) -> Ed25519Key:
        try:
            text = path.read_text()
        except OSError as e:
            problem: KeyFileProblem = (
                "missing" if isinstance(e, FileNotFoundError) else "unreadable"
            )
            reason = e.strerror or str(e)
            raise KeyFileError(f"cannot read key file {path}: {reason}", problem, reason) from e
        return cls.from_json(text, str(path))

    def save(self, path: Path, overwrite: bool = False) -> None:
        """Write the key file (mode 0600, fsynced with its directory). Without `overwrite`,
        an existing file is left alone and FileExistsError raised."""
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)  # an overwritten file keeps its old mode otherwise
        with os.fdopen(fd, "w") as f:
            f.write(self.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new directory entry is durable too
        finally:
            os.close(dir_fd)


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
