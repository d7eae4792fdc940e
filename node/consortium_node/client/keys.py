"""`Signer`: a client's Ed25519 key that builds and signs transactions.

The key file and its durable write are `crypto.Ed25519Key`'s (the one implementation of the
format); `Signer` adds transaction signing and words key-file errors for a CLI user (where to
create a missing key, `--force` to overwrite). Every error is a `crypto.KeyFileError`.

Used by the CLI, the operator (governance transactions), `consortium up`, tests, benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

from consortium_api.v1 import types_pb2

from ..crypto import KEY_LEN, Ed25519Key, KeyFileError
from .tx import Payload, build_body, tx_id_of


class Signer(Ed25519Key):
    """An Ed25519 signing key (client identity); builds and signs transactions."""

    __slots__ = ()

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519Key.generate().seed)

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        if len(seed) != KEY_LEN:
            raise ValueError(f"Ed25519 seed must be {KEY_LEN} bytes, got {len(seed)}")
        return cls(seed)

    @property
    def public_key(self) -> bytes:
        return self.public

    def build_tx(
        self, chain_id: str, nonce: int, payload: Payload
    ) -> tuple[bytes, types_pb2.SignedTx]:
        """Serialise the body once, sign those bytes; returns `(tx_id, SignedTx)`.
        `SignedTx.SerializeToString()` gives the wire bytes if needed."""
        body = build_body(chain_id, self.public_key, nonce, payload).SerializeToString()
        return tx_id_of(body), types_pb2.SignedTx(body=body, signature=self.sign(body))

    # key files: crypto.Ed25519Key reads and writes them; only the wording is the CLI's -----

    @classmethod
    def from_json(cls, text: str, source: str = "key file") -> Signer:
        try:
            key = super().from_json(text, source)
        except KeyFileError as e:
            if e.problem != "malformed":
                raise
            raise KeyFileError(
                f"{source} is not a valid key file ({e.detail})", e.problem, e.detail
            ) from e
        assert isinstance(key, Signer)  # Ed25519Key.from_json builds `cls`
        return key

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Signer:
        p = Path(path)
        try:
            key = super().load(p)
        except KeyFileError as e:
            if e.problem == "missing":
                raise KeyFileError(
                    f"key file {p} not found (create one with 'consortium keys new --out {p}')",
                    e.problem,
                ) from None
            raise
        assert isinstance(key, Signer)
        return key

    def save(
        self, path: str | os.PathLike[str], overwrite: bool = False, *, force: bool = False
    ) -> None:
        """Write the key file (mode 0600, fsynced); refuses to overwrite unless `force` (the
        CLI's flag) or `overwrite` (the base class's name for it). Parent directories it
        creates are private (0700)."""
        p = Path(path)
        if p.is_dir():
            raise KeyFileError(f"{p} is a directory", "unwritable")
        try:
            p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            super().save(p, overwrite=overwrite or force)
        except FileExistsError:
            raise KeyFileError(
                f"key file {p} already exists (use --force to overwrite)", "exists"
            ) from None
        except OSError as e:
            raise KeyFileError(
                f"cannot write key file {p}: {e.strerror or e}", "unwritable"
            ) from None
