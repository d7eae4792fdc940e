"""Pure: the `status` of a Consortium from (desired, observed, planned step).

Made for `kubectl wait --for=condition=Ready consortium/NAME`: conditions GenesisReady, Ready,
Progressing, Degraded and WaitingForApprovals (reasons CamelCase, messages name nodes),
observedGeneration, phase, height, leader, ready validators, per-node entries, the client
endpoint, the chain's governance mode and its open proposals (votes, approvals, who has not
voted), and per spec contract its deployed version and code hash and any open proposal. A
condition's lastTransitionTime only moves when its status changes.

Federation (spec with remote organisations): `remotePeers`, one entry per remote validator —
whether any answering node of this cluster has a live link to it, else the most recent reason
a node gives — and the informative condition PeerUnreachable (`remote_peers`,
`peer_condition`): True only for a validator no answering node has reached for
PEER_GRACE_S on every node that has a link to it (a link that flaps faster is not reported),
Unknown while no node answers. It never changes Ready, Degraded or the phase.
`proposal_events` (also pure) names what changed between the proposals of the status last
written and the ones observed now; reconcile posts them as events."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import federation
from .model import (
    CLIENT_PORT,
    ConsortiumSpec,
    ContractSpec,
    Names,
    Observed,
    PeerLinkView,
    ProposalView,
)
from .plan import (
    AddOrganization,
    AddValidator,
    AdoptGenesis,
    Blocked,
    Converged,
    CreateAdminKey,
    CreateMemberKey,
    CreateNodeKeys,
    DeployContract,
    Propose,
    RegisterMember,
    RemoveValidator,
    ReplaceValidator,
    SetParam,
    Step,
    UpgradeContract,
    Vote,
    Wait,
    WriteGenesis,
    contract_subject,
)
from .replace import Declare, Finish

# (PeerUnreachable only for a federated spec)
CONDITION_TYPES = (
    "GenesisReady",
    "Ready",
    "Progressing",
    "Degraded",
    "WaitingForApprovals",
    "PeerUnreachable",
)
BEHIND_FACTOR = 10  # a node more than max_lag * BEHIND_FACTOR blocks behind is Degraded
# A remote validator is unreachable only once every answering node's link to it has been
# down this long: a link that drops and comes back (a peer restarting) is not reported.
PEER_GRACE_S = 30.0
NO_LINK = "no node of this cluster reports a link to it"
NO_ANSWER = "no node of this cluster answers"


def _readiness(
    step: Step, ready: str, height: int, desired: ConsortiumSpec | None
) -> tuple[tuple[str, str, str], tuple[str, str, str], str]:
    """The Ready and Progressing conditions for `step` and the status message; `ready` is
    "live/validators"."""
    a = step.action
    if isinstance(a, Converged) and _awaits_first_block(desired, height):
        # Every workload is in place and every pod serves, but no block has been committed
        # yet: a chain that cannot commit is not Ready (`kubectl wait --for=condition=Ready`
        # then a write must work). A live chain commits an empty block every
        # emptyBlockIntervalMs, so height 0 means consensus has not started (peers still
        # finding each other).
        message = f"{ready} validators serving; waiting for the chain's first block"
        waiting = ("WaitingForFirstBlock", message)
        return ("False", *waiting), ("True", *waiting), message
    if isinstance(a, Converged):
        summary = f"{ready} validators ready at height {height}"
        return ("True", "ChainReady", summary), ("False", "Converged", summary), summary
    reason, message = _reason(step), str(a)
    progressing = ("False" if isinstance(a, Blocked) else "True", reason, message)
    return ("False", reason, message), progressing, message


def _awaits_first_block(desired: ConsortiumSpec | None, height: int) -> bool:
    """No block committed yet on a chain whose nodes commit empty blocks (so one is due as
    soon as consensus runs). A chain without empty blocks may rightly stay at height 0."""
    return height == 0 and desired is not None and desired.consensus.empty_block_interval_ms > 0


def _reason(step: Step) -> str:
    a = step.action
    if isinstance(a, Wait | Blocked):
        return a.reason
    return {
        CreateAdminKey: "CreatingKeys",
        CreateNodeKeys: "CreatingKeys",
        WriteGenesis: "WritingGenesis",
        AdoptGenesis: "AdoptingGenesis",
        AddValidator: "AddingValidator",
        RemoveValidator: "RemovingValidator",
        AddOrganization: "AdmittingOrganization",
        DeployContract: "DeployingContract",
        UpgradeContract: "UpgradingContract",
        Propose: "Proposing",
        CreateMemberKey: "CreatingKeys",
        RegisterMember: "RegisteringMember",
        Vote: "Voting",
        SetParam: "SettingParameter",
        ReplaceValidator: "ReplacingValidator",
        Declare: "ReplacingValidator",
        Finish: "ReplacingValidator",
        Converged: "Converged",
    }[type(a)]


def degraded_nodes(observed: Observed, max_lag: int) -> tuple[str, str] | None:
    """(reason, message) when some node crash-loops or trails the chain badly."""
    crashing = sorted(p.name for p in observed.pods.values() if p.crash_looping)
    if crashing:
        return "NodeCrashLooping", f"crash-looping: {', '.join(crashing)}"
    height = observed.chain_height()
    behind = sorted(
        name for name, n in observed.nodes.items() if n.height + max_lag * BEHIND_FACTOR < height
    )
    if behind:
        return "NodeBehind", f"behind the chain (height {height}): {', '.join(behind)}"
    return None


@dataclass(frozen=True, slots=True)
class Context:
    """Where the status goes and what it replaces: the object's names and namespace, its
    metadata.generation, the conditions it has now (a condition's lastTransitionTime only
    moves when its status changes), the time to stamp, and the lag tolerated."""

    names: Names
    namespace: str
    generation: int
    previous: Sequence[Mapping[str, Any]]
    now: str
    max_lag: int


def build(
    desired: ConsortiumSpec | None,
    observed: Observed,
    step: Step | None,
    ctx: Context,
    error: str | None = None,
) -> dict[str, Any]:
    """The status to write. `step` None with `error`: the spec is invalid (phase Failed)."""
    names, namespace, generation = ctx.names, ctx.namespace, ctx.generation
    previous, now, max_lag = ctx.previous, ctx.now, ctx.max_lag
    # before any node answers, the genesis set is the best description of the chain
    vset = dict(observed.validator_set() or observed.genesis_validators or ())
    key_to_pod = {k: p for p, k in observed.node_keys.items()}
    height = observed.chain_height()
    live = [
        p
        for p, n in observed.nodes.items()
        if observed.pods.get(p) is not None
        and observed.pods[p].ready
        and observed.node_keys.get(p) in vset
        and n.height + max_lag >= height
    ]
    leader = ""
    if observed.nodes:
        best = max(observed.nodes.values(), key=lambda n: n.height)
        leader = key_to_pod.get(best.leader, best.leader.hex()[:16] if best.leader else "")

    conds: dict[str, tuple[str, str, str]] = {}
    if observed.has_genesis:
        conds["GenesisReady"] = (
            "True",
            "GenesisWritten",
            f"genesis {observed.genesis_hash[:16]} with "
            f"{len(observed.genesis_validators or ())} validators",
        )
    else:
        conds["GenesisReady"] = (
            "False",
            _reason(step) if step else "InvalidSpec",
            str(step.action) if step else (error or ""),
        )
    degraded = degraded_nodes(observed, max_lag)
    if step is None:
        phase = "Failed"
        conds["Ready"] = ("False", "InvalidSpec", error or "invalid spec")
        conds["Progressing"] = ("False", "InvalidSpec", error or "invalid spec")
        conds["Degraded"] = ("True", "InvalidSpec", error or "invalid spec")
    else:
        phase = step.phase
        a = step.action
        conds["Ready"], conds["Progressing"], message = _readiness(
            step, f"{len(live)}/{len(vset)}", height, desired
        )
        if isinstance(a, Blocked):
            conds["Degraded"] = ("True", a.reason, a.message)
            phase = "Degraded"
        elif degraded is not None:
            conds["Degraded"] = ("True", *degraded)
            phase = "Degraded"
        else:
            conds["Degraded"] = ("False", "AsExpected", "all nodes healthy")
        error = message
    if step is not None and isinstance(step.action, Wait) and step.action.reason == _APPROVALS:
        conds[_APPROVALS] = ("True", _APPROVALS, step.action.message)
    else:
        conds[_APPROVALS] = ("False", "NotWaiting", "no proposal of the operator waits for votes")
    peers, error = _remote_section(desired, observed, conds, error)

    prev = {c.get("type"): c for c in previous}
    conditions = []
    for t in (t for t in CONDITION_TYPES if t in conds):
        st, reason, message = conds[t]
        old = prev.get(t)
        ltt = old.get("lastTransitionTime") if old and old.get("status") == st else None
        conditions.append(
            {
                "type": t,
                "status": st,
                "reason": reason,
                "message": message,
                "lastTransitionTime": ltt or now,
                "observedGeneration": generation,
            }
        )

    nodes = []
    for name in sorted(
        observed.pods, key=lambda n: (observed.pods[n].org, observed.pods[n].ordinal)
    ):
        pod = observed.pods[name]
        n = observed.nodes.get(name)
        key = observed.node_keys.get(name)
        nodes.append(
            {
                "name": name,
                "organization": pod.org,
                "ready": pod.ready,
                "validator": key in vset,
                "height": n.height if n else 0,
                "role": n.role if n else "unknown",
                "syncState": n.sync_state if n else "unknown",
                "nodeId": key.hex() if key else "",
            }
        )
    out: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": generation,
        "chainId": desired.chain_id if desired else "",
        "genesisHash": observed.genesis_hash,
        "height": height,
        "leader": leader,
        "validators": len(vset),
        "readyValidators": f"{len(live)}/{len(vset)}",
        "endpoint": f"{names.client_service}.{namespace}.svc:{CLIENT_PORT}",
        "message": error or "",
        "nodes": nodes,
        "conditions": conditions,
        "remotePeers": [p.entry() for p in peers],
    }
    # federation (spec.ceremony): what this cluster contributes, until the genesis exists;
    # after it, a joining organisation's (the members admit it with it)
    out["contributions"] = []
    if desired is not None:
        joining = federation.joining(desired, observed)
        out["contributions"] = [
            c
            for c in federation.contributions(desired, observed, names, namespace)
            if not observed.has_genesis or c["organization"] in joining
        ]
    on_chain = observed.chain_organizations()
    if on_chain is not None:  # unknown while no node answers: the last written value stays
        out["organizations"] = sorted(on_chain)
    if not observed.has_genesis:
        out["governance"] = ""
    else:
        out["governance"] = "organizations" if observed.org_governance else "legacy"
    if observed.proposals is not None:
        out["proposals"] = [proposal_entry(p) for p in observed.proposals if p.state == "PENDING"]
    elif not observed.org_governance:
        out["proposals"] = []  # (unknown under governance: the last written value stays)
    if desired is not None and (observed.contracts is not None or not desired.contracts):
        # (unknown while no node answers: the last written value stays)
        out["contracts"] = [contract_entry(c, observed) for c in desired.contracts]
    return out


_APPROVALS = "WaitingForApprovals"


def _remote_section(
    desired: ConsortiumSpec | None,
    observed: Observed,
    conds: dict[str, tuple[str, str, str]],
    message: str | None,
) -> tuple[tuple[RemotePeer, ...], str | None]:
    """status.remotePeers and, for a federated spec, the PeerUnreachable condition (added to
    `conds`); the status message gains the unreachable validators' names. Informative only:
    Ready is about our own nodes serving."""
    if desired is None:
        return (), message
    peers = remote_peers(desired, observed)
    if desired.federated:
        conds["PeerUnreachable"] = peer_condition(peers, observed)
        if conds["PeerUnreachable"][0] == "True" and message:
            down = ", ".join(f"{p.organization}/{p.name}" for p in peers if p.unreachable)
            message = f"{message}; remote validators unreachable: {down}"
    return peers, message


@dataclass(frozen=True, slots=True)
class RemotePeer:
    """A remote organisation's validator as this cluster's nodes see it: `connected` when any
    answering node has a live link to it; `error`, when not, the reason given by the node
    whose link changed state most recently (or why there is none); `unreachable` when some
    node answers and every answering node's link to it has been down PEER_GRACE_S or more."""

    organization: str
    name: str
    node_id: str
    address: str
    connected: bool
    error: str
    unreachable: bool

    def entry(self) -> dict[str, Any]:
        """Its entry in status.remotePeers."""
        return {
            "organization": self.organization,
            "name": self.name,
            "nodeId": self.node_id,
            "address": self.address,
            "connected": self.connected,
            "error": self.error,
        }


def remote_peers(desired: ConsortiumSpec, observed: Observed) -> tuple[RemotePeer, ...]:
    """One RemotePeer per validator of each remote organisation, in spec order."""
    links: dict[bytes, list[PeerLinkView]] = {}
    for _pod, node in sorted(observed.nodes.items()):
        for link in node.peers:
            links.setdefault(link.node_id, []).append(link)
    out = []
    for org in desired.remote:
        for v in org.remote.validators if org.remote is not None else ():
            seen = links.get(_node_id(v.node_id), [])
            connected = any(link.connected for link in seen)
            down = [link for link in seen if not link.connected]
            if connected:
                error = ""
            elif down:  # min: the first (by pod name) of the most recent changes
                error = min(down, key=lambda link: link.since_seconds).error or "link down"
            else:
                error = NO_LINK if observed.nodes else NO_ANSWER
            out.append(
                RemotePeer(
                    org.name,
                    v.name,
                    v.node_id,
                    v.address,
                    connected,
                    error,
                    bool(observed.nodes)
                    and not connected
                    and all(link.since_seconds >= PEER_GRACE_S for link in down),
                )
            )
    return tuple(out)


def _node_id(hex_id: str) -> bytes:
    try:
        return bytes.fromhex(hex_id)
    except ValueError:  # (the spec's validation refuses it; never raise out of status)
        return b""


def peer_condition(peers: Sequence[RemotePeer], observed: Observed) -> tuple[str, str, str]:
    """PeerUnreachable (status, reason, message) of a federated spec."""
    if not peers:
        return "False", "NoRemotePeers", "no remote organisation lists validators"
    if not observed.nodes:
        return "Unknown", "NoNodeAnswers", f"{NO_ANSWER}: remote validators' links unknown"
    if not any(n.peers for n in observed.nodes.values()):
        return (
            "Unknown",
            "PeerLinksUnknown",
            "no answering node reports its peer links (GetStatus.peers)",
        )
    bad = [p for p in peers if p.unreachable]
    if bad:
        listed = "; ".join(f"{p.organization}/{p.name} at {p.address}: {p.error}" for p in bad)
        return (
            "True",
            "PeerUnreachable",
            f"{len(bad)} of {len(peers)} remote validators not reached for "
            f"{PEER_GRACE_S:.0f} s or more: {listed}",
        )
    pending = [f"{p.organization}/{p.name}" for p in peers if not p.connected]
    if pending:
        return (
            "False",
            "PeersConnecting",
            f"not connected for less than {PEER_GRACE_S:.0f} s: {', '.join(pending)}",
        )
    return "False", "AllPeersReachable", f"all {len(peers)} remote validators connected"


def _votes(p: ProposalView) -> list[str]:
    return [f"{org}={'yes' if yes else 'no'}" for org, yes in p.votes]


def proposal_entry(p: ProposalView) -> dict[str, Any]:
    """One open proposal in status.proposals."""
    return {
        "id": p.id,
        "action": p.change[0],
        "summary": p.summary,
        "proposer": p.proposer,
        "votes": _votes(p),
        "approvals": p.approvals(),
        "waitingFor": list(p.waiting_for()),
        "expiryHeight": p.expiry_height,
    }


def contract_entry(c: ContractSpec, observed: Observed) -> dict[str, Any]:
    """One spec contract in status.contracts: what the chain runs (deployed version and code
    hash), the module the spec points at, and where getting there stands — Deployed (the
    chain runs the module), Proposed (a proposal for it is open: approvals and who has not
    voted), ModuleChanged (the module differs but the spec's version is not above the
    deployed one), NotDeployed (no proposal yet) or SourceMissing (the ConfigMap or key
    cannot be read)."""
    on_chain = (observed.contracts or {}).get(c.name)
    module = observed.contract_modules.get(c.name)
    entry: dict[str, Any] = {
        "name": c.name,
        "version": on_chain.version if on_chain else 0,
        "codeHash": on_chain.code_hash.hex() if on_chain else "",
        "desiredVersion": c.version,
    }
    if not isinstance(module, bytes):
        entry.update(state="SourceMissing", message=module or f"ConfigMap {c.config_map} not read")
        return entry
    code_hash = hashlib.sha256(module).digest()
    entry["moduleHash"] = code_hash.hex()
    if on_chain is not None and on_chain.code_hash == code_hash:
        entry["state"] = "Deployed"
        return entry
    subject = contract_subject(c.name, code_hash)
    open_ = next(
        (
            p
            for p in observed.proposals or ()
            if p.state == "PENDING"
            and p.change in (("deploy_contract", subject), ("upgrade_contract", subject))
        ),
        None,
    )
    if open_ is not None:
        entry.update(
            state="Proposed",
            proposal=open_.id,
            approvals=open_.approvals(),
            waitingFor=list(open_.waiting_for()),
        )
    elif on_chain is not None and c.version <= on_chain.version:
        entry.update(
            state="ModuleChanged",
            message=f"the module differs from version {on_chain.version}'s code: raise "
            f"version above {on_chain.version} to propose the upgrade",
        )
    else:
        entry["state"] = "NotDeployed" if on_chain is None else "UpgradePending"
    return entry


def proposal_events(
    previous: Sequence[Mapping[str, Any]] | None, observed: Observed
) -> list[tuple[str, str]]:
    """(reason, message) for every change between the open proposals of the status last
    written (`previous`) and the proposals observed now: ProposalOpened, ProposalVoted (its
    votes changed), ProposalClosed (no longer open: its terminal state). Nothing while the
    proposals are unknown (no node answered)."""
    if observed.proposals is None:
        return []
    before = {int(e.get("id", -1)): e for e in previous or () if isinstance(e, Mapping)}
    now = {p.id: p for p in observed.proposals}
    out: list[tuple[str, str]] = []
    for p in sorted(observed.proposals, key=lambda p: p.id):
        if p.state != "PENDING":
            continue
        if p.id not in before:
            out.append(
                (
                    "ProposalOpened",
                    f"proposal {p.id} by {p.proposer}: {p.summary} ({p.approvals()})",
                )
            )
        elif list(before[p.id].get("votes") or []) != _votes(p):
            out.append(
                (
                    "ProposalVoted",
                    f"proposal {p.id}: {', '.join(_votes(p))} ({p.approvals()})",
                )
            )
    for pid in sorted(before):
        closed = now.get(pid)
        if closed is None:
            out.append(("ProposalClosed", f"proposal {pid} is no longer open"))
        elif closed.state != "PENDING":
            why = f": {closed.reason}" if closed.reason else ""
            out.append(("ProposalClosed", f"proposal {pid} {closed.state}: {closed.summary}{why}"))
    return out
