"""Transactions as a client builds them: the payload types, the `TxBody` with its payload in
the right oneof field, the transaction id, signature checks, and hex arguments.

Rule (house rule 3): a transaction id is SHA-256 of the EXACT serialised `TxBody` bytes that
were signed; a body is serialised once and those bytes are what is signed and sent.

Used by `client.keys.Signer.build_tx`, the CLI (`tx`, `query`), the load generator and tests."""

from __future__ import annotations

import hashlib
from typing import Any, TypeAlias

from consortium_api.v1 import types_pb2

from ..crypto import KEY_LEN, verify

__all__ = [
    "KEY_LEN",
    "MAX_NONCE",
    "MAX_UINT64",
    "Payload",
    "build_body",
    "parse_height",
    "parse_hex",
    "tx_id_of",
    "verify_tx",
]

MAX_UINT64 = 2**64 - 1  # heights, nonces and amounts are uint64 on the wire
MAX_NONCE = MAX_UINT64

Payload: TypeAlias = (
    types_pb2.KvPut
    | types_pb2.KvDelete
    | types_pb2.AssetIssue
    | types_pb2.AssetTransfer
    | types_pb2.AddValidator
    | types_pb2.RemoveValidator
    | types_pb2.SetParam
    | types_pb2.AddMember
    | types_pb2.RemoveMember
    | types_pb2.AddOrganization
    | types_pb2.SetOrganizationCA
    | types_pb2.SetAdmins
    | types_pb2.SetPolicy
    | types_pb2.ReplaceValidator
    | types_pb2.Propose
    | types_pb2.Vote
    | types_pb2.Withdraw
    | types_pb2.SubmitEndorsed
    | types_pb2.MigrateGovernance
    | types_pb2.DeployContract
    | types_pb2.UpgradeContract
    | types_pb2.Invoke
)

# payload message type -> name of its field in the `TxBody.payload` oneof
_PAYLOAD_FIELD: dict[type[Any], str] = {
    types_pb2.KvPut: "kv_put",
    types_pb2.KvDelete: "kv_delete",
    types_pb2.AssetIssue: "asset_issue",
    types_pb2.AssetTransfer: "asset_transfer",
    types_pb2.AddValidator: "add_validator",
    types_pb2.RemoveValidator: "remove_validator",
    types_pb2.SetParam: "set_param",
    types_pb2.AddMember: "add_member",
    types_pb2.RemoveMember: "remove_member",
    types_pb2.AddOrganization: "add_organization",
    types_pb2.SetOrganizationCA: "set_organization_ca",
    types_pb2.SetAdmins: "set_admins",
    types_pb2.SetPolicy: "set_policy",
    types_pb2.ReplaceValidator: "replace_validator",
    types_pb2.Propose: "propose",
    types_pb2.Vote: "vote",
    types_pb2.Withdraw: "withdraw",
    types_pb2.SubmitEndorsed: "submit_endorsed",
    types_pb2.MigrateGovernance: "migrate_governance",
    types_pb2.DeployContract: "deploy_contract",
    types_pb2.UpgradeContract: "upgrade_contract",
    types_pb2.Invoke: "invoke",
}


def tx_id_of(body: bytes) -> bytes:
    """The transaction id: SHA-256 of the exact serialised `TxBody` bytes that were signed."""
    return hashlib.sha256(body).digest()


def build_body(chain_id: str, sender: bytes, nonce: int, payload: Payload) -> types_pb2.TxBody:
    """A `TxBody` with `payload` placed in the right oneof field."""
    field = _PAYLOAD_FIELD.get(type(payload))
    if field is None:
        raise TypeError(f"not a transaction payload: {type(payload).__name__}")
    if len(sender) != KEY_LEN:
        raise ValueError(f"sender must be a {KEY_LEN}-byte public key, got {len(sender)} bytes")
    if not 0 <= nonce <= MAX_NONCE:
        raise ValueError(f"nonce out of range: {nonce}")
    body = types_pb2.TxBody(chain_id=chain_id, sender=sender, nonce=nonce)
    getattr(body, field).CopyFrom(payload)
    return body


def verify_tx(tx: types_pb2.SignedTx) -> bool:
    """True iff `tx.signature` is a valid Ed25519 signature of `tx.body` by the body's sender."""
    try:
        body = types_pb2.TxBody.FromString(tx.body)
    except Exception:  # protobuf raises its own DecodeError for malformed input
        return False
    return verify(body.sender, tx.body, tx.signature)


def parse_hex(value: str, what: str, length: int | None = None) -> bytes:
    """Hex (optionally 0x-prefixed) to bytes, with a readable ValueError."""
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} must be hex, got {value!r}") from None
    if length is not None and len(data) != length:
        raise ValueError(
            f"{what} must be {length} bytes ({2 * length} hex chars), got {len(data)} bytes"
        )
    return data


def parse_height(value: str, what: str = "height") -> int | None:
    """A block height given as decimal text, or None when `value` is not a number (a hash,
    say). ValueError (one line) for a number outside 0..2^64-1."""
    text = value.strip()
    if not text.lstrip("+-").isdigit():
        return None
    n = int(text)
    if not 0 <= n <= MAX_UINT64:
        raise ValueError(f"{what} must be between 0 and {MAX_UINT64}, got {text}")
    return n
