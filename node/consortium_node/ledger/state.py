"""The replicated state machine: executes a block's transactions against the world state.

Pure: reads go through a `StateReader` (storage supplies an LMDB snapshot; tests a dict), and
execution returns the block's writes, receipts and the new state root for storage to commit in
ONE transaction. Every node runs exactly this code on exactly the committed tx bytes, so equal
inputs give equal roots. Called by runtime (block apply, block validation, admission checks).

Key space (all of it is covered by the state root):
  n/<sender>             next nonce (u64)
  k/<key>                key/value entries (KvPut/KvDelete)
  a/<asset>\\0<account>   asset balance (u64, never negative)
  i/<asset>              the asset's issuer (first issuer claims it)
  g/admins               governance admin keys (32 bytes each, from genesis)
  g/vset/<u64 height>    validator set effective from that height (see VALIDATOR_CHANGE_DELAY)
  p/<name>               chain parameters (decimal strings)
  g/permissioned         present (b"1") on a permissioned chain (from genesis)
  o/<organisation>       a member organisation: its CA certificate (PEM, from genesis or an
                         admin's AddOrganization; empty on a chain without TLS)
  m/<sender>             a vouched sender key: the organisation vouching for it

Permissioned chains (`g/permissioned` present): a transaction whose sender is neither a
vouched key (`m/<sender>`, from the genesis organisations' `members` or an admin's AddMember)
nor a governance admin fails with UNAUTHORIZED, at admission (preflight) and, identically on
every node, at execution (it consumes its nonce and changes nothing else). This is state, so a
Byzantine proposer cannot smuggle in an unvouched sender's effects."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import DecodeError, Reject, TxRejected
from .hashing import sha256
from .lthash import LtHash
from .tx import (
    GOVERNANCE,
    MAX_AMOUNT,
    MAX_ORG_BYTES,
    AddMember,
    AddOrganization,
    AddValidator,
    AssetIssue,
    AssetTransfer,
    KvDelete,
    KvPut,
    RemoveMember,
    RemoveValidator,
    SetOrganizationCA,
    SetParam,
    Tx,
)

_U64 = struct.Struct(">Q")
VALIDATOR_CHANGE_DELAY = 2  # a change executed in block h decides heights >= h + 2

# Receipt codes, equal to the TxCode enum in types.proto.
OK, INSUFFICIENT_BALANCE, UNAUTHORIZED, INVALID, NOT_FOUND = 0, 1, 2, 3, 4

PARAMS: dict[str, tuple[int, int, int]] = {
    # name: (default, min, max)
    "max_block_txs": (2000, 1, 100_000),
    "max_tx_bytes": (128 * 1024, 1024, 4 * 1024 * 1024),
}


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


def nonce_key(sender: bytes) -> bytes:
    return b"n/" + sender


def kv_key(key: bytes) -> bytes:
    return b"k/" + key


def balance_key(asset: str, account: bytes) -> bytes:
    return b"a/" + asset.encode() + b"\x00" + account


def issuer_key(asset: str) -> bytes:
    return b"i/" + asset.encode()


def vset_key(height: int) -> bytes:
    return b"g/vset/" + _U64.pack(height)


VSET_PREFIX = b"g/vset/"
ADMINS_KEY = b"g/admins"
VSET_LATEST_KEY = b"g/vset-latest"  # u64 effective height of the newest validator set


PARAM_PREFIX = b"p/"
ORG_PREFIX = b"o/"


def param_key(name: str) -> bytes:
    return PARAM_PREFIX + name.encode()


PERMISSIONED_KEY = b"g/permissioned"


def member_key(sender: bytes) -> bytes:
    return b"m/" + sender


def org_key(organization: str) -> bytes:
    return ORG_PREFIX + organization.encode()


def is_admin(reader: StateReader, key: bytes) -> bool:
    admins = reader.get(ADMINS_KEY) or b""
    return any(admins[i : i + 32] == key for i in range(0, len(admins), 32))


def vouched(reader: StateReader, sender: bytes) -> bool:
    """May `sender` transact? Always on an open chain; on a permissioned one iff a member
    organisation vouches for the key or it is a governance admin."""
    if reader.get(PERMISSIONED_KEY) is None:
        return True
    return reader.get(member_key(sender)) is not None or is_admin(reader, sender)


def u64(value: bytes | None) -> int:
    return 0 if value is None else int(_U64.unpack(value)[0])


def pack_u64(n: int) -> bytes:
    return _U64.pack(n)


@dataclass(frozen=True, slots=True)
class Validator:
    node_id: bytes
    organization: str


def encode_validators(vals: Iterable[Validator]) -> bytes:
    out = []
    for v in sorted(vals, key=lambda v: v.node_id):
        org = v.organization.encode()
        out.append(v.node_id + bytes([len(org)]) + org)
    return b"".join(out)


def decode_validators(data: bytes) -> tuple[Validator, ...]:
    vals, p = [], 0
    while p < len(data):
        if p + 33 > len(data):
            raise DecodeError("truncated validator set")
        nid, n = data[p : p + 32], data[p + 32]
        org = data[p + 33 : p + 33 + n]
        if len(org) != n:
            raise DecodeError("truncated validator set")
        vals.append(Validator(nid, org.decode()))
        p += 33 + n
    return tuple(vals)


def validators_hash(vals: Iterable[Validator]) -> bytes:
    return sha256(encode_validators(vals))


def param(reader: StateReader, name: str) -> int:
    raw = reader.get(param_key(name))
    return PARAMS[name][0] if raw is None else int(raw.decode())


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_id: bytes
    height: int
    index: int
    code: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class BlockResult:
    writes: dict[bytes, bytes | None]  # final value per touched key (None = deleted)
    receipts: tuple[Receipt, ...]
    lthash: bytes  # accumulator lanes after the block
    state_root: bytes


class Overlay:
    """A block's pending writes over a committed reader; reads see the writes."""

    __slots__ = ("_base", "writes")

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None


def latest_validators(reader: StateReader) -> tuple[int, tuple[Validator, ...]]:
    eff = u64(reader.get(VSET_LATEST_KEY))
    raw = reader.get(vset_key(eff))
    if raw is None:
        return eff, ()
    return eff, decode_validators(raw)


def preflight(reader: StateReader, tx: Tx) -> None:
    """Admission checks against committed state (nonce excluded: the mempool tracks pending
    nonces). Raises TxRejected for what would certainly fail at execution."""
    code, msg = _check(reader, tx)
    if code == INSUFFICIENT_BALANCE:
        raise TxRejected(Reject.INSUFFICIENT_BALANCE, msg)
    if code == UNAUTHORIZED:
        raise TxRejected(Reject.UNAUTHORIZED, msg)
    if code != OK:
        raise TxRejected(Reject.INVALID, msg)


def _check(reader: StateReader, tx: Tx, height: int | None = None) -> tuple[int, str]:
    if not vouched(reader, tx.sender):
        return (
            UNAUTHORIZED,
            f"sender {tx.sender.hex()[:16]}... is not vouched for by a member organisation "
            "(permissioned chain: an admin adds keys with an AddMember transaction)",
        )
    p = tx.payload
    if isinstance(p, AssetTransfer):
        have = u64(reader.get(balance_key(p.asset, tx.sender)))
        if have < p.amount:
            return (
                INSUFFICIENT_BALANCE,
                f"balance of {p.asset} is {have}, transfer needs {p.amount}",
            )
        if p.to == tx.sender:
            return INVALID, "transfer to self"
        if u64(reader.get(balance_key(p.asset, p.to))) + p.amount > MAX_AMOUNT:
            return INVALID, "recipient balance would overflow"
    elif isinstance(p, AssetIssue):
        issuer = reader.get(issuer_key(p.asset))
        if issuer is not None and issuer != tx.sender:
            return UNAUTHORIZED, f"only the issuer {issuer.hex()[:16]}... may issue {p.asset}"
        if u64(reader.get(balance_key(p.asset, p.to))) + p.amount > MAX_AMOUNT:
            return INVALID, "balance would overflow"
    elif isinstance(p, GOVERNANCE):
        if not is_admin(reader, tx.sender):
            return UNAUTHORIZED, "governance transactions need a genesis admin key"
        if isinstance(p, AddOrganization):
            if reader.get(org_key(p.name)) is not None:
                return INVALID, f"{p.name!r} is already a member organisation"
            return OK, ""
        if isinstance(p, SetOrganizationCA):
            if reader.get(org_key(p.name)) is None:
                return INVALID, f"{p.name!r} is not a member organisation"
            return OK, ""
        if isinstance(p, AddMember):
            if reader.get(org_key(p.organization)) is None:
                return INVALID, f"organization {p.organization!r} is not a member organisation"
            if reader.get(member_key(p.key)) is not None:
                return INVALID, f"{p.key.hex()[:16]}... is already a member key"
            return OK, ""
        if isinstance(p, RemoveMember):
            if reader.get(member_key(p.key)) is None:
                return INVALID, f"{p.key.hex()[:16]}... is not a member key"
            return OK, ""
        return _check_governance(reader, p, height)
    return OK, ""


def _check_governance(
    reader: StateReader, p: AddValidator | RemoveValidator | SetParam, height: int | None
) -> tuple[int, str]:
    if isinstance(p, SetParam):
        if p.name not in PARAMS:
            return INVALID, f"unknown parameter {p.name!r} (known: {', '.join(sorted(PARAMS))})"
        _, lo, hi = PARAMS[p.name]
        if not (p.value.isascii() and p.value.isdigit()) or not lo <= int(p.value) <= hi:
            return INVALID, f"parameter {p.name} must be an integer in {lo}..{hi}"
        return OK, ""
    eff, vals = latest_validators(reader)
    if height is not None and eff > height:
        return INVALID, f"a validator change is pending until height {eff}: one member at a time"
    ids = {v.node_id for v in vals}
    if isinstance(p, AddValidator) and not 0 < len(p.organization.encode()) <= MAX_ORG_BYTES:
        return INVALID, f"validator organization must be 1..{MAX_ORG_BYTES} bytes"
    if isinstance(p, AddValidator) and p.node_id in ids:
        return INVALID, f"{p.node_id.hex()[:16]}... is already a validator"
    if isinstance(p, RemoveValidator):
        if p.node_id not in ids:
            return INVALID, f"{p.node_id.hex()[:16]}... is not a validator"
        if len(ids) == 1:
            return INVALID, "cannot remove the last validator"
    return OK, ""


def _apply(st: Overlay, tx: Tx, height: int) -> tuple[int, str]:
    """Executes one tx whose nonce is already checked; returns (code, message)."""
    code, msg = _check(st, tx, height)
    if code != OK:
        return code, msg
    p = tx.payload
    if isinstance(p, KvPut):
        st.put(kv_key(p.key), p.value)
    elif isinstance(p, KvDelete):
        if st.get(kv_key(p.key)) is None:
            return NOT_FOUND, "key not found"
        st.delete(kv_key(p.key))
    elif isinstance(p, AssetIssue):
        st.put(issuer_key(p.asset), tx.sender)
        k = balance_key(p.asset, p.to)
        st.put(k, pack_u64(u64(st.get(k)) + p.amount))
    elif isinstance(p, AssetTransfer):
        src, dst = balance_key(p.asset, tx.sender), balance_key(p.asset, p.to)
        st.put(src, pack_u64(u64(st.get(src)) - p.amount))
        st.put(dst, pack_u64(u64(st.get(dst)) + p.amount))
    elif isinstance(p, SetParam):
        st.put(param_key(p.name), p.value.encode())
    elif isinstance(p, AddMember):
        st.put(member_key(p.key), p.organization.encode())
    elif isinstance(p, RemoveMember):
        st.delete(member_key(p.key))
    elif isinstance(p, AddOrganization | SetOrganizationCA):
        st.put(org_key(p.name), p.ca_cert)
    else:
        _, vals = latest_validators(st)
        if isinstance(p, AddValidator):
            new = (*vals, Validator(p.node_id, p.organization))
        else:
            new = tuple(v for v in vals if v.node_id != p.node_id)
        eff = height + VALIDATOR_CHANGE_DELAY
        st.put(vset_key(eff), encode_validators(new))
        st.put(VSET_LATEST_KEY, pack_u64(eff))
    return OK, ""


def check_nonces(reader: StateReader, txs: Sequence[Tx]) -> str | None:
    """Block validity: every sender's nonces continue its committed nonce without gaps."""
    nxt: dict[bytes, int] = {}
    for tx in txs:
        want = nxt.get(tx.sender)
        if want is None:
            want = u64(reader.get(nonce_key(tx.sender)))
        if tx.nonce != want:
            return f"tx {tx.id.hex()[:16]}: nonce {tx.nonce}, expected {want}"
        nxt[tx.sender] = want + 1
    return None


def execute_block(reader: StateReader, acc: LtHash, height: int, txs: Sequence[Tx]) -> BlockResult:
    """Runs `txs` (already validated: signatures, chain id, nonce sequence) in order. A tx that
    fails (balance, authorisation) still consumes its nonce and gets a failing receipt."""
    st = Overlay(reader)
    receipts = []
    for i, tx in enumerate(txs):
        nk = nonce_key(tx.sender)
        st.put(nk, pack_u64(u64(st.get(nk)) + 1))
        code, msg = _apply(st, tx, height)
        receipts.append(Receipt(tx.id, height, i, code, msg))
    h = acc.copy()
    for key, new in st.writes.items():
        old = reader.get(key)
        if old == new:
            continue
        if old is not None:
            h.remove(key, old)
        if new is not None:
            h.add(key, new)
    return BlockResult(st.writes, tuple(receipts), h.lanes(), h.digest())
