"""Transactions as the core sees them: decoded, immutable, carrying their exact signed bytes.

Decoding from the wire (protobuf `SignedTx`/`TxBody`) happens in transport/codec.py; this module
holds the domain types and the stateless checks every node applies identically. The tx id is
SHA-256 of the signed body bytes (never of a re-serialisation)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .certs import ca_bundle_problem
from .errors import Reject, TxRejected

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 64 * 1024
DEFAULT_MAX_TX_BYTES = 128 * 1024
MAX_AMOUNT = (1 << 63) - 1
MAX_ORG_BYTES = 255  # the validator-set encoding stores the length in one byte
ASSET_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
PARAM_RE = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True, slots=True)
class KvPut:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class KvDelete:
    key: bytes


@dataclass(frozen=True, slots=True)
class AssetIssue:
    asset: str
    to: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class AssetTransfer:
    asset: str
    to: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class AddValidator:
    node_id: bytes
    organization: str


@dataclass(frozen=True, slots=True)
class RemoveValidator:
    node_id: bytes


@dataclass(frozen=True, slots=True)
class SetParam:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class AddMember:
    """An admin vouches for sender key `key` on behalf of member organisation `organization`."""

    key: bytes
    organization: str


@dataclass(frozen=True, slots=True)
class RemoveMember:
    key: bytes


@dataclass(frozen=True, slots=True)
class AddOrganization:
    """A member organisation joins after genesis, with its CA certificate (PEM; empty on a
    chain without TLS)."""

    name: str
    ca_cert: bytes


@dataclass(frozen=True, slots=True)
class SetOrganizationCA:
    """Replace an organisation's trusted CA certificates (a PEM bundle: old + new while a
    CA is rotated)."""

    name: str
    ca_cert: bytes


MAX_CA_BYTES = 16 * 1024

Payload = (
    KvPut
    | KvDelete
    | AssetIssue
    | AssetTransfer
    | AddValidator
    | RemoveValidator
    | SetParam
    | AddMember
    | RemoveMember
    | AddOrganization
    | SetOrganizationCA
)
GOVERNANCE = (
    AddValidator,
    RemoveValidator,
    SetParam,
    AddMember,
    RemoveMember,
    AddOrganization,
    SetOrganizationCA,
)


@dataclass(frozen=True, slots=True)
class Tx:
    id: bytes  # SHA-256(body)
    raw: bytes  # the SignedTx bytes exactly as received (what blocks carry)
    body: bytes  # the signed bytes
    signature: bytes
    chain_id: str
    sender: bytes
    nonce: int
    payload: Payload


def check_stateless(tx: Tx, chain_id: str, max_tx_bytes: int) -> None:
    """Checks that need no state (signature excepted: see crypto.verify). Raises TxRejected."""
    if len(tx.raw) > max_tx_bytes:
        raise TxRejected(
            Reject.TOO_LARGE, f"transaction is {len(tx.raw)} bytes, limit {max_tx_bytes}"
        )
    if tx.chain_id != chain_id:
        raise TxRejected(
            Reject.WRONG_CHAIN, f"chain id {tx.chain_id!r} is not this chain ({chain_id!r})"
        )
    if len(tx.sender) != 32:
        raise TxRejected(Reject.MALFORMED, "sender must be a 32-byte Ed25519 public key")
    if len(tx.signature) != 64:
        raise TxRejected(Reject.BAD_SIGNATURE, "signature must be 64 bytes")
    p = tx.payload
    if isinstance(p, KvPut | KvDelete):
        if not 0 < len(p.key) <= MAX_KEY_BYTES:
            raise TxRejected(Reject.INVALID, f"key must be 1..{MAX_KEY_BYTES} bytes")
        if isinstance(p, KvPut) and len(p.value) > MAX_VALUE_BYTES:
            raise TxRejected(Reject.INVALID, f"value exceeds {MAX_VALUE_BYTES} bytes")
    elif isinstance(p, AssetIssue | AssetTransfer):
        if not ASSET_RE.fullmatch(p.asset):
            raise TxRejected(
                Reject.INVALID, f"asset name {p.asset!r} must match {ASSET_RE.pattern}"
            )
        if len(p.to) != 32:
            raise TxRejected(Reject.INVALID, "recipient account must be a 32-byte public key")
        if not 0 < p.amount <= MAX_AMOUNT:
            raise TxRejected(Reject.INVALID, f"amount must be 1..{MAX_AMOUNT}")
    elif isinstance(p, AddValidator | RemoveValidator):
        if len(p.node_id) != 32:
            raise TxRejected(Reject.INVALID, "validator node id must be a 32-byte public key")
        if isinstance(p, AddValidator) and not 0 < len(p.organization.encode()) <= MAX_ORG_BYTES:
            raise TxRejected(
                Reject.INVALID, f"validator organization must be 1..{MAX_ORG_BYTES} bytes"
            )
    elif isinstance(p, AddMember | RemoveMember):
        if len(p.key) != 32:
            raise TxRejected(Reject.INVALID, "member key must be a 32-byte Ed25519 public key")
        if isinstance(p, AddMember) and not 0 < len(p.organization.encode()) <= MAX_ORG_BYTES:
            raise TxRejected(Reject.INVALID, f"organization must be 1..{MAX_ORG_BYTES} bytes")
    elif isinstance(p, AddOrganization | SetOrganizationCA):
        if not 0 < len(p.name.encode()) <= MAX_ORG_BYTES:
            raise TxRejected(Reject.INVALID, f"organization must be 1..{MAX_ORG_BYTES} bytes")
        if len(p.ca_cert) > MAX_CA_BYTES:
            raise TxRejected(Reject.INVALID, f"CA certificate exceeds {MAX_CA_BYTES} bytes")
        if isinstance(p, SetOrganizationCA) and not p.ca_cert:
            raise TxRejected(Reject.INVALID, "SetOrganizationCA needs at least one CA certificate")
        if b"PRIVATE KEY" in p.ca_cert:  # never put a CA's key on chain
            raise TxRejected(Reject.INVALID, "CA certificate must not contain a private key")
        if p.ca_cert and (why := ca_bundle_problem(p.ca_cert)) is not None:
            raise TxRejected(Reject.INVALID, why)
    elif isinstance(p, SetParam) and not PARAM_RE.fullmatch(p.name):
        raise TxRejected(Reject.INVALID, f"parameter name {p.name!r} must match {PARAM_RE.pattern}")
