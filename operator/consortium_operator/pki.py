"""Key material for a consortium: per-node Ed25519 keys and the consortium's governance admin
key, in the node's key file format `{"public_key": hex, "private_key": hex seed}`.

Pure and deterministic given its inputs: randomness comes in through `entropy` (os.urandom in
production, a seeded source in tests). Private keys only ever leave this module as key file
text destined for a Secret; everything else sees public keys (`public_key_of`).
Per-organisation CAs and TLS certificates (issue 7) will live here too."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from consortium_node.crypto import Ed25519Key, KeyFileError

Entropy = Callable[[int], bytes]


class KeyError_(ValueError):
    """A stored key file is malformed (the message never contains key material)."""


def new_key(entropy: Entropy = os.urandom) -> Ed25519Key:
    """A new Ed25519 key from 32 bytes of `entropy`."""
    seed = entropy(32)
    if len(seed) != 32:
        raise ValueError("entropy must return the number of bytes asked for")
    return Ed25519Key(seed)


def key_file(key: Ed25519Key) -> str:
    """The key file text a node reads with `--key-file` (and the operator for its admin key)."""
    return key.to_json()


def load_key(text: str, source: str) -> Ed25519Key:
    try:
        return Ed25519Key.from_json(text, source)
    except KeyFileError:
        raise KeyError_(f"{source} is not a valid key file") from None


def public_key_of(text: str, source: str) -> bytes:
    """The public key of a stored key file, checked against its private key."""
    return load_key(text, source).public


def public_key_hint(text: str) -> str:
    """The public key field as written, without parsing the private half (for messages)."""
    try:
        return str(json.loads(text).get("public_key", ""))[:16]
    except (ValueError, AttributeError):
        return ""
