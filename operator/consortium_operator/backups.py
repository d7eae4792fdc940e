"""The backup and restore phase of a reconcile pass (spec.backup, restoreFrom), called by
reconcile.py at four points of the pass:

- `observe` (after the world is observed): the finished backup pods and refused restores
  (kube), read into a `View` with the pure decisions of backupplan.py;
- `require_chain` and `hold_refused` (after planning): a Consortium restored from a backup
  waits for the chain's own genesis (never writes a new one); an organisation whose restore
  was refused gets 0 replicas, so its pods stop instead of crash-looping on the refusal;
- `apply` (after the workloads): the CronJob rendered and applied, or deleted when
  spec.backup is gone;
- `extend_status` (before status is written): status.backup, status.restore and the
  conditions BackupFailed, BackupStale, RestoreFailed; the operator's Prometheus gauges
  consortium_backup_last_{height,timestamp_seconds,bytes} and consortium_backup_failed.

Design (docs/ARCHITECTURE.md, "Backups"): the node's volume is ReadWriteOnce, so the backup
pod never mounts it; it asks a node over gRPC (ExportBackup), verifies what it got, and
writes to the destination claim. The operator chooses which nodes it may ask."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from . import backupplan, plan
from .backupplan import BackupRun, RestoreRefusal, Sources
from .plan import OrgTarget

if TYPE_CHECKING:
    from .reconcile import Pass

_LABELS = ["namespace", "consortium"]
LAST_HEIGHT = Gauge(
    "consortium_backup_last_height", "Height of the last successful backup", _LABELS
)
LAST_TIME = Gauge(
    "consortium_backup_last_timestamp_seconds",
    "Finish time (unix seconds) of the last successful backup",
    _LABELS,
)
LAST_BYTES = Gauge("consortium_backup_last_bytes", "Size of the last successful backup", _LABELS)
FAILED = Gauge(
    "consortium_backup_failed",
    "1 while the newest backup run failed (condition BackupFailed), else 0",
    _LABELS,
)
STALE = Gauge(
    "consortium_backup_stale",
    "1 while the last successful backup is older than spec.backup.staleAfterMinutes",
    _LABELS,
)


@dataclass
class View:
    """What this pass knows of backups and restores."""

    runs: list[BackupRun] = field(default_factory=list)
    refusals: list[RestoreRefusal] = field(default_factory=list)
    sources: Sources = field(default_factory=lambda: Sources(()))
    refused: dict[str, dict[str, str]] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # org -> replicas once released


async def observe(p: Pass) -> View:
    spec = p.desired
    wants_restore = any(spec.restore_source(o) is not None for o in spec.organizations)
    if spec.backup is None and not wants_restore:
        return View()
    orgs = tuple(o.name for o in spec.organizations)
    runs, refusals = await p.env.kube.observe_backups(p.owner.namespace, p.names, orgs)
    # the job writes into <consortium>/ of the claim: names as restoreFrom.backup takes them
    runs = [
        dataclasses.replace(r, name=f"{p.names.consortium}/{r.name}") if r.name else r for r in runs
    ]
    src = backupplan.sources(spec, p.observed, p.env.settings.max_lag)
    before = p.subject.status.get("restore")
    refused = backupplan.refused_orgs(spec, refusals, before)
    known = backupplan.refused_orgs(spec, [], before)
    for org, r in refused.items():
        if known.get(org) != r:  # an event once per refusal, not every pass
            p.events.warn("RestoreRefused", f"{org}: {r['message']} ({r['pod']})")
    return View(runs, refusals, src, refused)


def require_chain(p: Pass) -> None:
    """A Consortium restored from a backup (spec.restoreFrom) needs the chain's own genesis and
    keys — re-applied from the key backup (README, "Backup and restore in the cluster") —
    never a new genesis: the restore would refuse it as another chain, and new node keys are
    not the chain's validators. Until the genesis ConfigMap is there, the pass is Blocked."""
    if p.desired.restore_from is None or p.observed.has_genesis:
        return
    p.step = plan.Step(
        plan.Blocked(
            "RestoreNeedsGenesis",
            f"restoreFrom: the chain's genesis ConfigMap {p.names.genesis_configmap} is "
            "missing; apply it and the key Secrets from the key backup (a new genesis would "
            "be another chain)",
        ),
        phase="Degraded",
    )


def hold_refused(p: Pass, view: View) -> None:
    """Organisations with a refused restore run no pods (targets replicas 0) until their
    restore source changes (the refusal and the replicas to come back to stay in
    status.restore meanwhile); one released runs its remembered replicas again."""
    step = p.step
    if step is None or step.targets is None:
        return
    planned = {org: t.replicas for org, t in step.targets.items()}
    desired = {o.name: o.validators for o in p.desired.organizations}
    held, released = backupplan.holds(
        view.refused, p.subject.status.get("restore"), planned, desired
    )
    view.held = held
    if not held and not released:
        return
    targets = dict(step.targets)
    for org, n in released.items():
        if org in targets and targets[org].replicas == 0:
            targets[org] = OrgTarget(replicas=n, partition=0)
            p.events.info("RestoreReleased", f"{org}: restoreFrom changed, {n} pods again")
    for org in held:
        if org in targets:
            targets[org] = OrgTarget(replicas=0, partition=0)
    p.step = dataclasses.replace(step, targets=targets)


async def apply(p: Pass, view: View) -> None:
    spec, kube = p.desired, p.env.kube
    if spec.backup is None:
        if not p.subject.status.get("backup"):
            return  # never had backups (status.backup goes with the CronJob): nothing to delete
        if await kube.delete("CronJob", p.owner.namespace, p.names.backup_cronjob):
            p.events.info("BackupsStopped", f"CronJob {p.names.backup_cronjob} deleted")
        return
    if not p.observed.has_genesis:
        return  # nothing to back up before the chain exists
    await kube.apply([p.renderer.backup_cronjob(spec, view.sources.pods)])


def extend_status(p: Pass, view: View, new: dict[str, Any]) -> dict[str, Any]:
    """`new` (status.build's) with the backup and restore sections and conditions."""
    spec = p.spec
    if spec is None:
        return new
    now = p.env.clock()
    now_iso, now_unix = now.strftime("%Y-%m-%dT%H:%M:%SZ"), int(now.timestamp())
    mine: dict[str, backupplan.Condition] = {}
    labels = (p.owner.namespace, p.owner.name)
    if spec.backup is not None:
        section, conds = backupplan.backup_status(
            spec,
            view.runs,
            p.subject.status.get("backup"),
            view.sources,
            now_unix,
            p.subject.creation_ms() // 1000,
        )
        new["backup"] = section
        mine.update(conds)
        if section.get("lastTimeUnix"):
            LAST_HEIGHT.labels(*labels).set(int(section.get("lastHeight", 0)))
            LAST_TIME.labels(*labels).set(int(section["lastTimeUnix"]))
            LAST_BYTES.labels(*labels).set(int(section.get("lastBytes", 0)))
        FAILED.labels(*labels).set(1 if conds["BackupFailed"].status == "True" else 0)
        STALE.labels(*labels).set(1 if conds["BackupStale"].status == "True" else 0)
    elif p.subject.status.get("backup"):
        new["backup"] = None  # (merge patch: removes the section; the CronJob is deleted)
    restore = backupplan.restore_condition(spec, view.refused)
    if restore is not None:
        mine[backupplan.RESTORE_CONDITION] = restore
        new["restore"] = {"refused": backupplan.refused_entries(view.refused, view.held)}
    elif p.subject.status.get("restore"):
        new["restore"] = None
    if mine:
        current = p.subject.status.get("conditions") or []
        new["conditions"] = [
            *new.get("conditions", []),
            *backupplan.conditions(current, mine, now_iso, p.subject.generation),
        ]
    return new
