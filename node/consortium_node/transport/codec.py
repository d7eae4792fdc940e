"""protobuf <-> domain conversion. Decoding untrusted bytes never raises anything but
`TxRejected` (transactions) or `DecodeError` (everything else).

Used by the Ledger server, the runtime (decoding block txs) and peer transport."""

from __future__ import annotations

from typing import Any, TypeVar

from consortium_api.v1 import types_pb2
from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message

from .. import crypto
from ..ledger import contracts as cx
from ..ledger import governance as gov
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
    DeployContract,
    Endorsement,
    GovAction,
    Invoke,
    KvDelete,
    KvPut,
    MigrateGovernance,
    Payload,
    Propose,
    RemoveMember,
    RemoveValidator,
    ReplaceValidator,
    SetAdmins,
    SetOrganizationCA,
    SetParam,
    SetPolicy,
    SubmitEndorsed,
    Tx,
    UpgradeContract,
    Vote,
    Withdraw,
)

_Pb = TypeVar("_Pb", bound=Message)


def _tx_part(cls: type[_Pb], data: bytes) -> _Pb:
    """A SignedTx or TxBody from wire bytes; MALFORMED if they do not parse."""
    try:
        return cls.FromString(data)
    except (PbDecodeError, ValueError) as e:
        raise TxRejected(Reject.MALFORMED, f"transaction does not decode: {e}") from e


def tx_id(raw: bytes) -> bytes:
    """`decode_tx(raw).id` without decoding the body: the SHA-256 of the signed body bytes.
    For ids of stored txs (block streams, inclusion proofs, event queries), where the full
    decode was 5x the cost."""
    return sha256(_tx_part(types_pb2.SignedTx, raw).body)


def decode_tx(raw: bytes) -> Tx:
    signed = _tx_part(types_pb2.SignedTx, raw)
    body = _tx_part(types_pb2.TxBody, signed.body)
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
    elif which == "propose":
        payload = Propose(
            decode_gov_action(body.propose.action), body.propose.action, body.propose.ttl
        )
    elif which == "invoke":
        i = body.invoke
        payload = Invoke(i.contract, i.method, i.input, i.fuel_limit)
    elif which == "vote":
        payload = Vote(body.vote.proposal, body.vote.approve)
    elif which == "withdraw":
        payload = Withdraw(body.withdraw.proposal)
    elif which == "submit_endorsed":
        payload = _submit_endorsed(body.chain_id, body.submit_endorsed)
    elif which == "migrate_governance":
        payload = MigrateGovernance(
            tuple((o.organization, tuple(o.admins)) for o in body.migrate_governance.organizations)
        )
    elif which is not None and which in _ACTION_FIELDS:
        payload = _action(getattr(body, which))
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


_ACTION_FIELDS = frozenset(types_pb2.GovAction.DESCRIPTOR.fields_by_name)


def _action(m: Any) -> GovAction:
    """A configuration change message (the same types in TxBody and GovAction)."""
    if isinstance(m, types_pb2.AddValidator):
        return AddValidator(m.node_id, m.organization)
    if isinstance(m, types_pb2.RemoveValidator):
        return RemoveValidator(m.node_id)
    if isinstance(m, types_pb2.ReplaceValidator):
        return ReplaceValidator(m.old, m.new)
    if isinstance(m, types_pb2.SetParam):
        return SetParam(m.name, m.value)
    if isinstance(m, types_pb2.AddMember):
        return AddMember(m.key, m.organization)
    if isinstance(m, types_pb2.RemoveMember):
        return RemoveMember(m.key)
    if isinstance(m, types_pb2.AddOrganization):
        return AddOrganization(m.name, m.ca_cert, tuple(m.admins))
    if isinstance(m, types_pb2.SetOrganizationCA):
        return SetOrganizationCA(m.name, m.ca_cert)
    if isinstance(m, types_pb2.SetAdmins):
        return SetAdmins(m.organization, tuple(m.admins))
    if isinstance(m, types_pb2.SetPolicy):
        return SetPolicy(m.action, m.rule)
    if isinstance(m, types_pb2.DeployContract):
        return DeployContract(m.name, m.code, m.init_input)
    if isinstance(m, types_pb2.UpgradeContract):
        return UpgradeContract(m.name, m.code)
    raise TxRejected(Reject.UNKNOWN_TYPE, f"{type(m).__name__} is not a governance action")


def gov_action_to_pb(a: GovAction) -> types_pb2.GovAction:
    """Domain action -> `GovAction` (the CLI and tests serialise this once and sign it)."""
    m = types_pb2.GovAction()
    if isinstance(a, AddValidator):
        m.add_validator.CopyFrom(
            types_pb2.AddValidator(node_id=a.node_id, organization=a.organization)
        )
    elif isinstance(a, RemoveValidator):
        m.remove_validator.CopyFrom(types_pb2.RemoveValidator(node_id=a.node_id))
    elif isinstance(a, ReplaceValidator):
        m.replace_validator.CopyFrom(types_pb2.ReplaceValidator(old=a.old, new=a.new))
    elif isinstance(a, SetParam):
        m.set_param.CopyFrom(types_pb2.SetParam(name=a.name, value=a.value))
    elif isinstance(a, AddMember):
        m.add_member.CopyFrom(types_pb2.AddMember(key=a.key, organization=a.organization))
    elif isinstance(a, RemoveMember):
        m.remove_member.CopyFrom(types_pb2.RemoveMember(key=a.key))
    elif isinstance(a, AddOrganization):
        m.add_organization.CopyFrom(
            types_pb2.AddOrganization(name=a.name, ca_cert=a.ca_cert, admins=list(a.admins))
        )
    elif isinstance(a, SetOrganizationCA):
        m.set_organization_ca.CopyFrom(types_pb2.SetOrganizationCA(name=a.name, ca_cert=a.ca_cert))
    elif isinstance(a, SetAdmins):
        m.set_admins.CopyFrom(
            types_pb2.SetAdmins(organization=a.organization, admins=list(a.admins))
        )
    elif isinstance(a, DeployContract):
        m.deploy_contract.CopyFrom(
            types_pb2.DeployContract(name=a.name, code=a.code, init_input=a.init_input)
        )
    elif isinstance(a, UpgradeContract):
        m.upgrade_contract.CopyFrom(types_pb2.UpgradeContract(name=a.name, code=a.code))
    else:
        m.set_policy.CopyFrom(types_pb2.SetPolicy(action=a.action, rule=a.rule))
    return m


def decode_gov_action(raw: bytes) -> GovAction:
    """A serialised `GovAction` (Propose, SubmitEndorsed, endorsement files)."""
    try:
        m = types_pb2.GovAction.FromString(raw)
    except (PbDecodeError, ValueError) as e:
        raise TxRejected(Reject.MALFORMED, f"governance action does not decode: {e}") from e
    which = m.WhichOneof("action")
    if which is None:
        raise TxRejected(Reject.MALFORMED, "governance action is empty")
    return _action(getattr(m, which))


def _submit_endorsed(chain_id: str, m: types_pb2.SubmitEndorsed) -> SubmitEndorsed:
    """Each endorsement's signature is checked here, once, on every node alike (Ed25519
    verification is deterministic), so the ledger stays free of cryptography."""
    msg = gov.endorsement_message(chain_id, m.action, m.config_seq, m.expiry)
    ends = tuple(
        Endorsement(
            e.signer,
            e.signature,
            len(e.signer) == 32
            and len(e.signature) == 64
            and crypto.verify(e.signer, msg, e.signature),
        )
        for e in m.endorsements
    )
    return SubmitEndorsed(decode_gov_action(m.action), m.action, m.config_seq, m.expiry, ends)


_STATE_PB = {
    gov.PENDING: types_pb2.PROPOSAL_STATE_PENDING,
    gov.EXECUTED: types_pb2.PROPOSAL_STATE_EXECUTED,
    gov.FAILED: types_pb2.PROPOSAL_STATE_FAILED,
    gov.REJECTED: types_pb2.PROPOSAL_STATE_REJECTED,
    gov.EXPIRED: types_pb2.PROPOSAL_STATE_EXPIRED,
    gov.ABORTED: types_pb2.PROPOSAL_STATE_ABORTED,
    gov.WITHDRAWN: types_pb2.PROPOSAL_STATE_WITHDRAWN,
}


def proposal_to_pb(p: gov.Proposal) -> types_pb2.Proposal:
    t = p.tally()
    return types_pb2.Proposal(
        id=p.id,
        state=_STATE_PB[p.state],
        reason=p.reason,
        proposer=p.proposer,
        proposer_key=p.proposer_key,
        action=p.action,
        action_bytes=p.action_bytes,
        summary=p.summary,
        subject=p.subject or "",
        created_height=p.created,
        expiry_height=p.expiry,
        closed_height=p.closed,
        policy=p.rule,
        members=list(p.members),
        votes=[
            types_pb2.ProposalVote(
                organization=v.organization, approve=v.approve, signer=v.signer, height=v.height
            )
            for v in p.votes
        ],
        yes=t.yes,
        no=t.no,
        needed=t.needed,
        offline=p.offline,
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


def contract_receipt_to_pb(r: cx.ContractReceipt) -> types_pb2.ContractReceipt:
    o = r.outcome
    return types_pb2.ContractReceipt(
        contract=r.contract,
        method=r.method,
        ok=o.ok,
        reason=o.reason,
        fuel_used=o.fuel_used,
        result=o.result,
        events=[types_pb2.ContractEvent(topic=e.topic, data=e.data) for e in o.events],
    )


def contract_info_to_pb(c: cx.ContractInfo) -> types_pb2.ContractInfo:
    return types_pb2.ContractInfo(
        name=c.name,
        code_hash=c.code_hash,
        version=c.version,
        deployed_height=c.deployed,
        upgraded_height=c.upgraded,
        methods=list(c.exports),
    )
