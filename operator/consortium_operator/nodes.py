"""gRPC to node pods: read each node's status (height, role, leader, validator set, sync
state, organisations) and submit governance transactions (AddValidator / RemoveValidator /
AddOrganization) signed with the consortium's admin key, waiting until the chain commits them.

Uses the synchronous client of consortium_node.client in threads. A node that does not answer
is simply absent from the result: plan treats it as not caught up.

TLS: with spec.security.tls the operator dials with its own client certificate (the
`<consortium>-operator-client` Secret, `tls`) and checks each node's certificate against the
name `<pod>.<consortium>-peers.<ns>.svc` it was issued for, whatever address it dials (pod IP
by default). `tls` None means the consortium runs plaintext."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from consortium_api.v1 import types_pb2
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client

from .model import CLIENT_PORT, Names, NodeStatus, PodState
from .plan import AddOrganization, AddValidator, RemoveValidator
from .settings import Settings

__all__ = ["ClientError", "ClientTLS", "Endpoint", "GovernanceError", "governance", "statuses"]

log = logging.getLogger("consortium_operator.nodes")

TX_OK = 0
Governance = AddValidator | RemoveValidator | AddOrganization


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
    signer = Signer.from_json(admin_key, "the consortium admin key")
    payload: types_pb2.AddValidator | types_pb2.RemoveValidator | types_pb2.AddOrganization
    if isinstance(action, AddValidator):
        payload = types_pb2.AddValidator(node_id=action.node_id, organization=action.org)
    elif isinstance(action, RemoveValidator):
        payload = types_pb2.RemoveValidator(node_id=action.node_id)
    else:
        payload = types_pb2.AddOrganization(name=action.org, ca_cert=action.ca_cert)
    errors = []
    for ep in endpoints:
        try:
            with _client(ep, rpc_timeout, tls) as c:
                nonce = c.next_nonce(signer.public_key)
                tx_id, tx = signer.build_tx(chain_id, nonce, payload)
                (result,) = c.submit([tx])
                if result.code != TX_OK:
                    raise GovernanceError(f"{action} refused by {ep}: {result.message}")
                got = c.wait_tx(tx_id, timeout)
                if got.receipt.code != TX_OK:
                    raise GovernanceError(f"{action} failed on chain: {got.receipt.message}")
                return tx_id.hex()
        except ClientError as e:
            errors.append(str(e))
    raise GovernanceError(f"{action}: no node accepted it ({'; '.join(errors) or 'no nodes'})")


async def governance(
    endpoints: Sequence[Endpoint],
    chain_id: str,
    admin_key: str,
    action: Governance,
    settings: Settings,
    tls: ClientTLS | None,
) -> str:
    """Submit the governance change (validator set, organisation admission) to the first node
    that takes it and wait for its commit; returns the tx id (hex). The admin key text is
    never logged."""
    return await asyncio.to_thread(
        _governance,
        endpoints,
        chain_id,
        admin_key,
        action,
        settings,
        tls,
    )
