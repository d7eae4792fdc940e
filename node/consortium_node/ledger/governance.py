"""Governance by organisations: per-action policies, proposals, votes and their tally.

Pure and deterministic (rule 6 of the house style: organisations, not keys, decide). This
module holds the *rules*: the policy language, the default policy of every action, the
proposal record and its encoding, the tally, and the bytes an offline endorsement signs.
ledger/state.py calls it while executing Propose / Vote / Withdraw / SubmitEndorsed and the
direct form of each configuration change; transport (codec, Ledger servicer) and the CLI
call it to encode endorsements and to present proposals.

Policies. Each action has a rule, stored on chain at `g/policy/<action>` (absent: the
default below) and changed only by a SetPolicy that passes the `set_policy` rule:

  ANY        one member organisation
  MAJORITY   strictly more than half of the member organisations (3 of 4, 2 of 3, 4 of 7)
  ALL        every member organisation
  <k>        at least k organisations (k >= 1; more than there are members: unreachable)
  <n>/<d>    at least n/d of the member organisations, rounded up (1 <= n <= d <= 1000)
  SELF       the organisation the action concerns (its CA, members, admins, validators)
  FORBIDDEN  never

`set_admins` is always SELF (an organisation alone changes its own admin keys) and
`set_policy` can be neither SELF nor FORBIDDEN (policies must stay changeable).

Counting is by organisation: one vote per organisation, cast by any of its admin keys, a
second vote from the same organisation is refused. Only member organisations count; the
denominator is the member set when the proposal was made, and a proposal whose member set
(`g/orgver`) or action policy (`g/polver/<action>`) changed since is ABORTED, so approvals
given under other rules never count.

Proposal states: PENDING, then exactly one terminal state: EXECUTED (the vote that met the
policy ran the action in its block), FAILED (met, but the action was invalid at that
height; the reason is kept), REJECTED (the policy can no longer be met), EXPIRED (at the
expiry height: a vote included in block `expiry` is too late), ABORTED (member set or
policy changed) or WITHDRAWN (by the proposer's organisation)."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, fields, replace

from .hashing import sha256
from .tx import (
    AddMember,
    AddOrganization,
    AddValidator,
    DeployContract,
    GovAction,
    RemoveMember,
    RemoveValidator,
    ReplaceValidator,
    SetAdmins,
    SetOrganizationCA,
    SetParam,
    SetPolicy,
    UpgradeContract,
)

_U64 = struct.Struct(">Q")

ACTION_NAMES: dict[type, str] = {
    AddOrganization: "add_organization",
    SetOrganizationCA: "set_organization_ca",
    AddValidator: "add_validator",
    RemoveValidator: "remove_validator",
    ReplaceValidator: "replace_validator",
    SetParam: "set_param",
    AddMember: "add_member",
    RemoveMember: "remove_member",
    SetAdmins: "set_admins",
    SetPolicy: "set_policy",
    DeployContract: "deploy_contract",
    UpgradeContract: "upgrade_contract",
}
ACTIONS = tuple(sorted(ACTION_NAMES.values()))
# Actions that concern one organisation (and so may be governed by SELF).
SELF_CAPABLE = frozenset(
    {
        "set_organization_ca",
        "add_validator",
        "remove_validator",
        "replace_validator",
        "add_member",
        "remove_member",
        "set_admins",
    }
)
DEFAULT_POLICIES: dict[str, str] = {
    "add_organization": "MAJORITY",
    "add_validator": "MAJORITY",
    "remove_validator": "MAJORITY",
    "set_param": "MAJORITY",
    "set_policy": "MAJORITY",
    "deploy_contract": "MAJORITY",
    "upgrade_contract": "MAJORITY",
    "set_organization_ca": "SELF",
    "add_member": "SELF",
    "remove_member": "SELF",
    "set_admins": "SELF",
    "replace_validator": "SELF",
}

PENDING, EXECUTED, FAILED, REJECTED, EXPIRED, ABORTED, WITHDRAWN = (
    "PENDING",
    "EXECUTED",
    "FAILED",
    "REJECTED",
    "EXPIRED",
    "ABORTED",
    "WITHDRAWN",
)
STATES = (PENDING, EXECUTED, FAILED, REJECTED, EXPIRED, ABORTED, WITHDRAWN)

# -- state keys (all under g/, all covered by the state root) -----------------------------
ORGS_KEY = b"g/orgs"  # JSON list of member organisation names, sorted
ORGS_VERSION_KEY = b"g/orgver"  # u64, bumped whenever the member set changes
CONFIG_SEQ_KEY = b"g/cfgseq"  # u64, bumped by every executed configuration change
NEXT_PROPOSAL_KEY = b"g/prop-next"  # u64 id of the next proposal (ids start at 1)
OPEN_PROPOSALS_KEY = b"g/prop-open"  # u64 ids of PENDING proposals, ascending
MAX_OPEN_PROPOSALS = 256  # PENDING at once, chain-wide (each block scans them for expiry)
GOV_ORGS_KEY = b"g/gov-orgs"  # present (b"1"): governance by organisations is on


def org_admins_key(organization: str) -> bytes:
    """g/oadm/<org>: the organisation's admin keys, 32 bytes each, sorted."""
    return b"g/oadm/" + organization.encode()


def admin_org_key(key: bytes) -> bytes:
    """g/oadmk/<key>: the organisation an admin key acts for (one organisation per key)."""
    return b"g/oadmk/" + key


def policy_key(action: str) -> bytes:
    return b"g/policy/" + action.encode()


def policy_version_key(action: str) -> bytes:
    return b"g/polver/" + action.encode()


def proposal_key(pid: int) -> bytes:
    return b"g/prop/" + _U64.pack(pid)


def proposal_tx_key(tx_id: bytes) -> bytes:
    """g/ptx/<tx id>: the proposal a Propose or SubmitEndorsed transaction created."""
    return b"g/ptx/" + tx_id


def encode_ids(ids: list[int] | tuple[int, ...]) -> bytes:
    return b"".join(_U64.pack(i) for i in ids)


def decode_ids(raw: bytes | None) -> list[int]:
    if not raw:
        return []
    return [int(_U64.unpack_from(raw, i)[0]) for i in range(0, len(raw) - len(raw) % 8, 8)]


def encode_keys(keys: tuple[bytes, ...] | list[bytes]) -> bytes:
    return b"".join(sorted(keys))


def decode_keys(raw: bytes | None) -> tuple[bytes, ...]:
    raw = raw or b""
    return tuple(raw[i : i + 32] for i in range(0, len(raw), 32))


def encode_orgs(names: list[str] | tuple[str, ...] | set[str]) -> bytes:
    return json.dumps(sorted(names), separators=(",", ":")).encode()


def decode_orgs(raw: bytes | None) -> tuple[str, ...]:
    if not raw:
        return ()
    names = json.loads(raw)
    return tuple(str(n) for n in names)


# -- rules --------------------------------------------------------------------------------
_K = re.compile(r"^[1-9][0-9]{0,3}$")
_FRACTION = re.compile(r"^([1-9][0-9]{0,3})/([1-9][0-9]{0,3})$")


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # ANY | MAJORITY | ALL | K | FRACTION | SELF | FORBIDDEN
    k: int = 0
    n: int = 0
    d: int = 0

    def __str__(self) -> str:
        if self.kind == "K":
            return str(self.k)
        if self.kind == "FRACTION":
            return f"{self.n}/{self.d}"
        return self.kind

    def needed(self, members: int) -> int | None:
        """Yes votes of organisations needed among `members`; None for SELF/FORBIDDEN."""
        if self.kind == "ANY":
            return 1
        if self.kind == "MAJORITY":
            return members // 2 + 1  # strictly more than half
        if self.kind == "ALL":
            return max(members, 1)
        if self.kind == "K":
            return self.k
        if self.kind == "FRACTION":
            return max(1, -(-members * self.n // self.d))  # ceil(members * n / d)
        return None


def parse_rule(text: str) -> Rule:
    """Parses a rule; raises ValueError with a one-line reason."""
    t = text.strip().upper()
    if t in ("ANY", "MAJORITY", "ALL", "SELF", "FORBIDDEN"):
        return Rule(t)
    if _K.fullmatch(t):
        return Rule("K", k=int(t))
    m = _FRACTION.fullmatch(t)
    if m:
        n, d = int(m.group(1)), int(m.group(2))
        if n > d or d > 1000:
            raise ValueError(f"fraction {t} must satisfy 1 <= n <= d <= 1000")
        return Rule("FRACTION", n=n, d=d)
    raise ValueError(f"unknown policy rule {text!r} (ANY, MAJORITY, ALL, k, n/d, SELF, FORBIDDEN)")


def check_policy(action: str, rule_text: str) -> str | None:
    """Why SetPolicy(action, rule) is invalid, or None."""
    if action not in DEFAULT_POLICIES:
        return f"unknown action {action!r} (known: {', '.join(ACTIONS)})"
    try:
        rule = parse_rule(rule_text)
    except ValueError as e:
        return str(e)
    if rule.kind == "SELF" and action not in SELF_CAPABLE:
        return f"{action} concerns no single organisation: SELF cannot govern it"
    if action == "set_admins" and rule.kind != "SELF":
        # an organisation's admins are changed by that organisation alone: no majority may
        # take over another organisation's keys (house rule 6)
        return "set_admins is always SELF: an organisation alone changes its admins"
    if action == "set_policy" and rule.kind in ("FORBIDDEN", "SELF"):
        return "set_policy cannot be FORBIDDEN or SELF: policies would become unchangeable"
    return None


@dataclass(frozen=True, slots=True)
class Tally:
    outcome: str  # "passed" | "pending" | "rejected"
    yes: int
    no: int
    needed: int  # yes votes needed (1 for SELF; 0 for FORBIDDEN)
    members: int

    def describe(self) -> str:
        return f"{self.yes}/{self.members} yes, {self.no} no, need {self.needed}"


def tally(
    rule: Rule,
    members: tuple[str, ...],
    subject: str | None,
    votes: dict[str, bool],
) -> Tally:
    """The policy decision over organisation votes. Only member organisations count."""
    yes = sum(1 for o, v in votes.items() if v and o in members)
    no = sum(1 for o, v in votes.items() if not v and o in members)
    n = len(members)
    if rule.kind == "FORBIDDEN":
        return Tally("rejected", yes, no, 0, n)
    if rule.kind == "SELF":
        if subject is None or subject not in members or votes.get(subject) is False:
            return Tally("rejected", yes, no, 1, n)
        return Tally("passed" if votes.get(subject) else "pending", yes, no, 1, n)
    need = rule.needed(n)
    assert need is not None  # every counted kind has a threshold
    if yes >= need:
        return Tally("passed", yes, no, need, n)
    if yes + (n - yes - no) < need:  # even every silent organisation cannot carry it
        return Tally("rejected", yes, no, need, n)
    return Tally("pending", yes, no, need, n)


# -- endorsements (offline path) ------------------------------------------------------------
ENDORSEMENT_DOMAIN = b"consortium/gov-endorsement/v1\x00"


def endorsement_message(chain_id: str, action_bytes: bytes, config_seq: int, expiry: int) -> bytes:
    """The exact bytes an offline endorsement signs: a domain tag, the chain id (length
    prefixed), SHA-256 of the serialised action, the configuration sequence it was made
    against and its expiry height. Another chain, another action or a later configuration
    gives other bytes, so an endorsement cannot be replayed there."""
    cid = chain_id.encode()
    return (
        ENDORSEMENT_DOMAIN
        + struct.pack(">H", len(cid))
        + cid
        + sha256(action_bytes)
        + _U64.pack(config_seq)
        + _U64.pack(expiry)
    )


# -- proposals ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CastVote:
    organization: str
    approve: bool
    signer: bytes
    height: int


@dataclass(frozen=True, slots=True)
class Proposal:
    id: int
    proposer: str  # organisation
    proposer_key: bytes
    action: str  # action name
    action_bytes: bytes  # the serialised action exactly as proposed (what endorsements sign)
    action_json: str  # the decoded action, ledger-native (encode_action), what a vote runs
    subject: str | None  # the organisation the action concerns (SELF), if any
    created: int  # height of the block that opened it
    expiry: int  # EXPIRED at this height
    orgs_version: int
    policy_version: int
    rule: str
    members: tuple[str, ...]  # member organisations when it opened
    votes: tuple[CastVote, ...] = ()
    state: str = PENDING
    reason: str = ""
    closed: int = 0  # height of the terminal transition
    offline: bool = False  # made by SubmitEndorsed
    summary: str = ""

    def vote_map(self) -> dict[str, bool]:
        return {v.organization: v.approve for v in self.votes}

    def tally(self) -> Tally:
        return tally(parse_rule(self.rule), self.members, self.subject, self.vote_map())

    def with_vote(self, v: CastVote) -> Proposal:
        return replace(self, votes=(*self.votes, v))

    def close(self, state: str, height: int, reason: str = "") -> Proposal:
        return replace(self, state=state, closed=height, reason=reason)

    def status_line(self) -> str:
        t = self.tally()
        line = f"proposal {self.id} {self.state} ({t.describe()}, {self.rule})"
        return f"{line}: {self.reason}" if self.reason else line

    def encode(self) -> bytes:
        d = {
            "id": self.id,
            "proposer": self.proposer,
            "proposer_key": self.proposer_key.hex(),
            "action": self.action,
            "action_bytes": self.action_bytes.hex(),
            "action_json": self.action_json,
            "subject": self.subject,
            "created": self.created,
            "expiry": self.expiry,
            "orgs_version": self.orgs_version,
            "policy_version": self.policy_version,
            "rule": self.rule,
            "members": list(self.members),
            "votes": [[v.organization, v.approve, v.signer.hex(), v.height] for v in self.votes],
            "state": self.state,
            "reason": self.reason,
            "closed": self.closed,
            "offline": self.offline,
            "summary": self.summary,
        }
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Proposal:
        """Decodes a record this module wrote (our own state: a failure is an invariant
        break, and json/KeyError propagate to the caller, which raises InvariantError)."""
        d = json.loads(raw)
        return cls(
            id=int(d["id"]),
            proposer=str(d["proposer"]),
            proposer_key=bytes.fromhex(d["proposer_key"]),
            action=str(d["action"]),
            action_bytes=bytes.fromhex(d["action_bytes"]),
            action_json=str(d["action_json"]),
            subject=None if d["subject"] is None else str(d["subject"]),
            created=int(d["created"]),
            expiry=int(d["expiry"]),
            orgs_version=int(d["orgs_version"]),
            policy_version=int(d["policy_version"]),
            rule=str(d["rule"]),
            members=tuple(str(m) for m in d["members"]),
            votes=tuple(
                CastVote(str(o), bool(a), bytes.fromhex(s), int(h)) for o, a, s, h in d["votes"]
            ),
            state=str(d["state"]),
            reason=str(d["reason"]),
            closed=int(d["closed"]),
            offline=bool(d["offline"]),
            summary=str(d["summary"]),
        )


_ACTION_TYPES: dict[str, type] = {name: t for t, name in ACTION_NAMES.items()}


def encode_action(action: GovAction) -> str:
    """Ledger-native canonical JSON of an action (bytes as hex), kept in the proposal
    record so that executing it needs no protobuf in the ledger."""
    d: dict[str, object] = {"type": ACTION_NAMES[type(action)]}
    for f in fields(action):
        v = getattr(action, f.name)
        if isinstance(v, bytes):
            d[f.name] = v.hex()
        elif isinstance(v, tuple):
            d[f.name] = [x.hex() for x in v]
        else:
            d[f.name] = v
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def decode_action(text: str) -> GovAction:
    d = json.loads(text)
    cls = _ACTION_TYPES[d["type"]]
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        v = d[f.name]
        ann = str(f.type)
        if ann == "bytes":
            kwargs[f.name] = bytes.fromhex(v)
        elif ann.startswith("tuple"):
            kwargs[f.name] = tuple(bytes.fromhex(x) for x in v)
        else:
            kwargs[f.name] = str(v)
    action: GovAction = cls(**kwargs)
    return action


def summarize(action: GovAction) -> str:
    """One human line for an action (proposal lists, receipts)."""
    if isinstance(action, AddOrganization):
        return f"add organisation {action.name} ({len(action.admins)} admin keys)"
    if isinstance(action, SetOrganizationCA):
        return f"set the CA of {action.name}"
    if isinstance(action, AddValidator):
        return f"add validator {action.node_id.hex()[:16]} of {action.organization}"
    if isinstance(action, RemoveValidator):
        return f"remove validator {action.node_id.hex()[:16]}"
    if isinstance(action, ReplaceValidator):
        return f"replace validator {action.old.hex()[:16]} by {action.new.hex()[:16]}"
    if isinstance(action, SetParam):
        return f"set {action.name} = {action.value}"
    if isinstance(action, AddMember):
        return f"vouch for {action.key.hex()[:16]} as {action.organization}"
    if isinstance(action, RemoveMember):
        return f"remove member {action.key.hex()[:16]}"
    if isinstance(action, SetAdmins):
        return f"set the {len(action.admins)} admin keys of {action.organization}"
    if isinstance(action, DeployContract | UpgradeContract):
        verb = "deploy" if isinstance(action, DeployContract) else "upgrade"
        return f"{verb} contract {action.name} (code {sha256(action.code).hex()[:16]})"
    return f"set the policy of {action.action} to {action.rule}"
