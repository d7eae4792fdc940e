"""The Ledger service's contract queries: QueryContract, ListContracts, GetContract and the
event stream's filter, over one committed state snapshot. Called by transport/server.py; the
rules are ledger/contracts.py, the engine the node's injected ContractVM.

A query runs the contract like an Invoke but against committed state, answered by this node
alone: its writes go to a throwaway overlay (never to the store), the fuel is capped by the
chain's contract_query_fuel, `caller` is the request's key (all zeros without one) and
`height` the committed height."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from consortium_api.v1 import ledger_pb2, types_pb2

from ..ledger import contracts as cx
from ..ledger.block import Block
from ..ledger.errors import TxRejected
from ..ledger.tx import CONTRACT_RE, METHOD_RE, RESERVED_METHODS

__all__ = ["CONTRACT_RE", "QueryError", "block_events", "get_contract", "list_contracts", "query"]
from . import codec


class QueryError(Exception):
    """A refused query: `kind` is "invalid", "not_found" or "unavailable" (the servicer maps
    it to INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION), `message` one plain line."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class View(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def query(
    snap: View, vm: cx.ContractVM, height: int, req: ledger_pb2.QueryContractRequest
) -> ledger_pb2.QueryContractResponse:
    if not CONTRACT_RE.fullmatch(req.contract):
        raise QueryError("invalid", f"contract name {req.contract!r} is not valid")
    if not METHOD_RE.fullmatch(req.method) or req.method in RESERVED_METHODS:
        raise QueryError("invalid", f"method name {req.method!r} is not a callable method")
    if req.caller and len(req.caller) != 32:
        raise QueryError("invalid", "caller must be a 32-byte Ed25519 public key")
    if cx.chain_engine(snap) is None:
        raise QueryError("unavailable", "this chain has no contracts (no contracts_engine)")
    info = cx.contract_info(snap, req.contract)
    if info is None:
        raise QueryError("not_found", f"unknown contract {req.contract!r}")
    if req.method not in info.exports:
        raise QueryError("not_found", f"contract {req.contract} has no method {req.method!r}")
    cap = cx.param_of(snap, "contract_query_fuel")
    fuel = min(req.fuel_limit or cap, cap)
    caller = req.caller or b"\x00" * 32
    try:
        out = cx.query(snap, vm, req.contract, req.method, req.input, caller, height, fuel)
    except cx.ContractsUnavailable as e:
        raise QueryError("unavailable", str(e)) from e
    if out is None:  # pragma: no cover - checked above on the same snapshot
        raise QueryError("not_found", f"unknown contract {req.contract!r}")
    receipt = cx.ContractReceipt(req.contract, req.method, out)
    return ledger_pb2.QueryContractResponse(
        receipt=codec.contract_receipt_to_pb(receipt), height=height
    )


def list_contracts(snap: View, height: int) -> ledger_pb2.ListContractsResponse:
    return ledger_pb2.ListContractsResponse(
        contracts=[codec.contract_info_to_pb(c) for c in cx.list_contracts(snap)],
        engine=cx.chain_engine(snap) or "",
        height=height,
    )


def get_contract(snap: View, name: str) -> types_pb2.ContractInfo:
    if not CONTRACT_RE.fullmatch(name):
        raise QueryError("invalid", f"contract name {name!r} is not valid")
    info = cx.contract_info(snap, name)
    if info is None:
        raise QueryError("not_found", f"unknown contract {name!r}")
    return codec.contract_info_to_pb(info)


def block_events(
    snap: View, block: Block, contract: str, topic: bytes
) -> Iterator[ledger_pb2.ContractEventRecord]:
    """The events of `block`'s contract calls, in order, matching the filter (empty: any)."""
    for index, raw in enumerate(block.txs):
        try:
            tx_id = codec.tx_id(raw)
        except TxRejected:  # pragma: no cover - committed txs decoded when applied
            continue
        r = cx.receipt_of(snap, tx_id)
        if r is None or (contract and r.contract != contract):
            continue
        for n, e in enumerate(r.outcome.events):
            if topic and e.topic != topic:
                continue
            yield ledger_pb2.ContractEventRecord(
                height=block.height,
                tx_id=tx_id,
                tx_index=index,
                event_index=n,
                contract=r.contract,
                method=r.method,
                topic=e.topic,
                data=e.data,
            )


def receipt_contract(snap: View, tx_id: bytes) -> types_pb2.ContractReceipt | None:
    """The contract part of a tx's receipt, if the tx ran contract code."""
    r = cx.receipt_of(snap, tx_id)
    return None if r is None else codec.contract_receipt_to_pb(r)
