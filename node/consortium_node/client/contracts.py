"""Contracts as a client builds them: the deploy/upgrade proposals, the Invoke transaction,
and reading a call's outcome. The CLI (`consortium contract ...`) wraps these; so do tests.

    from consortium_node.client import contracts
    propose = contracts.deploy_proposal("token", wasm, init_input=b"", ttl=100)
    tx_id, tx = signer.build_tx(chain_id, nonce, propose)   # an org admin proposes; others
                                                            # vote with types_pb2.Vote
    tx_id, tx = signer.build_tx(chain_id, nonce, contracts.invoke("token", "transfer", data))
    got = client.wait_tx(tx_id)
    outcome = contracts.outcome(got)          # ok, reason, fuel_used, result, events
    client.query_contract("token", "balance", data).receipt.result
    for ev in client.stream_events("token", b"transfer", follow=True): ...

A deploy or upgrade is a governance action (policy deploy_contract / upgrade_contract,
MAJORITY by default): `deploy_proposal` wraps it in a Propose; `deploy_action` gives the bare
`GovAction` for the offline path (`consortium gov sign`) or for a direct transaction where
the sender's organisation alone meets the policy."""

from __future__ import annotations

from dataclasses import dataclass

from consortium_api.v1 import ledger_pb2, types_pb2

from .errors import ClientError

DEFAULT_FUEL = 10_000_000
DEFAULT_TTL = 1000


def deploy_action(name: str, code: bytes, init_input: bytes = b"") -> types_pb2.GovAction:
    return types_pb2.GovAction(
        deploy_contract=types_pb2.DeployContract(name=name, code=code, init_input=init_input)
    )


def upgrade_action(name: str, code: bytes) -> types_pb2.GovAction:
    return types_pb2.GovAction(upgrade_contract=types_pb2.UpgradeContract(name=name, code=code))


def deploy_proposal(
    name: str, code: bytes, init_input: bytes = b"", ttl: int = DEFAULT_TTL
) -> types_pb2.Propose:
    """A Propose of DeployContract (the proposer's organisation votes yes)."""
    action = deploy_action(name, code, init_input).SerializeToString()
    return types_pb2.Propose(action=action, ttl=ttl)


def upgrade_proposal(name: str, code: bytes, ttl: int = DEFAULT_TTL) -> types_pb2.Propose:
    return types_pb2.Propose(action=upgrade_action(name, code).SerializeToString(), ttl=ttl)


def invoke(
    contract: str, method: str, input: bytes = b"", fuel_limit: int = DEFAULT_FUEL
) -> types_pb2.Invoke:
    return types_pb2.Invoke(contract=contract, method=method, input=input, fuel_limit=fuel_limit)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A committed contract call as its receipt tells it."""

    ok: bool
    reason: str
    fuel_used: int
    result: bytes
    events: tuple[tuple[bytes, bytes], ...]  # (topic, data)
    height: int


def outcome(got: ledger_pb2.GetTxResponse) -> Outcome:
    """The contract outcome of a committed tx (from GetTx/WaitTx). ClientError if the tx was
    refused before running (unknown contract, fuel limit above the cap, ...) or ran none."""
    r = got.receipt
    if not r.HasField("contract"):
        raise ClientError(r.message or "the transaction ran no contract code")
    c = r.contract
    return Outcome(
        c.ok,
        c.reason,
        c.fuel_used,
        c.result,
        tuple((e.topic, e.data) for e in c.events),
        r.height,
    )
