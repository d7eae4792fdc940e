"""Pure: the `status` of a Consortium from (desired, observed, planned step).

Made for `kubectl wait --for=condition=Ready consortium/NAME`: conditions GenesisReady, Ready,
Progressing and Degraded (reasons CamelCase, messages name nodes), observedGeneration, phase,
height, leader, ready validators, per-node entries and the client endpoint. A condition's
lastTransitionTime only moves when its status changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import CLIENT_PORT, ConsortiumSpec, Names, Observed
from .plan import (
    AddOrganization,
    AddValidator,
    Blocked,
    Converged,
    CreateAdminKey,
    CreateNodeKeys,
    RemoveValidator,
    Step,
    Wait,
    WriteGenesis,
)

CONDITION_TYPES = ("GenesisReady", "Ready", "Progressing", "Degraded")
BEHIND_FACTOR = 10  # a node more than max_lag * BEHIND_FACTOR blocks behind is Degraded


def _reason(step: Step) -> str:
    a = step.action
    if isinstance(a, Wait | Blocked):
        return a.reason
    return {
        CreateAdminKey: "CreatingKeys",
        CreateNodeKeys: "CreatingKeys",
        WriteGenesis: "WritingGenesis",
        AddValidator: "AddingValidator",
        RemoveValidator: "RemovingValidator",
        AddOrganization: "AdmittingOrganization",
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
        reason, message = _reason(step), str(a)
        if isinstance(a, Converged):
            summary = f"{len(live)}/{len(vset)} validators ready at height {height}"
            conds["Ready"] = ("True", "ChainReady", summary)
            conds["Progressing"] = ("False", "Converged", summary)
            message = summary
        else:
            conds["Ready"] = ("False", reason, message)
            conds["Progressing"] = (
                ("False", reason, message) if isinstance(a, Blocked) else ("True", reason, message)
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

    prev = {c.get("type"): c for c in previous}
    conditions = []
    for t in CONDITION_TYPES:
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
    }
    on_chain = observed.chain_organizations()
    if on_chain is not None:  # unknown while no node answers: the last written value stays
        out["organizations"] = sorted(on_chain)
    return out
