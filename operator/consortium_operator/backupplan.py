"""Backups and restores of a consortium, decided by pure functions: which nodes the scheduled
backup may export from, what the backup runs observed mean for status (the last backup's
name, height, time and size; conditions BackupFailed and BackupStale), and which
organisations' restores were refused (condition RestoreFailed; their pods are held at 0
replicas so that a refused restore is not retried in a crash loop).

Who calls it: backups.py (the backup phase of a reconcile pass: observe, render, apply,
status). Pure: no I/O, no clock — times are unix seconds handed in.

Invariants:
  * a backup never loads the last ready node while others are down: with more than one node
    desired, at least two must be ready and in sync before any is listed as a source;
  * sources are listed in a stable order (followers first, then by name), so the rendered
    CronJob changes only when the set of eligible nodes or the leader changes;
  * a restore refusal is remembered in status (`status.restore`) for the restore source it
    concerns and forgotten when that source changes: the cluster is the only memory."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import ConsortiumSpec, Observed

RESTORE_CONDITION = "RestoreFailed"


@dataclass(frozen=True, slots=True)
class BackupRun:
    """One finished backup pod (a run of the CronJob's Job), from its termination message
    (the JSON line `consortium backup create --report` writes)."""

    pod: str
    finished: int  # unix seconds
    succeeded: bool
    name: str = ""
    height: int = 0
    bytes: int = 0
    created: int = 0
    source: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class RestoreRefusal:
    """A node pod whose restore init step refused the backup."""

    pod: str
    org: str
    message: str


def parse_report(message: str) -> dict[str, Any]:
    """The JSON object of a termination message; {} when there is none or it is not JSON."""
    try:
        doc = json.loads(message.strip().splitlines()[-1]) if message.strip() else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def run_of(pod: str, finished: int, exit_code: int, message: str) -> BackupRun:
    """A BackupRun from a terminated backup container."""
    doc = parse_report(message)
    if exit_code == 0 and "height" in doc:
        return BackupRun(
            pod,
            finished,
            True,
            name=str(doc.get("name", "")),
            height=_int(doc.get("height")),
            bytes=_int(doc.get("bytes")),
            created=_int(doc.get("created")) or finished,
            source=str(doc.get("source", "")),
        )
    error = str(doc.get("error") or message.strip() or f"exit code {exit_code}")
    return BackupRun(pod, finished, False, error=error[:500])


def _int(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


@dataclass(frozen=True, slots=True)
class Sources:
    """The nodes a backup may export from, in preference order; empty with `why`."""

    pods: tuple[str, ...]
    why: str = ""


def sources(spec: ConsortiumSpec, o: Observed, max_lag: int) -> Sources:
    """Ready, in-sync node pods to export from. None while fewer than two are ready and
    others are desired: the last ready node is never loaded with an export."""
    height = o.chain_height()
    fit = sorted(
        p
        for p, n in o.nodes.items()
        if (pod := o.pods.get(p)) is not None
        and pod.ready
        and n.sync_state == "synced"
        and n.height + max_lag >= height
    )
    desired = max(spec.total_validators, len(o.pods))
    if not fit:
        return Sources((), "no node is ready and in sync")
    if len(fit) == 1 and desired > 1:
        return Sources(
            (),
            f"only {fit[0]} is ready and in sync ({desired - 1} of {desired} nodes are not): "
            "the last ready node is not loaded with a backup",
        )
    leaders = {n.leader for n in o.nodes.values() if n.leader}
    return Sources(tuple(sorted(fit, key=lambda p: (o.node_keys.get(p) in leaders, p))))


@dataclass(frozen=True, slots=True)
class Condition:
    status: str
    reason: str
    message: str


def backup_status(
    spec: ConsortiumSpec,
    runs: Sequence[BackupRun],
    previous: Mapping[str, Any] | None,
    src: Sources,
    now: int,
    since: int,
) -> tuple[dict[str, Any], dict[str, Condition]]:
    """status.backup and the backup conditions. `previous`: the status.backup written before
    (the last success survives the Jobs' history limits); `since`: when backups were first
    asked for (the Consortium's creation), the start of the staleness clock."""
    b = spec.backup
    assert b is not None, "only with spec.backup"
    prev = dict(previous or {})
    done = sorted((r for r in runs if r.succeeded), key=lambda r: (r.finished, r.pod))
    failed = sorted((r for r in runs if not r.succeeded), key=lambda r: (r.finished, r.pod))
    last_ok = done[-1] if done else None
    out: dict[str, Any] = {
        "claimName": b.claim_name,
        "schedule": b.schedule,
        "suspended": b.suspend or not src.pods,
        "sources": list(src.pods),
    }
    if last_ok is not None and last_ok.finished >= _int(prev.get("lastTimeUnix")):
        out.update(
            lastName=last_ok.name,
            lastHeight=last_ok.height,
            lastBytes=last_ok.bytes,
            lastTimeUnix=last_ok.finished,
            lastSource=last_ok.source,
        )
    else:
        for k in ("lastName", "lastHeight", "lastBytes", "lastTimeUnix", "lastSource"):
            if k in prev:
                out[k] = prev[k]
    last_time = _int(out.get("lastTimeUnix"))
    newest_failure = failed[-1] if failed and failed[-1].finished > last_time else None
    if newest_failure is not None:
        out["lastError"] = newest_failure.error
    conds: dict[str, Condition] = {}
    if newest_failure is not None:
        conds["BackupFailed"] = Condition(
            "True", "BackupFailed", f"backup {newest_failure.pod} failed: {newest_failure.error}"
        )
    elif last_time:
        conds["BackupFailed"] = Condition(
            "False", "BackupSucceeded", f"last backup {out.get('lastName')} succeeded"
        )
    else:
        conds["BackupFailed"] = Condition("False", "NoBackupYet", "no backup has run yet")
    limit = b.stale_after_minutes * 60
    age = now - (last_time or since)
    if b.suspend:
        conds["BackupStale"] = Condition("False", "Suspended", "spec.backup.suspend is true")
    elif age > limit:
        what = (
            f"the last backup is {age // 60} minutes old"
            if last_time
            else (f"no backup in the {age // 60} minutes since backups were asked for")
        )
        why = f" ({src.why})" if src.why else ""
        conds["BackupStale"] = Condition(
            "True", "BackupStale", f"{what} (limit {b.stale_after_minutes}){why}"
        )
    elif not src.pods:
        conds["BackupStale"] = Condition("False", "NoSource", f"backups paused: {src.why}")
    else:
        conds["BackupStale"] = Condition(
            "False", "Fresh", f"within {b.stale_after_minutes} minutes"
        )
    return out, conds


def restore_key(spec: ConsortiumSpec, org: str) -> str:
    """`claim/backup` of the organisation's restore source, "" when it has none."""
    o = spec.org(org)
    r = spec.restore_source(o) if o is not None else None
    return f"{r.claim_name}/{r.backup}" if r is not None else ""


def refused_orgs(
    spec: ConsortiumSpec,
    refusals: Sequence[RestoreRefusal],
    previous: Mapping[str, Any] | None,
) -> dict[str, dict[str, str]]:
    """Organisation -> {source, pod, message} of every refused restore still in force: seen
    now, or remembered in status.restore.refused for the same source (its pods are gone once
    held at 0 replicas, so the refusal itself is the only trace)."""
    out: dict[str, dict[str, str]] = {}
    remembered = (previous or {}).get("refused") or []
    for r in remembered if isinstance(remembered, list) else []:
        if not isinstance(r, Mapping):
            continue
        org = str(r.get("organization", ""))
        if r.get("source") and r.get("source") == restore_key(spec, org):
            out[org] = {k: str(r.get(k, "")) for k in ("source", "pod", "message")}
    for x in refusals:
        key = restore_key(spec, x.org)
        if key:
            out[x.org] = {"source": key, "pod": x.pod, "message": x.message}
    return out


def holds(
    refused: Mapping[str, Mapping[str, str]],
    previous: Mapping[str, Any] | None,
    planned: Mapping[str, int],
    desired: Mapping[str, int],
) -> tuple[dict[str, int], dict[str, int]]:
    """(held, released): organisation -> the replicas it runs once released, for each one
    held at 0 now (remembered from status.restore.refused, else what was planned, else —
    planned 0: held already, and the status read was older than the hold — its validators
    in the spec), and organisation -> replicas to run again for each one held before and
    refused no longer. The count must be remembered: the planner keeps a StatefulSet's
    replicas as observed."""
    remembered: dict[str, int] = {}
    entries = (previous or {}).get("refused") or []
    for r in entries if isinstance(entries, list) else []:
        if isinstance(r, Mapping) and _int(r.get("replicas")) > 0:
            remembered[str(r.get("organization", ""))] = _int(r.get("replicas"))
    held = {
        org: remembered.get(org) or planned.get(org, 0) or desired.get(org, 0) for org in refused
    }
    released = {org: n for org, n in remembered.items() if org not in refused}
    return held, released


def refused_entries(
    refused: Mapping[str, Mapping[str, str]], held: Mapping[str, int]
) -> list[dict[str, Any]]:
    """status.restore.refused: one entry per organisation, by name, with the replicas it
    runs again once released."""
    return [
        {"organization": org, **refused[org], "replicas": held.get(org, 0)}
        for org in sorted(refused)
    ]


def restore_condition(
    spec: ConsortiumSpec, refused: Mapping[str, Mapping[str, str]]
) -> Condition | None:
    """RestoreFailed while any organisation has a restore source; None without any."""
    if not any(spec.restore_source(o) is not None for o in spec.organizations):
        return None
    if refused:
        parts = [
            f"{org}: {r['message']} ({r['pod']}, {r['source']})"
            for org, r in sorted(refused.items())
        ]
        return Condition(
            "True",
            "RestoreRefused",
            "; ".join(parts) + " — its pods are stopped; fix or change restoreFrom",
        )
    return Condition("False", "RestoreAccepted", "no restore was refused")


def conditions(
    previous: Sequence[Mapping[str, Any]],
    mine: Mapping[str, Condition],
    now_iso: str,
    generation: int,
) -> list[dict[str, Any]]:
    """The condition entries for `mine`, keeping lastTransitionTime while a status holds."""
    prev = {c.get("type"): c for c in previous}
    out = []
    for t, c in mine.items():
        old = prev.get(t)
        ltt = old.get("lastTransitionTime") if old and old.get("status") == c.status else None
        out.append(
            {
                "type": t,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": ltt or now_iso,
                "observedGeneration": generation,
            }
        )
    return out
