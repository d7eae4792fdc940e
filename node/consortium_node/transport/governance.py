"""Governance queries of the Ledger service: proposals with their votes and state, the
chain's policies, organisation admins and parameters, and a receipt's proposal status.

Read-only over one committed-state snapshot (the record formats and rules are in
ledger/governance.py and ledger/state.py). Called by LedgerServicer in server.py."""

from __future__ import annotations

from consortium_api.v1 import ledger_pb2, types_pb2

from ..ledger import governance as gov
from ..ledger.state import (
    PARAMS,
    StateReader,
    config_seq,
    get_proposal,
    governed_by_organizations,
    member_organizations,
    organization_admins,
    param,
    param_key,
    policy_of,
    proposal_of_tx,
    u64,
)
from ..ledger.tx import Tx
from . import codec

DEFAULT_LIMIT = 100


def list_proposals(
    snap: StateReader, height: int, req: ledger_pb2.ListProposalsRequest
) -> ledger_pb2.ListProposalsResponse:
    """Newest first; `open_only` walks just the open list."""
    limit = req.limit or DEFAULT_LIMIT
    if req.open_only:
        ids = list(reversed(gov.decode_ids(snap.get(gov.OPEN_PROPOSALS_KEY))))
    else:
        last = u64(snap.get(gov.NEXT_PROPOSAL_KEY)) - 1
        ids = list(range(last, max(last - limit, 0), -1))
    out = []
    for pid in ids[:limit]:
        p = get_proposal(snap, pid)
        if p is not None:
            out.append(codec.proposal_to_pb(p))
    return ledger_pb2.ListProposalsResponse(proposals=out, height=height)


def proposal(snap: StateReader, pid: int) -> types_pb2.Proposal | None:
    p = get_proposal(snap, pid)
    return None if p is None else codec.proposal_to_pb(p)


def governance(snap: StateReader, height: int) -> ledger_pb2.GetGovernanceResponse:
    orgs_mode = governed_by_organizations(snap)
    policies = []
    for action in gov.ACTIONS:
        rule, version = policy_of(snap, action)
        policies.append(
            ledger_pb2.Policy(
                action=action,
                rule=rule,
                version=version,
                is_default=snap.get(gov.policy_key(action)) is None,
            )
        )
    return ledger_pb2.GetGovernanceResponse(
        mode="organizations" if orgs_mode else "legacy",
        config_seq=config_seq(snap),
        policies=policies if orgs_mode else [],
        organizations=[
            types_pb2.OrganizationAdmins(organization=o, admins=list(organization_admins(snap, o)))
            for o in member_organizations(snap)
        ],
        height=height,
        orgs_version=u64(snap.get(gov.ORGS_VERSION_KEY)),
        params=chain_params(snap),
    )


def chain_params(snap: StateReader) -> list[ledger_pb2.ChainParam]:
    """Every chain parameter with its committed value (both governance modes: a legacy chain
    changes them with a direct SetParam), sorted by name."""
    return [
        ledger_pb2.ChainParam(
            name=name,
            value=param(snap, name),
            is_default=snap.get(param_key(name)) is None,
            min=lo,
            max=hi,
        )
        for name, (_default, lo, hi) in sorted(PARAMS.items())
    ]


def receipt_proposal(snap: StateReader, tx: Tx) -> types_pb2.Proposal | None:
    """The current status of the proposal a committed governance tx opened or acted on."""
    pid = proposal_of_tx(snap, tx)
    return None if pid is None else proposal(snap, pid)
