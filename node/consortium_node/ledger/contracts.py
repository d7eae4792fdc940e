"""WebAssembly contracts: the chain's rules for them (pure; docs/CONTRACTS.md is the ABI).

The ledger decides *what* a contract call may do and what it leaves behind; the WebAssembly
engine that runs the code is an adapter (`consortium_node.contracts.engine.WasmEngine`)
injected as a `ContractVM` — pure code never imports wasmtime. Called by ledger/state.py
(Invoke, DeployContract/UpgradeContract as governance actions) and by the node's query path
(transport: QueryContract, contract list/show, the event stream).

Key space (under `x/`, all of it covered by the state root):
  x/engine                the engine the chain's contracts run on (genesis
                          `contracts_engine`, e.g. "wasmtime-50.0.1"); absent: no contracts
  x/c/<name>              contract record: canonical JSON {code_hash, version, deployed,
                          upgraded, exports}
  x/code/<sha256>         contract code by hash
  x/s/<name>\\0<key>       a contract's own state (names never contain NUL)
  x/r/<tx id>             the contract receipt of a tx that ran contract code (Invoke, or the
                          governance tx whose vote executed a deploy/upgrade): status, reason,
                          fuel used, result, events — in state, so every node's receipts are
                          committed to by the state root and equal roots mean equal receipts

Execution of one call: the VM runs the export with a fuel limit; the host functions read and
write through a `HostEnv` whose writes go to a child overlay of the block's state. A call that
fails (trap, out of fuel, abort, memory limit, bad host pointer) keeps none of its writes and
none of its events; its receipt says why and how much fuel it used. Fuel is wasmtime's
instruction fuel plus the host-call schedule below (parameters on chain), so fuel used is the
same on every node running the chain's engine. A node whose engine differs from `x/engine`
raises `ContractsUnavailable` instead of executing (it would compute other fuel figures):
runtime stops applying blocks with a clear error and keeps serving reads.

Python API (what the engine, the server and tests use):

    vm.check_code(code, limits) -> str | None        # deploy-time validation: problem or None
    vm.call(code_hash, code, export, input, env, limits) -> CallOutcome
    run_call(st, vm, name, export, input, caller, height, fuel_limit) -> (CallOutcome, writes)
    query(reader, vm, name, method, input, caller, height, fuel_limit) -> CallOutcome
    contract_info(reader, name) -> ContractInfo | None; list_contracts(reader)
    receipt_of(reader, tx_id) -> ContractReceipt | None
"""

from __future__ import annotations

import functools
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from .errors import DecodeError
from .hashing import sha256
from .tx import MAX_KEY_BYTES, MAX_VALUE_BYTES

# The engine this release runs; genesis built by this release records it (provision). The
# adapter checks the installed wasmtime is exactly this version (tests/unit/contracts).
CONTRACTS_ENGINE = "wasmtime-50.0.1"
ENGINE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")

ENGINE_KEY = b"x/engine"
CONTRACT_PREFIX = b"x/c/"
CODE_PREFIX = b"x/code/"
STATE_PREFIX = b"x/s/"
RECEIPT_PREFIX = b"x/r/"

MAX_TOPIC_BYTES = 64

# Chain parameters of contracts: name -> (default, min, max); ledger/state.py merges these
# into PARAMS so they are set in genesis `params` and changed by governance SetParam.
CONTRACT_PARAMS: dict[str, tuple[int, int, int]] = {
    "contract_max_code_bytes": (120 * 1024, 1024, 4 * 1024 * 1024),
    "contract_max_fuel": (1_000_000_000, 1000, 10**12),
    # the sum of the fuel limits of a block's Invokes: a proposer's block builder stops
    # before an Invoke that would go over it (runtime/mempool.py take; the first Invoke of
    # a block always fits). A proposer's rule, not a validity rule: it bounds how long one
    # block's contract calls can hold a node. Measured (2-core dev machine): 10^9 fuel is
    # 0.43 s of plain wasm, ~9 s if all spent on host calls (1,000 fuel, ~9 µs each).
    "contract_block_fuel": (1_000_000_000, 1000, 10**15),
    "contract_query_fuel": (100_000_000, 1000, 10**12),
    "contract_memory_pages": (16, 1, 1024),  # 64 KiB pages: 1 MiB by default
    "contract_host_call_fuel": (1000, 0, 10**9),  # charged per host call
    "contract_host_byte_fuel": (1, 0, 10**6),  # per byte copied in or out by a host call
    "contract_max_result_bytes": (MAX_VALUE_BYTES, 0, 4 * 1024 * 1024),
    "contract_max_events": (64, 0, 10_000),
    "contract_max_event_bytes": (16 * 1024, 0, 4 * 1024 * 1024),  # topic + data, each
}


class ContractsUnavailable(Exception):
    """This node cannot execute the chain's contracts (no engine, or another engine version
    than the chain's): executing would risk a different result than its peers'. Raised out
    of execute_block; runtime halts block application with the message (reads still work)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one call may consume; from chain parameters (`limits_of`) so equal on all nodes."""

    fuel: int
    memory_pages: int
    host_call_fuel: int
    host_byte_fuel: int
    max_result_bytes: int
    max_events: int
    max_event_bytes: int
    max_code_bytes: int
    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = MAX_VALUE_BYTES
    max_topic_bytes: int = MAX_TOPIC_BYTES


@dataclass(frozen=True, slots=True)
class Event:
    topic: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a call did. On failure `reason` says why and `events`/`result` are empty."""

    ok: bool
    reason: str
    fuel_used: int
    result: bytes = b""
    events: tuple[Event, ...] = ()


class HostEnv(Protocol):
    """The world a running call sees (keys are the contract's own, unprefixed)."""

    @property
    def caller(self) -> bytes: ...

    @property
    def height(self) -> int: ...

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...


class ContractVM(Protocol):
    """The WebAssembly engine, injected into execute_block (contracts/engine.py)."""

    @property
    def engine(self) -> str: ...

    def check_code(self, code: bytes, limits: Limits) -> str | None:
        """None if `code` is a deployable contract, else one plain sentence why not."""
        ...

    def exports(self, code_hash: bytes, code: bytes) -> tuple[str, ...]:
        """The callable methods of checked code (sorted; init/upgrade excluded)."""
        ...

    def has_export(self, code_hash: bytes, code: bytes, name: str) -> bool:
        """Does checked code export function `name` (e.g. the optional init/upgrade)?"""
        ...

    def call(
        self,
        code_hash: bytes,
        code: bytes,
        export: str,
        input: bytes,
        env: HostEnv,
        limits: Limits,
    ) -> CallOutcome: ...


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Writer(Reader, Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...


def contract_key(name: str) -> bytes:
    return CONTRACT_PREFIX + name.encode()


def code_key(code_hash: bytes) -> bytes:
    return CODE_PREFIX + code_hash


def state_key(name: str, key: bytes) -> bytes:
    return STATE_PREFIX + name.encode() + b"\x00" + key


def receipt_key(tx_id: bytes) -> bytes:
    return RECEIPT_PREFIX + tx_id


def chain_engine(reader: Reader) -> str | None:
    raw = reader.get(ENGINE_KEY)
    return None if raw is None else raw.decode()


def param_of(reader: Reader, name: str) -> int:
    raw = reader.get(b"p/" + name.encode())
    return CONTRACT_PARAMS[name][0] if raw is None else int(raw.decode())


# the parameters a call's Limits come from, in Limits' field order (after fuel)
_LIMIT_PARAMS = (
    "contract_memory_pages",
    "contract_host_call_fuel",
    "contract_host_byte_fuel",
    "contract_max_result_bytes",
    "contract_max_events",
    "contract_max_event_bytes",
    "contract_max_code_bytes",
)
_LIMIT_KEYS = tuple(b"p/" + n.encode() for n in _LIMIT_PARAMS)


def limits_of(reader: Reader, fuel: int) -> Limits:
    return _limits(fuel, tuple(reader.get(k) for k in _LIMIT_KEYS))


@functools.lru_cache(maxsize=256)
def _limits(fuel: int, raws: tuple[bytes | None, ...]) -> Limits:
    """Limits from the parameters' stored bytes (None: the default), memoised: a pure
    function of its arguments returning a frozen value (every Invoke builds one; the
    parse and the 11-field frozen dataclass were ~7 % of executing a block of them)."""
    values = (
        CONTRACT_PARAMS[name][0] if raw is None else int(raw.decode())
        for name, raw in zip(_LIMIT_PARAMS, raws, strict=True)
    )
    return Limits(fuel, *values)


def require_engine(reader: Reader, vm: ContractVM | None) -> ContractVM:
    """The VM, if it may run this chain's contracts; else ContractsUnavailable (a node-local
    condition: the same block on a node with the chain's engine executes normally)."""
    chain = chain_engine(reader)
    if vm is None:
        raise ContractsUnavailable("this node was started without a contract engine")
    if chain is not None and chain != vm.engine:
        raise ContractsUnavailable(
            f"this chain runs contracts on {chain}, this node has {vm.engine}: "
            "install the chain's engine version (fuel costs differ between versions)"
        )
    return vm


@dataclass(frozen=True, slots=True)
class ContractInfo:
    name: str
    code_hash: bytes
    version: int  # 1 at deploy, +1 per upgrade
    deployed: int  # height
    upgraded: int  # height of the last upgrade (0: never)
    exports: tuple[str, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "code_hash": self.code_hash.hex(),
                "version": self.version,
                "deployed": self.deployed,
                "upgraded": self.upgraded,
                "exports": list(self.exports),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, name: str, raw: bytes) -> ContractInfo:
        d = json.loads(raw)
        return cls(
            name,
            bytes.fromhex(d["code_hash"]),
            int(d["version"]),
            int(d["deployed"]),
            int(d["upgraded"]),
            tuple(str(x) for x in d["exports"]),
        )


def contract_info(reader: Reader, name: str) -> ContractInfo | None:
    raw = reader.get(contract_key(name))
    return None if raw is None else _decode_info(name, raw)


@functools.lru_cache(maxsize=1024)
def _decode_info(name: str, raw: bytes) -> ContractInfo:
    """ContractInfo.decode memoised by the exact record bytes: a pure function of
    (name, raw) returning a frozen value, so a hit is the same answer. Every Invoke reads its
    contract's record twice (admission, execution); the JSON decode was ~13 % of a
    validator's main thread at invocation saturation (py-spy, bench token)."""
    return ContractInfo.decode(name, raw)


def contract_code(reader: Reader, info: ContractInfo) -> bytes:
    code = reader.get(code_key(info.code_hash))
    if code is None:
        raise DecodeError(f"contract {info.name} has no code {info.code_hash.hex()[:16]}")
    return code


class PrefixReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def list_contracts(reader: PrefixReader) -> list[ContractInfo]:
    """Every deployed contract, by name."""
    return [
        ContractInfo.decode(k[len(CONTRACT_PREFIX) :].decode(), v)
        for k, v in reader.prefix(CONTRACT_PREFIX)
    ]


# -- receipts ------------------------------------------------------------------------------
_RHEAD = struct.Struct(">BQ")  # ok, fuel used
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class ContractReceipt:
    """The contract part of a tx's receipt (kept in state at x/r/<tx id>)."""

    contract: str
    method: str
    outcome: CallOutcome

    def encode(self) -> bytes:
        o = self.outcome
        parts = [_RHEAD.pack(1 if o.ok else 0, o.fuel_used)]
        for b in (self.contract.encode(), self.method.encode(), o.reason.encode(), o.result):
            parts += [_LEN.pack(len(b)), b]
        parts.append(_LEN.pack(len(o.events)))
        for e in o.events:
            parts += [_LEN.pack(len(e.topic)), e.topic, _LEN.pack(len(e.data)), e.data]
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> ContractReceipt:
        try:
            ok, fuel = _RHEAD.unpack_from(raw, 0)
            pos = _RHEAD.size

            def take() -> bytes:
                nonlocal pos
                (n,) = _LEN.unpack_from(raw, pos)
                pos += _LEN.size
                if pos + n > len(raw):
                    raise DecodeError("truncated contract receipt")
                b = raw[pos : pos + n]
                pos += n
                return b

            contract, method, reason, result = (take() for _ in range(4))
            (n_events,) = _LEN.unpack_from(raw, pos)
            pos += _LEN.size
            events = tuple(Event(take(), take()) for _ in range(n_events))
        except struct.error as e:
            raise DecodeError(f"contract receipt does not decode: {e}") from e
        out = CallOutcome(bool(ok), reason.decode(), fuel, result, events)
        return cls(contract.decode(), method.decode(), out)


def receipt_of(reader: Reader, tx_id: bytes) -> ContractReceipt | None:
    raw = reader.get(receipt_key(tx_id))
    return None if raw is None else ContractReceipt.decode(raw)


# -- running a call ------------------------------------------------------------------------
class _Child:
    """A call's writes over the block's state: merged only if the call succeeds."""

    __slots__ = ("_base", "writes")

    def __init__(self, base: Reader) -> None:
        self._base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._base.get(key)


class _Env:
    """HostEnv of one call of contract `name`: its keys live under x/s/<name>\\0."""

    __slots__ = ("_caller", "_child", "_height", "_name")

    def __init__(self, child: _Child, name: str, caller: bytes, height: int) -> None:
        self._child = child
        self._name = name
        self._caller = caller
        self._height = height

    @property
    def caller(self) -> bytes:
        return self._caller

    @property
    def height(self) -> int:
        return self._height

    def get(self, key: bytes) -> bytes | None:
        return self._child.get(state_key(self._name, key))

    def put(self, key: bytes, value: bytes) -> None:
        self._child.writes[state_key(self._name, key)] = value

    def delete(self, key: bytes) -> None:
        self._child.writes[state_key(self._name, key)] = None


def run_call(
    reader: Reader,
    vm: ContractVM,
    info: ContractInfo,
    code: bytes,
    export: str,
    input: bytes,
    caller: bytes,
    height: int,
    fuel_limit: int,
) -> tuple[CallOutcome, dict[bytes, bytes | None]]:
    """Runs one export; returns its outcome and (if it succeeded) the writes to merge."""
    child = _Child(reader)
    env = _Env(child, info.name, caller, height)
    out = vm.call(info.code_hash, code, export, input, env, limits_of(reader, fuel_limit))
    if not out.ok:  # a failed call keeps nothing: no writes, no events, no result
        return CallOutcome(False, out.reason, out.fuel_used), {}
    return out, child.writes


def merge(st: Writer, writes: dict[bytes, bytes | None]) -> None:
    for k, v in writes.items():
        if v is None:
            st.delete(k)
        else:
            st.put(k, v)


def query(
    reader: Reader,
    vm: ContractVM,
    name: str,
    method: str,
    input: bytes,
    caller: bytes,
    height: int,
    fuel_limit: int,
) -> CallOutcome | None:
    """A read-only call against committed state: its writes are discarded (never reach the
    store). None if the contract does not exist. Raises ContractsUnavailable like Invoke."""
    info = contract_info(reader, name)
    if info is None:
        return None
    vm = require_engine(reader, vm)
    cap = min(fuel_limit, param_of(reader, "contract_query_fuel"))
    out, _ = run_call(
        reader, vm, info, contract_code(reader, info), method, input, caller, height, cap
    )
    return out


def new_info(
    vm: ContractVM, name: str, code: bytes, height: int, old: ContractInfo | None
) -> ContractInfo:
    h = sha256(code)
    return ContractInfo(
        name=name,
        code_hash=h,
        version=1 if old is None else old.version + 1,
        deployed=height if old is None else old.deployed,
        upgraded=0 if old is None else height,
        exports=vm.exports(h, code),
    )
