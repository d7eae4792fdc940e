"""protobuf <-> domain conversion. Decoding untrusted bytes never raises anything but
`TxRejected` (transactions) or `DecodeError` (everything else).

Used by the Ledger server, the runtime (decoding block txs) and peer transport."""

from __future__ import annotations

from consortium_api.v1 import types_pb2
from google.protobuf.message import DecodeError as PbDecodeError

from ..ledger.block import Block, BlockHeader, CommitCertificate
from ..ledger.errors import Reject, TxRejected
from ..ledger.hashing import sha256
from ..ledger.state import Receipt, Validator
from ..ledger.tx import (
    AddMember,
    AddOrganization,
    AddValidator,
    AssetIssue,
    AssetTransfer,
    KvDelete,
    KvPut,
    Payload,
    RemoveMember,
    RemoveValidator,
    SetOrganizationCA,
    SetParam,
    Tx,
)


def decode_tx(raw: bytes) -> Tx:
    try:
        signed = types_pb2.SignedTx.FromString(raw)
        body = types_pb2.TxBody.FromString(signed.body)
    except (PbDecodeError, ValueError) as e:
        raise TxRejected(Reject.MALFORMED, f"transaction does not decode: {e}") from e
    which = body.WhichOneof("payload")
    payload: Payload
    if which == "kv_put":
        payload = KvPut(body.kv_put.key, body.kv_put.value)
    elif which == "kv_delete":
        payload = KvDelete(body.kv_delete.key)
    elif which == "asset_issue":
        p = body.asset_issue
        payload = AssetIssue(p.asset, p.to, p.amount)
    elif which == "asset_transfer":
        q = body.asset_transfer
        payload = AssetTransfer(q.asset, q.to, q.amount)
    elif which == "add_validator":
        payload = AddValidator(body.add_validator.node_id, body.add_validator.organization)
    elif which == "remove_validator":
        payload = RemoveValidator(body.remove_validator.node_id)
    elif which == "set_param":
        payload = SetParam(body.set_param.name, body.set_param.value)
    elif which == "add_member":
        payload = AddMember(body.add_member.key, body.add_member.organization)
    elif which == "remove_member":
        payload = RemoveMember(body.remove_member.key)
    elif which == "add_organization":
        payload = AddOrganization(body.add_organization.name, body.add_organization.ca_cert)
    elif which == "set_organization_ca":
        q2 = body.set_organization_ca
        payload = SetOrganizationCA(q2.name, q2.ca_cert)
    else:
        raise TxRejected(Reject.UNKNOWN_TYPE, "transaction has no known payload type")
    return Tx(
        id=sha256(signed.body),
        raw=raw,
        body=signed.body,
        signature=signed.signature,
        chain_id=body.chain_id,
        sender=body.sender,
        nonce=body.nonce,
        payload=payload,
    )


def header_view(h: BlockHeader) -> types_pb2.BlockHeaderView:
    return types_pb2.BlockHeaderView(
        version=h.version,
        height=h.height,
        time_ms=h.time_ms,
        prev_hash=h.prev_hash,
        tx_root=h.tx_root,
        state_root=h.state_root,
        validators_hash=h.validators_hash,
        proposer=h.proposer,
        hash=h.hash,
    )


def block_to_pb(
    block: Block, *, with_txs: bool = True, tx_ids: list[bytes] | None = None
) -> types_pb2.Block:
    pb = types_pb2.Block(header=block.header.encode(), header_view=header_view(block.header))
    if with_txs:
        pb.txs.extend(block.txs)
    if tx_ids is not None:
        pb.tx_ids.extend(tx_ids)
    if block.certificate is not None:
        c = block.certificate
        pb.certificate.CopyFrom(
            types_pb2.CommitCertificate(
                height=c.height,
                round=c.round,
                block_hash=c.block_hash,
                signatures=[types_pb2.Signature(signer=s, signature=g) for s, g in c.signatures],
            )
        )
    return pb


def block_from_pb(pb: types_pb2.Block) -> Block:
    header = BlockHeader.decode(pb.header)
    cert = None
    if pb.HasField("certificate"):
        c = pb.certificate
        cert = CommitCertificate(
            c.height, c.round, c.block_hash, tuple((s.signer, s.signature) for s in c.signatures)
        )
    return Block(header, tuple(pb.txs), cert)


def receipt_to_pb(r: Receipt) -> types_pb2.Receipt:
    return types_pb2.Receipt(
        tx_id=r.tx_id,
        height=r.height,
        index=r.index,
        code=types_pb2.TxCode.ValueType(r.code),
        message=r.message,
    )


def validator_to_pb(v: Validator) -> types_pb2.Validator:
    return types_pb2.Validator(node_id=v.node_id, organization=v.organization)
