"""Transactions as the core sees them: decoded, immutable, carrying their exact signed bytes.

Decoding from the wire (protobuf `SignedTx`/`TxBody`) happens in transport/codec.py; this module
holds the domain types and the stateless checks every node applies identically. The tx id is
SHA-256 of the signed body bytes (never of a re-serialisation)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .certs import ca_bundle_problem
from .errors import Reject, TxRejected

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 64 * 1024
DEFAULT_MAX_TX_BYTES = 128 * 1024
MAX_AMOUNT = (1 << 63) - 1
MAX_ORG_BYTES = 255  # the validator-set encoding stores the length in one byte
ASSET_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
PARAM_RE = re.compile(r"^[a-z_]{1,64}$")
# contracts (ledger/contracts.py, docs/CONTRACTS.md): a contract's name and a method's name
CONTRACT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
METHOD_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
RESERVED_METHODS = frozenset({"init", "upgrade"})  # called by deploy/upgrade, never by Invoke
MAX_FUEL = 10**12  # the hard ceiling of any fuel limit (the chain's own cap is a parameter)


@dataclass(frozen=True, slots=True)
class KvPut:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class KvDelete:
    key: bytes


@dataclass(frozen=True, slots=True)
class AssetIssue:
    asset: str
    to: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class AssetTransfer:
    asset: str
    to: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class AddValidator:
    node_id: bytes
    organization: str


@dataclass(frozen=True, slots=True)
class RemoveValidator:
    node_id: bytes


@dataclass(frozen=True, slots=True)
class SetParam:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class AddMember:
    """An admin vouches for sender key `key` on behalf of member organisation `organization`."""

    key: bytes
    organization: str


@dataclass(frozen=True, slots=True)
class RemoveMember:
    key: bytes


@dataclass(frozen=True, slots=True)
class AddOrganization:
    """A member organisation joins after genesis, with its CA certificate (PEM; empty on a
    chain without TLS)."""

    name: str
    ca_cert: bytes
    admins: tuple[bytes, ...] = ()  # the new organisation's governance admin keys


@dataclass(frozen=True, slots=True)
class SetOrganizationCA:
    """Replace an organisation's trusted CA certificates (a PEM bundle: old + new while a
    CA is rotated)."""

    name: str
    ca_cert: bytes


@dataclass(frozen=True, slots=True)
class SetAdmins:
    """Replace an organisation's governance admin keys (policy SELF by default)."""

    organization: str
    admins: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SetPolicy:
    """Set the rule that governs one action (see ledger/governance.py for names and rules)."""

    action: str
    rule: str


@dataclass(frozen=True, slots=True)
class ReplaceValidator:
    """An organisation swaps its own validator `old` for the unknown key `new` (SELF)."""

    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class DeployContract:
    """Install a new WebAssembly contract `name` (governance: `deploy_contract`, MAJORITY by
    default); its `init` export, if any, runs once with `init_input`."""

    name: str
    code: bytes
    init_input: bytes = b""


@dataclass(frozen=True, slots=True)
class UpgradeContract:
    """Replace contract `name`'s code, keeping its state (governance: `upgrade_contract`);
    the new code's `upgrade` export, if any, runs once."""

    name: str
    code: bytes


@dataclass(frozen=True, slots=True)
class Invoke:
    """Call `method` of contract `contract` with `input`, metered up to `fuel_limit`."""

    contract: str
    method: str
    input: bytes
    fuel_limit: int


# The configuration changes a proposal, an endorsed submission or (when its policy is met by
# the sender's organisation alone) a direct transaction can carry.
GovAction = (
    AddValidator
    | RemoveValidator
    | ReplaceValidator
    | SetParam
    | AddMember
    | RemoveMember
    | AddOrganization
    | SetOrganizationCA
    | SetAdmins
    | SetPolicy
    | DeployContract
    | UpgradeContract
)


@dataclass(frozen=True, slots=True)
class Propose:
    """Open a proposal for `action`; it expires at height (inclusion height + ttl). The
    proposer's organisation votes yes. `action_bytes` is the exact serialised action."""

    action: GovAction
    action_bytes: bytes
    ttl: int


@dataclass(frozen=True, slots=True)
class Vote:
    proposal: int
    approve: bool


@dataclass(frozen=True, slots=True)
class Withdraw:
    proposal: int


@dataclass(frozen=True, slots=True)
class Endorsement:
    """An admin's detached signature over governance.endorsement_message(...). `valid` is
    the Ed25519 check, done once by the decoder (transport/codec.py) on every node alike."""

    signer: bytes
    signature: bytes
    valid: bool


@dataclass(frozen=True, slots=True)
class SubmitEndorsed:
    """The offline path: `action` with organisations' endorsements over (chain id, action,
    configuration sequence, expiry), counted by the same policy code as votes."""

    action: GovAction
    action_bytes: bytes
    config_seq: int
    expiry: int
    endorsements: tuple[Endorsement, ...]


@dataclass(frozen=True, slots=True)
class MigrateGovernance:
    """Legacy single-admin chains only: a genesis admin gives every member organisation its
    admin keys, and the chain moves to governance by organisations (irreversibly)."""

    admins: tuple[tuple[str, tuple[bytes, ...]], ...]


MAX_CA_BYTES = 16 * 1024
MAX_ADMINS = 16
MAX_TTL = 1_000_000
MAX_ENDORSEMENTS = 64

Payload = (
    KvPut
    | KvDelete
    | AssetIssue
    | AssetTransfer
    | AddValidator
    | RemoveValidator
    | SetParam
    | AddMember
    | RemoveMember
    | AddOrganization
    | SetOrganizationCA
    | SetAdmins
    | SetPolicy
    | ReplaceValidator
    | Propose
    | Vote
    | Withdraw
    | SubmitEndorsed
    | MigrateGovernance
    | DeployContract
    | UpgradeContract
    | Invoke
)
GOVERNANCE = (
    AddValidator,
    RemoveValidator,
    SetParam,
    AddMember,
    RemoveMember,
    AddOrganization,
    SetOrganizationCA,
    SetAdmins,
    SetPolicy,
    ReplaceValidator,
    DeployContract,
    UpgradeContract,
)
GOV_TXS = (Propose, Vote, Withdraw, SubmitEndorsed, MigrateGovernance)


@dataclass(frozen=True, slots=True)
class Tx:
    id: bytes  # SHA-256(body)
    raw: bytes  # the SignedTx bytes exactly as received (what blocks carry)
    body: bytes  # the signed bytes
    signature: bytes
    chain_id: str
    sender: bytes
    nonce: int
    payload: Payload


def check_stateless(tx: Tx, chain_id: str, max_tx_bytes: int) -> None:
    """Checks that need no state (signature excepted: see crypto.verify). Raises TxRejected."""
    if len(tx.raw) > max_tx_bytes:
        raise TxRejected(
            Reject.TOO_LARGE, f"transaction is {len(tx.raw)} bytes, limit {max_tx_bytes}"
        )
    if tx.chain_id != chain_id:
        raise TxRejected(
            Reject.WRONG_CHAIN, f"chain id {tx.chain_id!r} is not this chain ({chain_id!r})"
        )
    if len(tx.sender) != 32:
        raise TxRejected(Reject.MALFORMED, "sender must be a 32-byte Ed25519 public key")
    if len(tx.signature) != 64:
        raise TxRejected(Reject.BAD_SIGNATURE, "signature must be 64 bytes")
    check_payload(tx.payload)


def check_payload(p: Payload) -> None:
    """The payload's stateless checks; run at admission (check_stateless) and again by the
    state machine at execution for governance transactions (block txs from peers skip
    admission, and nothing malformed may reach configuration state)."""
    if isinstance(p, Propose | SubmitEndorsed):
        check_action(p.action)
        if isinstance(p, Propose) and not 0 < p.ttl <= MAX_TTL:
            raise TxRejected(Reject.INVALID, f"proposal ttl must be 1..{MAX_TTL} blocks")
        if isinstance(p, SubmitEndorsed) and not 0 < len(p.endorsements) <= MAX_ENDORSEMENTS:
            raise TxRejected(Reject.INVALID, f"endorsements must number 1..{MAX_ENDORSEMENTS}")
        return
    if isinstance(p, Vote | Withdraw):
        if p.proposal < 1:
            raise TxRejected(Reject.INVALID, "proposal ids start at 1")
        return
    if isinstance(p, MigrateGovernance):
        if not p.admins:
            raise TxRejected(Reject.INVALID, "MigrateGovernance needs every organisation's admins")
        for org, keys in p.admins:
            _check_org(org)
            _check_admins(keys)
        return
    check_action(p)


def _check_org(name: str) -> None:
    if not 0 < len(name.encode()) <= MAX_ORG_BYTES:
        raise TxRejected(Reject.INVALID, f"organization must be 1..{MAX_ORG_BYTES} bytes")


def _check_admins(keys: tuple[bytes, ...], allow_empty: bool = False) -> None:
    if not (allow_empty or keys) or len(keys) > MAX_ADMINS:
        raise TxRejected(Reject.INVALID, f"an organisation needs 1..{MAX_ADMINS} admin keys")
    if any(len(k) != 32 for k in keys) or len(set(keys)) != len(keys):
        raise TxRejected(Reject.INVALID, "admin keys must be distinct 32-byte Ed25519 keys")


def _refuse_nested(_p: Payload) -> None:
    raise TxRejected(Reject.INVALID, "a governance action cannot nest a proposal or vote")


def _check_set_admins(p: SetAdmins) -> None:
    _check_org(p.organization)
    _check_admins(p.admins)


def _check_set_policy(p: SetPolicy) -> None:
    if not PARAM_RE.fullmatch(p.action) or not 0 < len(p.rule) <= 32:
        raise TxRejected(Reject.INVALID, "SetPolicy needs an action name and a rule")


def _check_replace_validator(p: ReplaceValidator) -> None:
    if len(p.old) != 32 or len(p.new) != 32 or p.old == p.new:
        raise TxRejected(Reject.INVALID, "ReplaceValidator needs two distinct 32-byte keys")


def _check_kv(p: KvPut | KvDelete) -> None:
    if not 0 < len(p.key) <= MAX_KEY_BYTES:
        raise TxRejected(Reject.INVALID, f"key must be 1..{MAX_KEY_BYTES} bytes")
    if isinstance(p, KvPut) and len(p.value) > MAX_VALUE_BYTES:
        raise TxRejected(Reject.INVALID, f"value exceeds {MAX_VALUE_BYTES} bytes")


def _check_asset(p: AssetIssue | AssetTransfer) -> None:
    if not ASSET_RE.fullmatch(p.asset):
        raise TxRejected(Reject.INVALID, f"asset name {p.asset!r} must match {ASSET_RE.pattern}")
    if len(p.to) != 32:
        raise TxRejected(Reject.INVALID, "recipient account must be a 32-byte public key")
    if not 0 < p.amount <= MAX_AMOUNT:
        raise TxRejected(Reject.INVALID, f"amount must be 1..{MAX_AMOUNT}")


def _check_validator_change(p: AddValidator | RemoveValidator) -> None:
    if len(p.node_id) != 32:
        raise TxRejected(Reject.INVALID, "validator node id must be a 32-byte public key")
    if isinstance(p, AddValidator) and not 0 < len(p.organization.encode()) <= MAX_ORG_BYTES:
        raise TxRejected(Reject.INVALID, f"validator organization must be 1..{MAX_ORG_BYTES} bytes")


def _check_member_change(p: AddMember | RemoveMember) -> None:
    if len(p.key) != 32:
        raise TxRejected(Reject.INVALID, "member key must be a 32-byte Ed25519 public key")
    if isinstance(p, AddMember) and not 0 < len(p.organization.encode()) <= MAX_ORG_BYTES:
        raise TxRejected(Reject.INVALID, f"organization must be 1..{MAX_ORG_BYTES} bytes")


def _check_org_ca(p: AddOrganization | SetOrganizationCA) -> None:
    if not 0 < len(p.name.encode()) <= MAX_ORG_BYTES:
        raise TxRejected(Reject.INVALID, f"organization must be 1..{MAX_ORG_BYTES} bytes")
    if len(p.ca_cert) > MAX_CA_BYTES:
        raise TxRejected(Reject.INVALID, f"CA certificate exceeds {MAX_CA_BYTES} bytes")
    if isinstance(p, SetOrganizationCA) and not p.ca_cert:
        raise TxRejected(Reject.INVALID, "SetOrganizationCA needs at least one CA certificate")
    if b"PRIVATE KEY" in p.ca_cert:  # never put a CA's key on chain
        raise TxRejected(Reject.INVALID, "CA certificate must not contain a private key")
    if p.ca_cert and (why := ca_bundle_problem(p.ca_cert)) is not None:
        raise TxRejected(Reject.INVALID, why)
    if isinstance(p, AddOrganization):
        _check_admins(p.admins, allow_empty=True)


def _check_contract_name(name: str) -> None:
    if not CONTRACT_RE.fullmatch(name):
        raise TxRejected(Reject.INVALID, f"contract name {name!r} must match {CONTRACT_RE.pattern}")


def _check_contract_code(p: DeployContract | UpgradeContract) -> None:
    _check_contract_name(p.name)
    if not p.code:
        raise TxRejected(Reject.INVALID, "contract code is empty")
    if isinstance(p, DeployContract) and len(p.init_input) > MAX_VALUE_BYTES:
        raise TxRejected(Reject.INVALID, f"init input exceeds {MAX_VALUE_BYTES} bytes")


def _check_invoke(p: Invoke) -> None:
    _check_contract_name(p.contract)
    if not METHOD_RE.fullmatch(p.method):
        raise TxRejected(Reject.INVALID, f"method name {p.method!r} must match {METHOD_RE.pattern}")
    if p.method in RESERVED_METHODS:
        raise TxRejected(Reject.INVALID, f"{p.method} runs only at deploy/upgrade, not by Invoke")
    if len(p.input) > MAX_VALUE_BYTES:
        raise TxRejected(Reject.INVALID, f"call input exceeds {MAX_VALUE_BYTES} bytes")
    if not 0 < p.fuel_limit <= MAX_FUEL:
        raise TxRejected(Reject.INVALID, f"fuel limit must be 1..{MAX_FUEL}")


def _check_set_param(p: SetParam) -> None:
    if not PARAM_RE.fullmatch(p.name):
        raise TxRejected(Reject.INVALID, f"parameter name {p.name!r} must match {PARAM_RE.pattern}")


# One stateless check per payload type (exact type: payloads are final frozen dataclasses);
# a type without an entry has no stateless rule of its own.
_ACTION_CHECKS: dict[type, Callable[[Any], None]] = {
    Propose: _refuse_nested,
    Vote: _refuse_nested,
    Withdraw: _refuse_nested,
    SubmitEndorsed: _refuse_nested,
    MigrateGovernance: _refuse_nested,
    SetAdmins: _check_set_admins,
    SetPolicy: _check_set_policy,
    ReplaceValidator: _check_replace_validator,
    KvPut: _check_kv,
    KvDelete: _check_kv,
    AssetIssue: _check_asset,
    AssetTransfer: _check_asset,
    AddValidator: _check_validator_change,
    RemoveValidator: _check_validator_change,
    AddMember: _check_member_change,
    RemoveMember: _check_member_change,
    AddOrganization: _check_org_ca,
    SetOrganizationCA: _check_org_ca,
    SetParam: _check_set_param,
    DeployContract: _check_contract_code,
    UpgradeContract: _check_contract_code,
    Invoke: _check_invoke,
}


def check_action(p: Payload) -> None:
    """Stateless checks of one configuration change (also re-run at execution)."""
    check = _ACTION_CHECKS.get(type(p))
    if check is not None:
        check(p)
