"""gRPC to node pods: read each node's status (height, role, leader, validator set, sync
state) and submit governance transactions (AddValidator / RemoveValidator) signed with the
consortium's admin key, waiting until the chain commits them.

Uses the synchronous client of consortium_node.client in threads. A node that does not answer
is simply absent from the result: plan treats it as not caught up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from consortium_api.v1 import types_pb2
from consortium_node.client import Client, ClientError, Signer

from .model import CLIENT_PORT, Names, NodeStatus, PodState
from .plan import AddValidator, RemoveValidator
from .settings import Settings

log = logging.getLogger("consortium_operator.nodes")

TX_OK = 0


class GovernanceError(Exception):
    """A governance transaction was refused or not committed in time."""


def endpoint(pod: PodState, names: Names, namespace: str, settings: Settings) -> str | None:
    """Where the operator reaches a pod's client gRPC port (None: not reachable yet)."""
    if settings.node_address == "dns":
        return (
            f"{pod.name}.{names.peers_service}.{namespace}.svc.{settings.cluster_domain}"
            f":{CLIENT_PORT}"
        )
    return f"{pod.ip}:{CLIENT_PORT}" if pod.ip else None


def _status(ep: str, timeout: float) -> NodeStatus:
    with Client(ep, timeout) as c:
        s = c.status(timeout=timeout)
    return NodeStatus(
        height=int(s.height),
        role=s.role,
        leader=bytes(s.leader),
        validators=tuple((bytes(v.node_id), v.organization) for v in s.validators),
        sync_state=s.sync_state,
        chain_id=s.chain_id,
    )


async def statuses(
    pods: Mapping[str, PodState], names: Names, namespace: str, settings: Settings
) -> dict[str, NodeStatus]:
    """GetStatus of every running pod, concurrently; pods that do not answer are left out."""
    eps = {p.name: endpoint(p, names, namespace, settings) for p in pods.values()}
    live = {name: ep for name, ep in eps.items() if ep is not None}

    async def one(name: str, ep: str) -> tuple[str, NodeStatus | None]:
        try:
            return name, await asyncio.to_thread(_status, ep, settings.rpc_timeout)
        except ClientError as e:
            log.debug("node %s (%s) did not answer: %s", name, ep, e)
            return name, None

    results = await asyncio.gather(*(one(n, ep) for n, ep in live.items()))
    return {name: st for name, st in results if st is not None}


def _governance(
    endpoints: Sequence[str],
    chain_id: str,
    admin_key: str,
    action: AddValidator | RemoveValidator,
    timeout: float,
    rpc_timeout: float,
) -> str:
    signer = Signer.from_json(admin_key, "the consortium admin key")
    payload: types_pb2.AddValidator | types_pb2.RemoveValidator
    if isinstance(action, AddValidator):
        payload = types_pb2.AddValidator(node_id=action.node_id, organization=action.org)
    else:
        payload = types_pb2.RemoveValidator(node_id=action.node_id)
    errors = []
    for ep in endpoints:
        try:
            with Client(ep, rpc_timeout) as c:
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
    endpoints: Sequence[str],
    chain_id: str,
    admin_key: str,
    action: AddValidator | RemoveValidator,
    settings: Settings,
) -> str:
    """Submit the validator change to the first node that takes it and wait for its commit;
    returns the tx id (hex). The admin key text is never logged."""
    return await asyncio.to_thread(
        _governance,
        endpoints,
        chain_id,
        admin_key,
        action,
        settings.governance_timeout,
        settings.rpc_timeout,
    )
