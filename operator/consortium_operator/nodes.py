"""gRPC to node pods: read each node's status (height, role, leader, validator set, sync
state, organisations, peer links) and the chain's recent proposals, and submit governance transactions,
waiting until the chain commits them: on a legacy chain AddValidator / RemoveValidator /
AddOrganization signed with the consortium's admin key; under governance by organisations
Propose / Vote, each signed with the key of the one organisation it names (reconcile reads
that organisation's own Secret, and `governance` refuses a key that is not its admin key).

Uses the synchronous client of consortium_node.client in threads. A node that does not answer
is simply absent from the result: plan treats it as not caught up.

TLS: with spec.security.tls the operator dials with its own client certificate (the
`<consortium>-operator-client` Secret, `tls`) and checks each node's certificate against the
name `<pod>.<consortium>-peers.<ns>.svc` it was issued for, whatever address it dials (pod IP
by default). `tls` None means the consortium runs plaintext."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from consortium_api.v1 import types_pb2
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.errors import ClientError
from consortium_node.client.gov import gov_action
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from google.protobuf.message import DecodeError

from .model import (
    CLIENT_PORT,
    ContractView,
    Names,
    NodeStatus,
    PeerLinkView,
    PodState,
    ProposalView,
)
from .plan import (
    AddOrganization,
    AddValidator,
    Change,
    DeployContract,
    Propose,
    RegisterMember,
    RemoveValidator,
    ReplaceValidator,
    SetParam,
    UpgradeContract,
    Vote,
    contract_subject,
)
from .settings import Settings

__all__ = [
    "ClientError",
    "ClientTLS",
    "Endpoint",
    "GovernanceError",
    "chain_params",
    "contracts",
    "governance",
    "proposals",
    "signer_for",
    "statuses",
]

log = logging.getLogger("consortium_operator.nodes")

TX_OK = 0
TX_KNOWN = 6  # ALREADY_EXISTS: the node has this very transaction (pooled or committed)
Governance = (
    AddValidator | RemoveValidator | AddOrganization | SetParam | Propose | Vote | RegisterMember
)
PROPOSALS_LISTED = 50  # recent proposals read per pass (newest first)


class GovernanceError(Exception):
    """A governance transaction was refused or not committed in time."""


class Endpoint(NamedTuple):
    """A pod's client gRPC address and the name its TLS certificate is checked against."""

    address: str
    server_name: str

    def __str__(self) -> str:
        return self.address


def endpoint(pod: PodState, names: Names, namespace: str, settings: Settings) -> Endpoint | None:
    """Where the operator reaches a pod's client gRPC port (None: not reachable yet)."""
    name = f"{pod.name}.{names.peers_service}.{namespace}.svc"
    if settings.node_address == "dns":
        return Endpoint(f"{name}.{settings.cluster_domain}:{CLIENT_PORT}", name)
    return Endpoint(f"{pod.ip}:{CLIENT_PORT}", name) if pod.ip else None


def _client(ep: Endpoint, timeout: float, tls: ClientTLS | None) -> Client:
    if tls is None:
        return Client(ep.address, timeout)
    return Client(ep.address, timeout, tls=dataclasses.replace(tls, server_name=ep.server_name))


def _status(ep: Endpoint, timeout: float, tls: ClientTLS | None) -> NodeStatus:
    with _client(ep, timeout, tls) as c:
        s = c.status(timeout=timeout)
    return NodeStatus(
        height=int(s.height),
        role=s.role,
        leader=bytes(s.leader),
        validators=tuple((bytes(v.node_id), v.organization) for v in s.validators),
        sync_state=s.sync_state,
        chain_id=s.chain_id,
        organizations=tuple(s.organizations),
        peers=tuple(
            PeerLinkView(bytes(p.node_id), p.address, p.connected, p.error, float(p.since_seconds))
            for p in s.peers
        ),
    )


async def statuses(
    pods: Mapping[str, PodState],
    names: Names,
    namespace: str,
    settings: Settings,
    tls: ClientTLS | None,
) -> dict[str, NodeStatus]:
    """GetStatus of every running pod, concurrently; pods that do not answer are left out."""
    eps = {p.name: endpoint(p, names, namespace, settings) for p in pods.values()}
    live = {name: ep for name, ep in eps.items() if ep is not None}

    async def one(name: str, ep: Endpoint) -> tuple[str, NodeStatus | None]:
        try:
            return name, await asyncio.to_thread(_status, ep, settings.rpc_timeout, tls)
        except ClientError as e:
            log.debug("node %s (%s) did not answer: %s", name, ep, e)
            return name, None

    results = await asyncio.gather(*(one(n, ep) for n, ep in live.items()))
    return {name: st for name, st in results if st is not None}


def _governance(
    endpoints: Sequence[Endpoint],
    chain_id: str,
    admin_key: str,
    action: Governance,
    settings: Settings,
    tls: ClientTLS | None,
) -> str:
    timeout, rpc_timeout = settings.governance_timeout, settings.rpc_timeout
    signer = Signer.from_json(admin_key, "the admin key")
    payload = _payload(action, settings.proposal_ttl)
    errors = []
    # One signed transaction, built once and offered to each node in turn: a node that took it
    # but did not confirm (its WaitTx failed) may still commit it, so a retry must send the
    # same bytes (a node that has them answers ALREADY_EXISTS) — re-signing with the next nonce
    # opened a second proposal for one change.
    signed: tuple[bytes, types_pb2.SignedTx] | None = None
    for ep in endpoints:
        try:
            with _client(ep, rpc_timeout, tls) as c:
                if signed is None:
                    signed = signer.build_tx(chain_id, c.next_nonce(signer.public_key), payload)
                tx_id, tx = signed
                (result,) = c.submit([tx])
                if result.code not in (TX_OK, TX_KNOWN):
                    raise GovernanceError(f"{action} refused by {ep}: {result.message}")
                got = c.wait_tx(tx_id, timeout)
                if got.receipt.code != TX_OK:
                    raise GovernanceError(f"{action} failed on chain: {got.receipt.message}")
                return tx_id.hex()
        except ClientError as e:
            errors.append(str(e))
    raise GovernanceError(f"{action}: no node accepted it ({'; '.join(errors) or 'no nodes'})")


ChangeMessage = (
    types_pb2.AddValidator
    | types_pb2.RemoveValidator
    | types_pb2.AddOrganization
    | types_pb2.SetParam
    | types_pb2.ReplaceValidator
    | types_pb2.DeployContract
    | types_pb2.UpgradeContract
)


def change_payload(change: Change) -> ChangeMessage:
    if isinstance(change, ReplaceValidator):
        return types_pb2.ReplaceValidator(old=change.old, new=change.new)
    if isinstance(change, SetParam):
        return types_pb2.SetParam(name=change.name, value=str(change.value))
    if isinstance(change, AddValidator):
        return types_pb2.AddValidator(node_id=change.node_id, organization=change.org)
    if isinstance(change, RemoveValidator):
        return types_pb2.RemoveValidator(node_id=change.node_id)
    if isinstance(change, DeployContract):
        return types_pb2.DeployContract(
            name=change.name, code=change.code, init_input=change.init_input
        )
    if isinstance(change, UpgradeContract):
        return types_pb2.UpgradeContract(name=change.name, code=change.code)
    return types_pb2.AddOrganization(
        name=change.org, ca_cert=change.ca_cert, admins=list(change.admins)
    )


def _payload(
    action: Governance, ttl: int
) -> ChangeMessage | types_pb2.Propose | types_pb2.Vote | types_pb2.AddMember:
    if isinstance(action, RegisterMember):
        return types_pb2.AddMember(key=action.key, organization=action.org)
    if isinstance(action, Propose):
        body = gov_action(change_payload(action.change)).SerializeToString()
        return types_pb2.Propose(action=body, ttl=ttl)
    if isinstance(action, Vote):
        return types_pb2.Vote(proposal=action.proposal, approve=True)
    return change_payload(action)


def signer_for(admin_key: str, org: str, expected: bytes) -> Signer:
    """The signer of `org`'s proposal or vote, from the text of `org`'s own admin Secret;
    GovernanceError unless its public key is `expected` (the admin key the operator observed
    for `org`): whatever a Secret holds, the operator signs for an organisation with that
    organisation's key only."""
    signer = Signer.from_json(admin_key, f"the admin key of {org}")
    if signer.public_key != expected:
        raise GovernanceError(f"the key read for {org} is not {org}'s admin key: not signing")
    return signer


_STATES = {v: k.removeprefix("PROPOSAL_STATE_") for k, v in types_pb2.ProposalState.items()}


def proposal_view(p: types_pb2.Proposal) -> ProposalView:
    """A node's Proposal as the planner matches it (model.ProposalView.change)."""
    change = (p.action, p.subject)
    try:
        a = types_pb2.GovAction.FromString(p.action_bytes)
    except DecodeError:
        a = types_pb2.GovAction()
    which = a.WhichOneof("action")
    if which == "add_validator":
        change = ("add_validator", a.add_validator.node_id.hex())
    elif which == "remove_validator":
        change = ("remove_validator", a.remove_validator.node_id.hex())
    elif which == "add_organization":
        change = ("add_organization", a.add_organization.name)
    elif which in ("deploy_contract", "upgrade_contract"):
        c = getattr(a, which)
        change = (which, contract_subject(c.name, hashlib.sha256(c.code).digest()))
    elif which == "set_param":
        change = ("set_param", f"{a.set_param.name}={a.set_param.value}")
    elif which == "replace_validator":
        r = a.replace_validator
        change = ("replace_validator", f"{r.old.hex()}>{r.new.hex()}")
    return ProposalView(
        id=int(p.id),
        state=_STATES.get(p.state, "UNSPECIFIED"),
        change=change,
        summary=p.summary,
        proposer=p.proposer,
        votes=tuple((v.organization, v.approve) for v in p.votes),
        members=tuple(p.members),
        yes=int(p.yes),
        needed=int(p.needed),
        expiry_height=int(p.expiry_height),
        closed_height=int(p.closed_height),
        reason=p.reason,
    )


def _proposals(
    endpoints: Sequence[Endpoint], timeout: float, tls: ClientTLS | None
) -> tuple[ProposalView, ...] | None:
    for ep in endpoints:
        try:
            with _client(ep, timeout, tls) as c:
                got = c.list_proposals(open_only=False, limit=PROPOSALS_LISTED)
            return tuple(proposal_view(p) for p in got.proposals)
        except ClientError as e:
            log.debug("node %s did not list proposals: %s", ep, e)
    return None


async def proposals(
    endpoints: Sequence[Endpoint], settings: Settings, tls: ClientTLS | None
) -> tuple[ProposalView, ...] | None:
    """The chain's recent proposals (newest first) from the first node that answers, the
    freshest first; None if none answers."""
    return await asyncio.to_thread(_proposals, endpoints, settings.rpc_timeout, tls)


def _contracts(
    endpoints: Sequence[Endpoint], timeout: float, tls: ClientTLS | None
) -> dict[str, ContractView] | None:
    for ep in endpoints:
        try:
            with _client(ep, timeout, tls) as c:
                got = c.list_contracts()
            return {
                ci.name: ContractView(ci.name, bytes(ci.code_hash), int(ci.version))
                for ci in got.contracts
            }
        except ClientError as e:
            log.debug("node %s did not list contracts: %s", ep, e)
    return None


async def contracts(
    endpoints: Sequence[Endpoint], settings: Settings, tls: ClientTLS | None
) -> dict[str, ContractView] | None:
    """The chain's deployed contracts by name from the first node that answers (the
    freshest first); None if none answers."""
    return await asyncio.to_thread(_contracts, endpoints, settings.rpc_timeout, tls)


def _chain_params(
    endpoints: Sequence[Endpoint], timeout: float, tls: ClientTLS | None
) -> dict[str, int] | None:
    for ep in endpoints:
        try:
            with _client(ep, timeout, tls) as c:
                got = c.governance()
            return {p.name: int(p.value) for p in got.params}
        except ClientError as e:
            log.debug("node %s did not report the chain's parameters: %s", ep, e)
    return None


async def chain_params(
    endpoints: Sequence[Endpoint], settings: Settings, tls: ClientTLS | None
) -> dict[str, int] | None:
    """The chain's committed parameters (GetGovernance) from the first node that answers;
    None if none answers."""
    return await asyncio.to_thread(_chain_params, endpoints, settings.rpc_timeout, tls)


async def governance(
    endpoints: Sequence[Endpoint],
    chain_id: str,
    admin_key: str,
    action: Governance,
    settings: Settings,
    tls: ClientTLS | None,
) -> str:
    """Submit the governance transaction (a direct change on a legacy chain; a proposal or a
    vote under governance by organisations) to the first node that takes it and wait for its
    commit; returns the tx id (hex). The admin key text is never logged."""
    return await asyncio.to_thread(
        _governance,
        endpoints,
        chain_id,
        admin_key,
        action,
        settings,
        tls,
    )
