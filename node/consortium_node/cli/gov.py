"""`consortium gov`: governance by organisations from the command line — propose a
configuration change, vote, withdraw, list and show proposals, and the offline path (sign a
detached endorsement file, submit several organisations' endorsements in one transaction).

Thin: the rules live on chain (ledger/governance.py); this module builds the payloads with
consortium_node.client, submits them signed by `--key` (an organisation's admin key), waits
for the commit by default and prints the proposal's status from the receipt. Every refusal is
one line naming the problem as the chain words it: "not an admin", "already voted",
"expired", "unknown proposal", "policy not met". Registered by cli/app.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from consortium_api.v1 import types_pb2

from consortium_node.client.gov import EndorsementFile, gov_action
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.client.tx import KEY_LEN, MAX_UINT64, Payload
from consortium_node.ledger.governance import endorsement_message, summarize
from consortium_node.transport.codec import decode_gov_action

from .common import (
    DEFAULT_TIMEOUT,
    Connection,
    DataDirOpt,
    EndpointOpt,
    JsonOpt,
    KeyOpt,
    NodeOpt,
    TimeoutOpt,
    console,
    fail,
    hex_arg,
    load_signer,
    open_client,
    print_json,
    read_command,
    register_payload_command,
)

app = typer.Typer(
    help="Governance by organisations: proposals, votes, offline endorsements.",
    no_args_is_help=True,
)
propose_app = typer.Typer(
    help="Propose a configuration change (your organisation votes yes).", no_args_is_help=True
)
sign_app = typer.Typer(
    help="Offline path: sign a detached endorsement file of a configuration change.",
    no_args_is_help=True,
)
app.add_typer(propose_app, name="propose")
app.add_typer(sign_app, name="sign")

DEFAULT_TTL = 100
STATE_NAMES: dict[int, str] = {
    int(v): k.removeprefix("PROPOSAL_STATE_") for k, v in types_pb2.ProposalState.items() if v
}

NoWaitOpt = Annotated[
    bool, typer.Option("--no-wait", help="Return once admitted instead of waiting for the commit.")
]
WaitTimeoutOpt = Annotated[
    float, typer.Option("--wait-timeout", min=0.1, help="How long to wait for the commit (s).")
]
TtlOpt = Annotated[
    int,
    typer.Option("--ttl", min=1, max=1_000_000, help="Blocks until the proposal expires."),
]

# options every submitting command takes (name, annotation, default)
_SUBMIT_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("key", KeyOpt, None),
    ("no_wait", NoWaitOpt, False),
    ("wait_timeout", WaitTimeoutOpt, 30.0),
    ("json_", JsonOpt, False),
    ("endpoint", EndpointOpt, None),
    ("data_dir", DataDirOpt, None),
    ("node", NodeOpt, None),
    ("timeout", TimeoutOpt, DEFAULT_TIMEOUT),
)


# --------------------------------------------------------------------------- output


def state_name(state: int) -> str:
    return STATE_NAMES.get(state, "UNKNOWN")


def describe(p: types_pb2.Proposal) -> str:
    """One line: id, state, what, tally and what it waits for."""
    line = (
        f"proposal {p.id} {state_name(p.state)}: {p.summary} — "
        f"{p.yes}/{len(p.members)} yes, {p.no} no, need {p.needed} ({p.policy})"
    )
    if p.state == types_pb2.PROPOSAL_STATE_PENDING:
        return f"{line}; expires at height {p.expiry_height}"
    return f"{line}; {p.reason}" if p.reason else line


def proposal_dict(p: types_pb2.Proposal) -> dict[str, Any]:
    return {
        "id": p.id,
        "state": state_name(p.state),
        "reason": p.reason,
        "action": p.action,
        "summary": p.summary,
        "proposer": p.proposer,
        "subject": p.subject or None,
        "policy": p.policy,
        "members": list(p.members),
        "yes": p.yes,
        "no": p.no,
        "needed": p.needed,
        "created_height": p.created_height,
        "expiry_height": p.expiry_height,
        "closed_height": p.closed_height,
        "offline": p.offline,
        "votes": [
            {
                "organization": v.organization,
                "vote": "yes" if v.approve else "no",
                "signer": v.signer.hex(),
                "height": v.height,
            }
            for v in p.votes
        ],
    }


# --------------------------------------------------------------------------- submission


def send(
    payload: Payload,
    *,
    key: Path | None,
    no_wait: bool,
    wait_timeout: float,
    json_: bool,
    endpoint: str | None,
    data_dir: Path | None,
    node: str | None,
    timeout: float,
) -> None:
    """Sign `payload` with the key, submit, wait for the receipt and print the proposal."""
    signer = load_signer(key, data_dir)
    with open_client(endpoint, data_dir, node, timeout) as client:
        chain_id = client.status().chain_id
        tx_id, tx = signer.build_tx(chain_id, client.next_nonce(signer.public_key), payload)
        [res] = client.submit([tx])
        if isinstance(payload, (types_pb2.Vote, types_pb2.Withdraw)) and res.message.startswith(
            "unknown proposal"
        ):  # refused, so not in the mempool: once the node knows the proposal, resubmit it
            await_proposal(client, payload.proposal, min(wait_timeout, LAG_GRACE_S))
            [res] = client.submit([tx])
        if res.code != 0:
            raise fail(res.message or f"transaction refused (code {res.code})")
        if no_wait:
            _print({"tx_id": tx_id.hex(), "committed": False}, f"tx {tx_id.hex()} accepted", json_)
            return
        got = client.wait_tx(tx_id, wait_timeout)
        r = got.receipt
        if r.code != types_pb2.TX_CODE_OK:
            raise fail(r.message or "transaction failed")
        out: dict[str, Any] = {"tx_id": tx_id.hex(), "committed": True, "height": r.height}
        if r.HasField("proposal"):
            out["proposal"] = proposal_dict(r.proposal)
            _print(out, describe(r.proposal), json_)
            if r.proposal.state == types_pb2.PROPOSAL_STATE_FAILED:
                raise fail(f"proposal {r.proposal.id} FAILED: {r.proposal.reason}")
        else:
            _print(
                out, f"tx {tx_id.hex()} committed at height {r.height}: {r.message or 'OK'}", json_
            )


# How long a vote waits for a proposal this node does not know yet. A Service in front of
# several nodes may route the voter to one that is a block or two behind the node that opened
# the proposal (a kind e2e run voted "unknown proposal 1" this way); a proposal that still is
# not there after the node has applied LAG_BLOCKS more blocks and reports itself synced does
# not exist.
LAG_GRACE_S = 30.0
LAG_BLOCKS = 2
_POLL_S = 0.2


def await_proposal(client: Client, pid: int, bound: float) -> None:
    """Return once the node knows proposal `pid`; fail "unknown proposal N" with the node's
    height and newest proposal once the node, synced, has applied LAG_BLOCKS blocks beyond
    the first miss without it, or after `bound` seconds."""
    deadline = time.monotonic() + bound
    first: int | None = None
    while True:
        listed = client.list_proposals(open_only=False, limit=1)
        if listed.proposals and listed.proposals[0].id >= pid:
            return  # ids are sequential: pid exists (or existed) on this node
        st = client.status()
        if first is None:
            first = st.height
        caught_up = st.sync_state != "catching-up" and st.height >= first + LAG_BLOCKS
        if caught_up or time.monotonic() >= deadline:
            newest = listed.proposals[0].id if listed.proposals else "none"
            raise fail(
                f"unknown proposal {pid} (this node is at height {st.height}; its newest "
                f"proposal is {newest})"
            )
        time.sleep(_POLL_S)  # a bounded poll: the node exposes no wait for a proposal


def _print(obj: dict[str, Any], line: str, json_: bool) -> None:
    if json_:
        print_json(obj)
    else:
        console.print(line, markup=False)


# --------------------------------------------------------------------------- actions

AdminsOpt = Annotated[
    list[str],
    typer.Option("--admin", help="Admin key (hex Ed25519 public key); repeat for several."),
]
NodeIdArg = Annotated[str, typer.Argument(help="Validator node id: hex Ed25519 public key.")]
MemberKeyArg = Annotated[str, typer.Argument(help="Sender key: hex Ed25519 public key.")]


def _key(value: str, what: str) -> bytes:
    return hex_arg(value, what, KEY_LEN)


def _admins(values: list[str]) -> list[bytes]:
    if not values:
        raise typer.BadParameter("give at least one --admin KEY", param_hint="--admin")
    return [_key(v, "--admin") for v in values]


def _read(path: Path | None) -> bytes:
    if path is None:
        return b""
    try:
        return path.expanduser().read_bytes()
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror}") from None


def add_org(
    name: Annotated[str, typer.Argument(help="Name of the new member organisation.")],
    admin: AdminsOpt,
    ca_file: Annotated[
        Path | None, typer.Argument(help="Its CA certificate (PEM); omit without TLS.")
    ] = None,
) -> Payload:
    """Admit organisation NAME with its admin keys (and CA). Default policy: MAJORITY."""
    return types_pb2.AddOrganization(name=name, ca_cert=_read(ca_file), admins=_admins(admin))


def set_org_ca(
    name: Annotated[str, typer.Argument(help="Member organisation.")],
    ca_file: Annotated[Path, typer.Argument(help="PEM bundle of its CA certificate(s).")],
) -> Payload:
    """Replace organisation NAME's CA certificates. Default policy: SELF."""
    return types_pb2.SetOrganizationCA(name=name, ca_cert=_read(ca_file))


def add_validator(
    node_id: NodeIdArg, org: Annotated[str, typer.Argument(help="Its organisation.")]
) -> Payload:
    """Add validator NODE_ID of organisation ORG. Default policy: MAJORITY."""
    return types_pb2.AddValidator(node_id=_key(node_id, "NODE_ID"), organization=org)


def remove_validator(node_id: NodeIdArg) -> Payload:
    """Remove validator NODE_ID. Default policy: MAJORITY."""
    return types_pb2.RemoveValidator(node_id=_key(node_id, "NODE_ID"))


def replace_validator(
    old: Annotated[str, typer.Argument(help="Your organisation's lost validator (hex).")],
    new: Annotated[str, typer.Argument(help="The new validator key (hex).")],
) -> Payload:
    """Replace your organisation's validator OLD by the new key NEW. Default policy: SELF."""
    return types_pb2.ReplaceValidator(old=_key(old, "OLD"), new=_key(new, "NEW"))


def set_param(
    name: Annotated[str, typer.Argument(help="Parameter name.")],
    value: Annotated[str, typer.Argument(help="New value.")],
) -> Payload:
    """Set chain parameter NAME to VALUE. Default policy: MAJORITY."""
    return types_pb2.SetParam(name=name, value=value)


def add_member(
    member_key: MemberKeyArg, org: Annotated[str, typer.Argument(help="Vouching organisation.")]
) -> Payload:
    """Vouch for sender key MEMBER_KEY as organisation ORG. Default policy: SELF."""
    return types_pb2.AddMember(key=_key(member_key, "MEMBER_KEY"), organization=org)


def remove_member(member_key: MemberKeyArg) -> Payload:
    """Stop vouching for sender key MEMBER_KEY. Default policy: SELF."""
    return types_pb2.RemoveMember(key=_key(member_key, "MEMBER_KEY"))


def set_admins(
    org: Annotated[str, typer.Argument(help="The organisation.")], admin: AdminsOpt
) -> Payload:
    """Replace organisation ORG's admin keys. Default policy: SELF."""
    return types_pb2.SetAdmins(organization=org, admins=_admins(admin))


def set_policy(
    action: Annotated[str, typer.Argument(help="Action, e.g. add_organization, set_param.")],
    rule: Annotated[
        str, typer.Argument(help="ANY, MAJORITY, ALL, a count k, a fraction n/d, SELF, FORBIDDEN.")
    ],
) -> Payload:
    """Set the rule that governs ACTION. Default policy: MAJORITY."""
    return types_pb2.SetPolicy(action=action, rule=rule)


ACTIONS: dict[str, Callable[..., Payload]] = {
    "add-org": add_org,
    "set-org-ca": set_org_ca,
    "add-validator": add_validator,
    "remove-validator": remove_validator,
    "replace-validator": replace_validator,
    "set-param": set_param,
    "add-member": add_member,
    "remove-member": remove_member,
    "set-admins": set_admins,
    "set-policy": set_policy,
}


def _propose(action: Payload, *, ttl: int, **opts: Any) -> None:
    m = types_pb2.Propose(action=gov_action(action).SerializeToString(), ttl=ttl)
    send(m, **opts)


for _name, _build in ACTIONS.items():
    register_payload_command(
        propose_app,
        _name,
        _build,
        (("ttl", TtlOpt, DEFAULT_TTL), *_SUBMIT_OPTIONS),
        _propose,
    )


# --------------------------------------------------------------------------- votes

# proposal ids, heights and sequences are uint64 on the wire: bounded here, so 2^64 is a
# usage error and not protobuf's ValueError
ProposalArg = Annotated[int, typer.Argument(min=1, max=MAX_UINT64, help="Proposal id.")]


def vote(
    proposal: ProposalArg,
    choice: Annotated[str, typer.Argument(metavar="yes|no", help="Your organisation's vote.")],
) -> Payload:
    """Vote yes or no on PROPOSAL for your organisation (one vote per organisation)."""
    if choice.lower() not in ("yes", "no"):
        raise typer.BadParameter(f"vote must be yes or no, got {choice!r}", param_hint="yes|no")
    return types_pb2.Vote(proposal=proposal, approve=choice.lower() == "yes")


def withdraw(proposal: ProposalArg) -> Payload:
    """Withdraw PROPOSAL (only the proposer's organisation may)."""
    return types_pb2.Withdraw(proposal=proposal)


register_payload_command(app, "vote", vote, _SUBMIT_OPTIONS, send)
register_payload_command(app, "withdraw", withdraw, _SUBMIT_OPTIONS, send)


# --------------------------------------------------------------------------- queries


@read_command(app, "list")
def list_(
    conn: Connection,
    open_only: Annotated[bool, typer.Option("--open", help="Only PENDING proposals.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    json_: JsonOpt = False,
) -> None:
    """Proposals, newest first, with their state and tally."""
    with conn.open() as client:
        resp = client.list_proposals(open_only, limit)
    if json_:
        print_json({"height": resp.height, "proposals": [proposal_dict(p) for p in resp.proposals]})
        return
    if not resp.proposals:
        console.print(f"no {'open ' if open_only else ''}proposals (height {resp.height})")
    for p in resp.proposals:
        console.print(describe(p), markup=False)


@read_command(app, "show")
def show(
    conn: Connection,
    proposal: ProposalArg,
    json_: JsonOpt = False,
) -> None:
    """One proposal: its action, policy, every organisation's vote and its state."""
    with conn.open() as client:
        p = client.get_proposal(proposal)
    if json_:
        print_json(proposal_dict(p))
        return
    console.print(describe(p), markup=False)
    console.print(
        f"  action {p.action} by {p.proposer}; opened at height {p.created_height}, "
        f"expires at {p.expiry_height}{' (offline endorsements)' if p.offline else ''}",
        markup=False,
    )
    voted = {v.organization: v for v in p.votes}
    for org in p.members:
        v = voted.get(org)
        what = "—" if v is None else f"{'yes' if v.approve else 'no'} at height {v.height}"
        console.print(f"  {org}: {what}", markup=False)


@read_command(app, "policies")
def policies(
    conn: Connection,
    json_: JsonOpt = False,
) -> None:
    """The chain's governance: mode, configuration sequence, policies, organisation admins."""
    with conn.open() as client:
        g = client.governance()
    if json_:
        print_json(
            {
                "mode": g.mode,
                "config_seq": g.config_seq,
                "policies": {p.action: p.rule for p in g.policies},
                "organizations": {
                    o.organization: [a.hex() for a in o.admins] for o in g.organizations
                },
            }
        )
        return
    console.print(f"governance by {g.mode}; configuration sequence {g.config_seq}", markup=False)
    for pol in g.policies:
        console.print(
            f"  {pol.action}: {pol.rule}{'' if pol.is_default else ' (set)'}", markup=False
        )
    for o in g.organizations:
        console.print(f"  {o.organization}: {len(o.admins)} admin key(s)", markup=False)


@read_command(app, "params")
def params(
    conn: Connection,
    json_: JsonOpt = False,
) -> None:
    """The chain's parameters with their committed values (changed by `gov propose set-param`)."""
    with conn.open() as client:
        g = client.governance()
    if json_:
        print_json({"height": g.height, "params": {p.name: p.value for p in g.params}})
        return
    console.print(f"chain parameters at height {g.height}", markup=False)
    for p in g.params:
        default = " (default)" if p.is_default else ""
        console.print(f"  {p.name} = {p.value}{default}  [{p.min}..{p.max}]", markup=False)


# --------------------------------------------------------------------------- offline path

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Endorsement file to write.")]
ExpiryOpt = Annotated[
    int | None,
    typer.Option(
        "--expiry",
        min=1,
        max=MAX_UINT64,
        help="Height from which the endorsements are void (default: now + --ttl).",
    ),
]
ChainIdOpt = Annotated[
    str | None,
    typer.Option("--chain-id", help="Sign without a node: the chain id (with --config-seq)."),
]
ConfigSeqOpt = Annotated[
    int | None,
    typer.Option(
        "--config-seq",
        min=0,
        max=MAX_UINT64,
        help="Sign without a node: the configuration sequence.",
    ),
]

_SIGN_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("out", OutOpt, ...),
    ("expiry", ExpiryOpt, None),
    ("ttl", TtlOpt, DEFAULT_TTL),
    ("chain_id", ChainIdOpt, None),
    ("config_seq", ConfigSeqOpt, None),
    ("key", KeyOpt, None),
    ("endpoint", EndpointOpt, None),
    ("data_dir", DataDirOpt, None),
    ("node", NodeOpt, None),
    ("timeout", TimeoutOpt, DEFAULT_TIMEOUT),
)


def _sign_new(
    action: Payload,
    *,
    out: Path,
    expiry: int | None,
    ttl: int,
    chain_id: str | None,
    config_seq: int | None,
    key: Path | None,
    endpoint: str | None,
    data_dir: Path | None,
    node: str | None,
    timeout: float,
) -> None:
    signer = load_signer(key, data_dir)
    if chain_id is None or config_seq is None or expiry is None:
        with open_client(endpoint, data_dir, node, timeout) as client:
            chain_id, config_seq, expiry = _terms(client, chain_id, config_seq, expiry, ttl)
    raw = gov_action(action).SerializeToString()
    f = EndorsementFile(chain_id, raw, config_seq, expiry, summarize(decode_gov_action(raw)))
    _write(out, _endorse(f, signer))
    console.print(
        f"endorsed {f.summary} for {chain_id} (configuration {config_seq}, expires at height "
        f"{expiry}) -> {out}",
        markup=False,
    )


def _terms(
    client: Client, chain_id: str | None, config_seq: int | None, expiry: int | None, ttl: int
) -> tuple[str, int, int]:
    st = client.status()
    g = client.governance()
    if g.mode != "organizations":
        raise fail("this chain has single-admin governance: see 'consortium gov migrate'")
    return (
        chain_id or st.chain_id,
        g.config_seq if config_seq is None else config_seq,
        expiry if expiry is not None else st.height + ttl,
    )


def _endorse(f: EndorsementFile, signer: Signer) -> EndorsementFile:
    """`f` with `signer`'s endorsement of the bytes the chain checks."""
    return f.signed_by(signer, endorsement_message(*f.terms()))


def _write(path: Path, f: EndorsementFile) -> None:
    try:
        path.expanduser().write_text(f.to_json() + "\n")
    except OSError as e:
        raise fail(f"cannot write {path}: {e.strerror}") from None


for _name, _build in ACTIONS.items():
    register_payload_command(sign_app, _name, _build, _SIGN_OPTIONS, _sign_new)


@sign_app.command("file")
def sign_file(
    file: Annotated[Path, typer.Argument(help="An endorsement file another admin made.")],
    key: KeyOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Add your endorsement to FILE (in place): same action, chain, configuration, expiry."""
    f = _endorse(EndorsementFile.load(file), load_signer(key, data_dir))
    _write(file, f)
    console.print(f"endorsed {f.summary} ({len(f.endorsements)} endorsements) -> {file}")


def submit(
    files: Annotated[list[Path], typer.Argument(help="Endorsement files of one action.")],
) -> Payload:
    """Submit the endorsements in FILES (merged) as one transaction; the chain counts them
    by organisation with the action's policy and executes it when met."""
    merged = EndorsementFile.load(files[0])
    for path in files[1:]:
        merged = merged.merged(EndorsementFile.load(path))
    return merged.payload()


def migrate(
    admin: Annotated[
        list[str],
        typer.Option("--admin", help="ORG=KEY (hex): an admin key of a member organisation."),
    ],
) -> Payload:
    """Legacy single-admin chains: with a genesis admin key, give every organisation its
    admin keys and move the chain to governance by organisations (once, irreversibly)."""
    by_org: dict[str, list[bytes]] = {}
    for item in admin:
        org, sep, hexkey = item.partition("=")
        if not sep or not org:
            raise typer.BadParameter(f"expected ORG=KEY, got {item!r}", param_hint="--admin")
        by_org.setdefault(org, []).append(_key(hexkey, f"--admin {org}"))
    return types_pb2.MigrateGovernance(
        organizations=[
            types_pb2.OrganizationAdmins(organization=o, admins=ks) for o, ks in by_org.items()
        ]
    )


register_payload_command(app, "submit", submit, _SUBMIT_OPTIONS, send)
register_payload_command(app, "migrate", migrate, _SUBMIT_OPTIONS, send)
