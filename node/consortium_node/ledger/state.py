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
  g/gov-orgs             present (b"1") under governance by organisations (see below)
  g/orgs, g/orgver       member organisations (JSON list) and the member-set version
  g/oadm/<org>           an organisation's admin keys; g/oadmk/<key> -> its organisation
  g/policy/<action>      an action's policy rule (absent: the default); g/polver/<action>
  g/cfgseq               configuration sequence: +1 per executed configuration change
  g/prop/<u64 id>        a proposal record; g/prop-next, g/prop-open (ids of PENDING ones)
  g/ptx/<tx id>          the proposal a Propose / SubmitEndorsed transaction created

Governance. Two modes, fixed by genesis. Under governance by organisations (genesis
`organizations[].admins`) every configuration change passes its action's policy counted by
organisation (ledger/governance.py): sent directly it must be met by the sender's
organisation alone (e.g. SELF actions), otherwise through Propose/Vote or SubmitEndorsed.
A legacy single-admin chain (genesis `admins`, no organisation admins) keeps exactly its old
rule and state writes — any genesis admin alone — and refuses the new transactions with
LEGACY_REFUSAL, until one genesis admin sends MigrateGovernance, which moves it (once,
irreversibly) to governance by organisations.

Permissioned chains (`g/permissioned` present): a transaction whose sender is neither a
vouched key (`m/<sender>`, from the genesis organisations' `members` or an admin's AddMember)
nor a governance admin fails with UNAUTHORIZED, at admission (preflight) and, identically on
every node, at execution (it consumes its nonce and changes nothing else). This is state, so a
Byzantine proposer cannot smuggle in an unvouched sender's effects."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from . import contracts as cx
from . import governance as gov
from .certs import ca_bundle_problem
from .errors import DecodeError, InvariantError, Reject, TxRejected
from .hashing import sha256
from .lthash import LtHash
from .tx import (
    GOV_TXS,
    GOVERNANCE,
    MAX_AMOUNT,
    MAX_ORG_BYTES,
    AddMember,
    AddOrganization,
    AddValidator,
    AssetIssue,
    AssetTransfer,
    DeployContract,
    GovAction,
    Invoke,
    KvDelete,
    KvPut,
    MigrateGovernance,
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
    check_action,
    check_payload,
)

_U64 = struct.Struct(">Q")
VALIDATOR_CHANGE_DELAY = 2  # a change executed in block h decides heights >= h + 2

# Receipt codes, equal to the TxCode enum in types.proto.
OK, INSUFFICIENT_BALANCE, UNAUTHORIZED, INVALID, NOT_FOUND = 0, 1, 2, 3, 4
CONTRACT_FAILED = 5  # the contract call ran and failed (trap, fuel, abort): ledger/contracts.py

PARAMS: dict[str, tuple[int, int, int]] = {
    # name: (default, min, max)
    "max_block_txs": (2000, 1, 100_000),
    "max_tx_bytes": (128 * 1024, 1024, 4 * 1024 * 1024),
    **cx.CONTRACT_PARAMS,
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
    """A legacy genesis admin (single-admin governance, `g/admins`)."""
    admins = reader.get(ADMINS_KEY) or b""
    return any(admins[i : i + 32] == key for i in range(0, len(admins), 32))


def vouched(reader: StateReader, sender: bytes) -> bool:
    """May `sender` transact? Always on an open chain; on a permissioned one iff a member
    organisation vouches for the key or it is a governance admin (legacy or organisation)."""
    if reader.get(PERMISSIONED_KEY) is None:
        return True
    return (
        reader.get(member_key(sender)) is not None
        or is_admin(reader, sender)
        or reader.get(gov.admin_org_key(sender)) is not None
    )


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


def preflight(reader: StateReader, tx: Tx, vm: cx.ContractVM | None = None) -> None:
    """Admission checks against committed state (nonce excluded: the mempool tracks pending
    nonces). Raises TxRejected for what would certainly fail at execution. With the node's
    contract engine `vm`, contract code is validated and an Invoke's method checked too."""
    code, msg = _check(reader, tx)
    if code == OK:
        code, msg = _preflight_contract(reader, tx, vm)
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
    elif isinstance(p, Invoke):
        return _check_invoke(reader, p)
    elif isinstance(p, GOV_TXS):
        return _check_gov_tx(reader, tx, height)
    elif isinstance(p, GOVERNANCE):
        if governed_by_organizations(reader):
            return _check_direct(reader, tx.sender, p, height)
        if not is_admin(reader, tx.sender):
            return UNAUTHORIZED, "governance transactions need a genesis admin key"
        if isinstance(p, SetAdmins | SetPolicy | ReplaceValidator) or (
            isinstance(p, AddOrganization) and p.admins
        ):
            return INVALID, LEGACY_REFUSAL
        return check_action_state(reader, p, height)
    return OK, ""


def _preflight_contract(reader: StateReader, tx: Tx, vm: cx.ContractVM | None) -> tuple[int, str]:
    """Admission only: what needs the engine (the same is decided again at execution)."""
    p = tx.payload
    action = p.action if isinstance(p, Propose | SubmitEndorsed) else p
    if not isinstance(action, DeployContract | UpgradeContract | Invoke):
        return OK, ""
    if vm is None or (cx.chain_engine(reader) or vm.engine) != vm.engine:
        return INVALID, "this node cannot run the chain's contracts (see its log)"
    if isinstance(action, Invoke):
        info = cx.contract_info(reader, action.contract)
        if info is not None and action.method not in info.exports:
            return NOT_FOUND, f"contract {action.contract} has no method {action.method!r}"
        return OK, ""
    why = vm.check_code(action.code, cx.limits_of(reader, 0))
    return (INVALID, why) if why else (OK, "")


def _check_invoke(reader: StateReader, p: Invoke) -> tuple[int, str]:
    if cx.chain_engine(reader) is None:
        return INVALID, NO_CONTRACTS
    info = cx.contract_info(reader, p.contract)
    if info is None:
        return NOT_FOUND, f"unknown contract {p.contract!r}"
    cap = cx.param_of(reader, "contract_max_fuel")
    if p.fuel_limit > cap:
        return INVALID, f"fuel limit {p.fuel_limit} exceeds the chain's contract_max_fuel {cap}"
    return OK, ""


NO_CONTRACTS = (
    "this chain has no contracts: its genesis records no contracts_engine "
    "(made before contracts existed)"
)


def _check_contract_action(
    reader: StateReader, p: DeployContract | UpgradeContract
) -> tuple[int, str]:
    """What a deploy/upgrade needs of the state (the code itself is checked by the engine
    when it executes, identically on every node, and at admission)."""
    if cx.chain_engine(reader) is None:
        return INVALID, NO_CONTRACTS
    cap = cx.param_of(reader, "contract_max_code_bytes")
    if len(p.code) > cap:
        return INVALID, f"contract code is {len(p.code)} bytes, limit {cap}"
    exists = reader.get(cx.contract_key(p.name)) is not None
    if isinstance(p, DeployContract) and exists:
        return INVALID, f"contract {p.name!r} already exists (upgrade it instead)"
    if isinstance(p, UpgradeContract) and not exists:
        return NOT_FOUND, f"unknown contract {p.name!r}"
    return OK, ""


LEGACY_REFUSAL = (
    "this chain has single-admin governance (genesis `admins`): organisation admins, "
    "policies, proposals and ReplaceValidator need governance by organisations; migrate "
    "with `consortium gov migrate` (a MigrateGovernance transaction, see README)"
)


def check_action_state(reader: StateReader, p: GovAction, height: int | None) -> tuple[int, str]:
    """Is configuration change `p` valid against this state? (Who may make it is decided
    elsewhere: the legacy admin rule or the action's policy.)"""
    orgs_mode = governed_by_organizations(reader)
    # the admission check again, at execution: a block from a peer that skipped it must
    # not put an unusable CA into the state every node loads its TLS roots from
    if (
        isinstance(p, AddOrganization | SetOrganizationCA)
        and p.ca_cert
        and (why := ca_bundle_problem(p.ca_cert)) is not None
    ):
        return INVALID, why
    if isinstance(p, AddOrganization | SetOrganizationCA):
        return _check_org_state(reader, p, orgs_mode)
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
    if isinstance(p, SetAdmins):
        if p.organization not in member_organizations(reader):
            return INVALID, f"{p.organization!r} is not a member organisation"
        return _admins_free(reader, p.admins, p.organization)
    if isinstance(p, SetPolicy):
        why = gov.check_policy(p.action, p.rule)
        return (INVALID, why) if why else (OK, "")
    if isinstance(p, DeployContract | UpgradeContract):
        return _check_contract_action(reader, p)
    return _check_governance(reader, p, height)


def _check_org_state(
    reader: StateReader, p: AddOrganization | SetOrganizationCA, orgs_mode: bool
) -> tuple[int, str]:
    if isinstance(p, SetOrganizationCA):
        if reader.get(org_key(p.name)) is None:
            return INVALID, f"{p.name!r} is not a member organisation"
        return OK, ""
    if reader.get(org_key(p.name)) is not None:
        return INVALID, f"{p.name!r} is already a member organisation"
    if orgs_mode:
        if not p.admins:
            return INVALID, f"organisation {p.name!r} needs at least one admin key"
        return _admins_free(reader, p.admins, p.name)
    return OK, ""


def _admins_free(reader: StateReader, keys: tuple[bytes, ...], org: str) -> tuple[int, str]:
    for k in keys:
        other = reader.get(gov.admin_org_key(k))
        if other is not None and other.decode() != org:
            return INVALID, f"admin key {k.hex()[:16]}... already acts for {other.decode()}"
    return OK, ""


def _check_governance(
    reader: StateReader,
    p: AddValidator | RemoveValidator | ReplaceValidator | SetParam,
    height: int | None,
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
    if isinstance(p, ReplaceValidator):
        if p.old not in ids:
            return INVALID, f"{p.old.hex()[:16]}... is not a validator"
        if p.new in ids:
            return INVALID, f"{p.new.hex()[:16]}... is already a validator"
        return OK, ""
    if isinstance(p, AddValidator) and not 0 < len(p.organization.encode()) <= MAX_ORG_BYTES:
        return INVALID, f"validator organization must be 1..{MAX_ORG_BYTES} bytes"
    if isinstance(p, AddValidator) and p.node_id in ids:
        return INVALID, f"{p.node_id.hex()[:16]}... is already a validator"
    if (
        isinstance(p, AddValidator)
        and governed_by_organizations(reader)
        and p.organization not in member_organizations(reader)
    ):
        return INVALID, f"validator organisation {p.organization!r} is not a member organisation"
    if isinstance(p, RemoveValidator):
        if p.node_id not in ids:
            return INVALID, f"{p.node_id.hex()[:16]}... is not a validator"
        if len(ids) == 1:
            return INVALID, "cannot remove the last validator"
    return OK, ""


# -- governance by organisations ---------------------------------------------------------
def governed_by_organizations(reader: StateReader) -> bool:
    return reader.get(gov.GOV_ORGS_KEY) is not None


def admin_organization(reader: StateReader, key: bytes) -> str | None:
    """The organisation admin key `key` acts for (governance by organisations), or None."""
    raw = reader.get(gov.admin_org_key(key))
    return None if raw is None else raw.decode()


def organization_admins(reader: StateReader, organization: str) -> tuple[bytes, ...]:
    return gov.decode_keys(reader.get(gov.org_admins_key(organization)))


def member_organizations(reader: StateReader) -> tuple[str, ...]:
    return gov.decode_orgs(reader.get(gov.ORGS_KEY))


def policy_of(reader: StateReader, action: str) -> tuple[str, int]:
    """(rule text, version) of `action`'s policy; versions start at 0."""
    raw = reader.get(gov.policy_key(action))
    rule = gov.DEFAULT_POLICIES[action] if raw is None else raw.decode()
    return rule, u64(reader.get(gov.policy_version_key(action)))


def config_seq(reader: StateReader) -> int:
    return u64(reader.get(gov.CONFIG_SEQ_KEY))


def validator_organization(reader: StateReader, node_id: bytes) -> str | None:
    _, vals = latest_validators(reader)
    return next((v.organization for v in vals if v.node_id == node_id), None)


def subject_of(reader: StateReader, p: GovAction) -> str | None:
    """The organisation an action concerns (what SELF means for it), if any."""
    if isinstance(p, SetOrganizationCA):
        return p.name
    if isinstance(p, AddValidator | AddMember | SetAdmins):
        return p.organization
    if isinstance(p, RemoveValidator):
        return validator_organization(reader, p.node_id)
    if isinstance(p, ReplaceValidator):
        return validator_organization(reader, p.old)
    if isinstance(p, RemoveMember):
        raw = reader.get(member_key(p.key))
        return None if raw is None else raw.decode()
    return None


def get_proposal(reader: StateReader, pid: int) -> gov.Proposal | None:
    raw = reader.get(gov.proposal_key(pid))
    if raw is None:
        return None
    try:
        return gov.Proposal.decode(raw)
    except (ValueError, KeyError, TypeError) as e:
        raise InvariantError(f"proposal {pid} record does not decode: {e!r}") from e


def proposal_of_tx(reader: StateReader, tx: Tx) -> int | None:
    """The proposal a governance transaction opened or acted on, if any."""
    p = tx.payload
    if isinstance(p, Vote | Withdraw):
        return p.proposal
    raw = reader.get(gov.proposal_tx_key(tx.id))
    return None if raw is None else u64(raw)


def _not_admin(sender: bytes) -> tuple[int, str]:
    return (
        UNAUTHORIZED,
        f"not an admin: {sender.hex()[:16]}... is no organisation's admin key",
    )


def _policy_tally(
    reader: StateReader, p: GovAction, votes: dict[str, bool]
) -> tuple[gov.Tally, str, str]:
    """(tally, action name, rule) of `votes` under `p`'s current policy."""
    name = gov.ACTION_NAMES[type(p)]
    rule, _ = policy_of(reader, name)
    t = gov.tally(gov.parse_rule(rule), member_organizations(reader), subject_of(reader, p), votes)
    return t, name, rule


def _check_direct(
    reader: StateReader, sender: bytes, p: GovAction, height: int | None
) -> tuple[int, str]:
    """A configuration change sent directly: valid iff its policy is met by the sender's
    organisation alone (SELF actions, or a one-organisation chain under MAJORITY)."""
    org = admin_organization(reader, sender)
    if org is None:
        return _not_admin(sender)
    t, name, rule = _policy_tally(reader, p, {org: True})  # who may, before what is valid
    if t.outcome != "passed":
        return (
            UNAUTHORIZED,
            f"policy not met: {name} needs {rule} ({t.describe()}); "
            "open a proposal with `consortium gov propose`",
        )
    return check_action_state(reader, p, height)


def _check_gov_tx(reader: StateReader, tx: Tx, height: int | None) -> tuple[int, str]:
    """Admission-level checks of Propose/Vote/Withdraw/SubmitEndorsed/MigrateGovernance;
    re-run at execution (`height` given), where expiry is known too."""
    p = tx.payload
    if isinstance(p, MigrateGovernance):
        return _check_migrate(reader, tx.sender, p)
    if not governed_by_organizations(reader):
        return INVALID, LEGACY_REFUSAL
    if isinstance(p, SubmitEndorsed):
        return _check_endorsed(reader, p, height)
    org = admin_organization(reader, tx.sender)
    if org is None:
        return _not_admin(tx.sender)
    if isinstance(p, Propose):
        return _check_propose(reader, p, height)
    if not isinstance(p, Vote | Withdraw):  # GOV_TXS is exhausted above
        raise InvariantError(f"unhandled governance transaction {type(p).__name__}")
    return _check_ballot(reader, org, p, height)


def _check_endorsed(reader: StateReader, p: SubmitEndorsed, height: int | None) -> tuple[int, str]:
    if config_seq(reader) != p.config_seq:
        return (
            INVALID,
            f"stale endorsements: made at configuration sequence {p.config_seq}, "
            f"the chain is at {config_seq(reader)}",
        )
    if height is not None and height >= p.expiry:
        return INVALID, f"expired: the endorsements expired at height {p.expiry}"
    code, why = check_action_state(reader, p.action, height)
    if code != OK:
        return code, why
    code, why, _ = _endorsements(reader, p)
    return code, why


def _check_propose(reader: StateReader, p: Propose, height: int | None) -> tuple[int, str]:
    if len(_open_ids(reader)) >= gov.MAX_OPEN_PROPOSALS:  # bounds the per-block expiry scan
        return INVALID, f"too many open proposals (at most {gov.MAX_OPEN_PROPOSALS})"
    name = gov.ACTION_NAMES[type(p.action)]
    rule, _ = policy_of(reader, name)
    if rule == "FORBIDDEN":
        return UNAUTHORIZED, f"policy not met: {name} is FORBIDDEN on this chain"
    code, msg = check_action_state(reader, p.action, height)
    if code != OK:
        return code, msg
    t, name, rule = _policy_tally(reader, p.action, {})
    if t.outcome == "rejected":
        return UNAUTHORIZED, f"policy not met: {name} needs {rule}, which cannot be met"
    return OK, ""


def _check_ballot(
    reader: StateReader, org: str, p: Vote | Withdraw, height: int | None
) -> tuple[int, str]:
    """A Vote or Withdraw by an admin of `org` on an open proposal."""
    prop = get_proposal(reader, p.proposal)
    if prop is None:
        return NOT_FOUND, f"unknown proposal {p.proposal}"
    if prop.state == gov.EXPIRED:
        return INVALID, f"expired: proposal {prop.id} expired at height {prop.expiry}"
    if prop.state != gov.PENDING:
        return INVALID, f"proposal {prop.id} is {prop.state}, no longer open"
    if height is not None and height >= prop.expiry:
        return INVALID, f"expired: proposal {prop.id} expired at height {prop.expiry}"
    if isinstance(p, Withdraw):
        if org != prop.proposer:
            return UNAUTHORIZED, f"only {prop.proposer}, the proposer, may withdraw it"
        return OK, ""
    if org not in prop.members:
        return UNAUTHORIZED, f"{org} was not a member organisation when proposal {prop.id} opened"
    if org in prop.vote_map():
        return INVALID, f"already voted: {org} has voted on proposal {prop.id}"
    return OK, ""


def _check_migrate(reader: StateReader, sender: bytes, p: MigrateGovernance) -> tuple[int, str]:
    if governed_by_organizations(reader):
        return INVALID, "this chain already has governance by organisations"
    if not is_admin(reader, sender):
        return UNAUTHORIZED, "MigrateGovernance needs a genesis admin key"
    names = [o for o, _ in p.admins]
    if len(set(names)) != len(names):
        return INVALID, "each organisation appears once in MigrateGovernance"
    for name in names:
        if reader.get(org_key(name)) is None:
            return INVALID, f"{name!r} is not a member organisation"
    _, vals = latest_validators(reader)
    missing = sorted({v.organization for v in vals} - set(names))
    if missing:
        return INVALID, f"validator organisations {missing} need admins in MigrateGovernance"
    keys = [k for _, ks in p.admins for k in ks]
    if len(set(keys)) != len(keys):
        return INVALID, "an admin key acts for one organisation only"
    return OK, ""


def _bump(st: Overlay, key: bytes) -> None:
    st.put(key, pack_u64(u64(st.get(key)) + 1))


def _open_ids(st: StateReader) -> list[int]:
    return gov.decode_ids(st.get(gov.OPEN_PROPOSALS_KEY))


def _set_open(st: Overlay, ids: list[int]) -> None:
    if ids:
        st.put(gov.OPEN_PROPOSALS_KEY, gov.encode_ids(ids))
    else:
        st.delete(gov.OPEN_PROPOSALS_KEY)


def _save(st: Overlay, prop: gov.Proposal) -> None:
    st.put(gov.proposal_key(prop.id), prop.encode())
    if prop.state != gov.PENDING:
        _set_open(st, [i for i in _open_ids(st) if i != prop.id])


def _set_org_admins(st: Overlay, org: str, keys: tuple[bytes, ...]) -> None:
    for old in organization_admins(st, org):
        st.delete(gov.admin_org_key(old))
    for k in keys:
        st.put(gov.admin_org_key(k), org.encode())
    st.put(gov.org_admins_key(org), gov.encode_keys(keys))


def apply_action(st: Overlay, p: GovAction, height: int) -> None:
    """Executes a checked configuration change. On a legacy chain this writes exactly what
    it always did; under governance by organisations it also bumps the configuration
    sequence and aborts the open proposals the change made stale."""
    orgs_mode = governed_by_organizations(st)
    if isinstance(p, DeployContract | UpgradeContract):  # they run code: _contract_action
        raise InvariantError("a contract action reached apply_action")
    if isinstance(p, SetParam):
        st.put(param_key(p.name), p.value.encode())
    elif isinstance(p, AddMember):
        st.put(member_key(p.key), p.organization.encode())
    elif isinstance(p, RemoveMember):
        st.delete(member_key(p.key))
    elif isinstance(p, AddOrganization | SetOrganizationCA):
        st.put(org_key(p.name), p.ca_cert)
        if isinstance(p, AddOrganization) and orgs_mode:
            st.put(gov.ORGS_KEY, gov.encode_orgs({*member_organizations(st), p.name}))
            _bump(st, gov.ORGS_VERSION_KEY)
            _set_org_admins(st, p.name, p.admins)
    elif isinstance(p, SetAdmins):
        _set_org_admins(st, p.organization, p.admins)
    elif isinstance(p, SetPolicy):
        st.put(gov.policy_key(p.action), str(gov.parse_rule(p.rule)).encode())
        _bump(st, gov.policy_version_key(p.action))
    else:
        _, vals = latest_validators(st)
        if isinstance(p, AddValidator):
            new = (*vals, Validator(p.node_id, p.organization))
        elif isinstance(p, ReplaceValidator):
            new = tuple(Validator(p.new, v.organization) if v.node_id == p.old else v for v in vals)
        else:
            new = tuple(v for v in vals if v.node_id != p.node_id)
        eff = height + VALIDATOR_CHANGE_DELAY
        st.put(vset_key(eff), encode_validators(new))
        st.put(VSET_LATEST_KEY, pack_u64(eff))
    if orgs_mode:
        _bump(st, gov.CONFIG_SEQ_KEY)
        if isinstance(p, AddOrganization | SetPolicy):
            _abort_stale(st, height)


def _abort_stale(st: Overlay, height: int) -> None:
    """ABORTED: open proposals made under another member set or action policy."""
    orgver = u64(st.get(gov.ORGS_VERSION_KEY))
    for pid in _open_ids(st):
        prop = get_proposal(st, pid)
        if prop is None:
            raise InvariantError(f"open proposal {pid} has no record")
        if prop.orgs_version != orgver:
            _save(st, prop.close(gov.ABORTED, height, "the member organisations changed"))
        elif prop.policy_version != policy_of(st, prop.action)[1]:
            _save(st, prop.close(gov.ABORTED, height, f"the policy of {prop.action} changed"))


def _contract_action(
    st: Overlay,
    p: DeployContract | UpgradeContract,
    height: int,
    vm: cx.ContractVM | None,
    caller: bytes,
    tx_id: bytes,
) -> tuple[int, str]:
    """Executes a checked deploy/upgrade: validates the code with the engine, runs its
    `init` (deploy) or `upgrade` export if it has one, then stores code and record. On
    failure nothing but the call's receipt (x/r/<tx id>) is written."""
    vm = cx.require_engine(st, vm)
    limits = cx.limits_of(st, cx.param_of(st, "contract_max_fuel"))
    why = vm.check_code(p.code, limits)
    if why is not None:
        return INVALID, why
    info = cx.new_info(vm, p.name, p.code, height, cx.contract_info(st, p.name))
    export = "init" if isinstance(p, DeployContract) else "upgrade"
    if vm.has_export(info.code_hash, p.code, export):
        arg = p.init_input if isinstance(p, DeployContract) else b""
        out, writes = cx.run_call(st, vm, info, p.code, export, arg, caller, height, limits.fuel)
        st.put(cx.receipt_key(tx_id), cx.ContractReceipt(p.name, export, out).encode())
        if not out.ok:
            return CONTRACT_FAILED, f"{export} failed: {out.reason}"
        cx.merge(st, writes)
    st.put(cx.code_key(info.code_hash), p.code)
    st.put(cx.contract_key(p.name), info.encode())
    if governed_by_organizations(st):
        _bump(st, gov.CONFIG_SEQ_KEY)
    return OK, ""


def _invoke(
    st: Overlay, tx: Tx, p: Invoke, height: int, vm: cx.ContractVM | None
) -> tuple[int, str]:
    """Executes a checked Invoke: the call's writes are kept only if it succeeds; its
    receipt (status, reason, fuel, result, events) is state at x/r/<tx id> either way."""
    vm = cx.require_engine(st, vm)
    info = cx.contract_info(st, p.contract)
    if info is None:  # _check_invoke ran on this same state
        raise InvariantError(f"contract {p.contract} vanished between check and execution")
    code = cx.contract_code(st, info)
    out, writes = cx.run_call(
        st, vm, info, code, p.method, p.input, tx.sender, height, p.fuel_limit
    )
    cx.merge(st, writes)
    st.put(cx.receipt_key(tx.id), cx.ContractReceipt(p.contract, p.method, out).encode())
    return (OK, "") if out.ok else (CONTRACT_FAILED, out.reason)


def _decide(
    st: Overlay,
    prop: gov.Proposal,
    action: GovAction,
    height: int,
    vm: cx.ContractVM | None = None,
    tx_id: bytes = b"",
) -> gov.Proposal:
    """Closes `prop` if its tally is decided: runs the action (EXECUTED or FAILED) when the
    policy is met, REJECTED when it no longer can be. Saves the record. A contract action
    runs code (its init/upgrade), so it can still fail here: FAILED with the reason."""
    outcome = prop.tally().outcome
    if outcome == "rejected":
        prop = prop.close(gov.REJECTED, height, "the policy can no longer be met")
    elif outcome == "passed":
        if prop.orgs_version != u64(st.get(gov.ORGS_VERSION_KEY)) or (
            prop.policy_version != policy_of(st, prop.action)[1]
        ):  # never reached: stale proposals are aborted when the change executes
            raise InvariantError(f"proposal {prop.id} is stale but still open")
        code, why = _action_valid(st, action, height)
        if code == OK and isinstance(action, DeployContract | UpgradeContract):
            code, why = _contract_action(st, action, height, vm, prop.proposer_key, tx_id)
            if code == OK:  # executed: code, record and config sequence are written
                prop = prop.close(gov.EXECUTED, height)
                _save(st, prop)
                return prop
        if code != OK:
            prop = prop.close(gov.FAILED, height, why)
        else:
            prop = prop.close(gov.EXECUTED, height)
            _save(st, prop)  # closed before the action runs, so _abort_stale skips it
            apply_action(st, action, height)
            return prop
    _save(st, prop)
    return prop


def _action_valid(st: StateReader, action: GovAction, height: int) -> tuple[int, str]:
    try:
        check_action(action)
    except TxRejected as e:
        return INVALID, e.message
    return check_action_state(st, action, height)


def _new_proposal(
    st: Overlay, tx: Tx, action: GovAction, action_bytes: bytes, org: str, height: int, ttl: int
) -> gov.Proposal:
    pid = u64(st.get(gov.NEXT_PROPOSAL_KEY)) or 1
    st.put(gov.NEXT_PROPOSAL_KEY, pack_u64(pid + 1))
    st.put(gov.proposal_tx_key(tx.id), pack_u64(pid))
    name = gov.ACTION_NAMES[type(action)]
    rule, pver = policy_of(st, name)
    return gov.Proposal(
        id=pid,
        proposer=org,
        proposer_key=tx.sender,
        action=name,
        action_bytes=action_bytes,
        action_json=gov.encode_action(action),
        subject=subject_of(st, action),
        created=height,
        expiry=height + ttl,
        orgs_version=u64(st.get(gov.ORGS_VERSION_KEY)),
        policy_version=pver,
        rule=rule,
        members=member_organizations(st),
        summary=gov.summarize(action),
    )


def _apply_gov(
    st: Overlay, tx: Tx, height: int, vm: cx.ContractVM | None = None
) -> tuple[int, str]:
    """Executes a checked Propose/Vote/Withdraw/SubmitEndorsed/MigrateGovernance."""
    p = tx.payload
    if isinstance(p, MigrateGovernance):
        st.delete(ADMINS_KEY)
        st.put(gov.GOV_ORGS_KEY, b"1")
        st.put(gov.ORGS_KEY, gov.encode_orgs({o for o, _ in p.admins}))
        for name, keys in p.admins:
            _set_org_admins(st, name, keys)
        return OK, f"governance by organisations: {', '.join(sorted(o for o, _ in p.admins))}"
    if isinstance(p, SubmitEndorsed):
        return _apply_endorsed(st, tx, p, height, vm)
    org = admin_organization(st, tx.sender)
    if org is None:  # _check_gov_tx ran on this same state
        raise InvariantError("governance transaction passed its check without an admin")
    if isinstance(p, Propose):
        new = _new_proposal(st, tx, p.action, p.action_bytes, org, height, p.ttl)
        new = new.with_vote(gov.CastVote(org, True, tx.sender, height))
        _set_open(st, [*_open_ids(st), new.id])
        return OK, _decide(st, new, p.action, height, vm, tx.id).status_line()
    if not isinstance(p, Vote | Withdraw):  # GOV_TXS is exhausted above
        raise InvariantError(f"unhandled governance transaction {type(p).__name__}")
    prop = get_proposal(st, p.proposal)
    if prop is None:
        raise InvariantError(f"proposal {p.proposal} vanished between check and execution")
    if isinstance(p, Withdraw):
        prop = prop.close(gov.WITHDRAWN, height, f"withdrawn by {org}")
        _save(st, prop)
        return OK, prop.status_line()
    action = _decode_action_of(prop)
    prop = prop.with_vote(gov.CastVote(org, p.approve, tx.sender, height))
    prop = _decide(st, prop, action, height, vm, tx.id)
    return OK, prop.status_line()


def _decode_action_of(prop: gov.Proposal) -> GovAction:
    try:
        return gov.decode_action(prop.action_json)
    except (ValueError, KeyError, TypeError) as e:
        raise InvariantError(f"proposal {prop.id} holds an undecodable action: {e!r}") from e


def _endorsements(reader: StateReader, p: SubmitEndorsed) -> tuple[int, str, dict[str, bytes]]:
    """(code, message, organisation -> endorsing key): one endorsement per organisation,
    each verified and by an admin, and together meeting the action's policy."""
    signers: dict[str, bytes] = {}
    for e in p.endorsements:
        if not e.valid:
            return INVALID, f"endorsement by {e.signer.hex()[:16]}... does not verify", {}
        org = admin_organization(reader, e.signer)
        if org is None:
            return (*_not_admin(e.signer), {})
        if org in signers:
            return INVALID, f"already voted: two endorsements from {org}", {}
        signers[org] = e.signer
    t, name, rule = _policy_tally(reader, p.action, dict.fromkeys(signers, True))
    if t.outcome != "passed":
        return UNAUTHORIZED, f"policy not met: {name} needs {rule} ({t.describe()})", {}
    return OK, "", signers


def _apply_endorsed(
    st: Overlay, tx: Tx, p: SubmitEndorsed, height: int, vm: cx.ContractVM | None
) -> tuple[int, str]:
    code, msg, signers = _endorsements(st, p)
    if code != OK:  # _check_gov_tx ran _endorsements on this same state
        raise InvariantError(f"endorsed submission passed its check but not now: {msg}")
    first = next(iter(signers))
    prop = _new_proposal(st, tx, p.action, p.action_bytes, first, height, p.expiry - height)
    votes = tuple(gov.CastVote(o, True, k, height) for o, k in signers.items())
    prop = replace(prop, offline=True, votes=votes)
    return OK, _decide(st, prop, p.action, height, vm, tx.id).status_line()


def expire_proposals(st: Overlay, height: int) -> None:
    """EXPIRED: open proposals whose expiry height is `height` (or earlier), before the
    block's transactions run — a vote in block `expiry` is too late. Writes nothing when no
    proposal is open, so chains without proposals keep their state exactly."""
    ids = _open_ids(st)
    for pid in ids:
        prop = get_proposal(st, pid)
        if prop is None:
            raise InvariantError(f"open proposal {pid} has no record")
        if height >= prop.expiry:
            _save(st, prop.close(gov.EXPIRED, height, f"expired at height {prop.expiry}"))


def _apply(st: Overlay, tx: Tx, height: int, vm: cx.ContractVM | None = None) -> tuple[int, str]:
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
    elif isinstance(p, Invoke):
        return _invoke(st, tx, p, height, vm)
    else:
        try:  # the stateless checks again: block txs from peers skip admission
            check_payload(p)
        except TxRejected as e:
            return INVALID, e.message
        if isinstance(p, GOV_TXS):
            return _apply_gov(st, tx, height, vm)
        if isinstance(p, DeployContract | UpgradeContract):
            return _contract_action(st, p, height, vm, tx.sender, tx.id)
        apply_action(st, p, height)
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


def execute_block(
    reader: StateReader,
    acc: LtHash,
    height: int,
    txs: Sequence[Tx],
    vm: cx.ContractVM | None = None,
) -> BlockResult:
    """Runs `txs` (already validated: signatures, chain id, nonce sequence) in order. A tx that
    fails (balance, authorisation, a failed contract call) still consumes its nonce and gets a
    failing receipt. `vm` is the contract engine; a block that runs contract code on a node
    without the chain's engine raises cx.ContractsUnavailable (nothing is written)."""
    st = Overlay(reader)
    expire_proposals(st, height)
    receipts = []
    for i, tx in enumerate(txs):
        nk = nonce_key(tx.sender)
        st.put(nk, pack_u64(u64(st.get(nk)) + 1))
        code, msg = _apply(st, tx, height, vm)
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
