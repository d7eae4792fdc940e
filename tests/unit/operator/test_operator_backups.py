"""The operator's backup and restore decisions (backupplan.py, pure) and what render makes of
them (the CronJob, the restore init step): sources, status, conditions, refusals."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml
from consortium_operator import backupplan
from consortium_operator.backupplan import BackupRun, RestoreRefusal, Sources
from consortium_operator.model import ConsortiumSpec, Names, NodeStatus, Observed, Owner, PodState
from consortium_operator.plan import OrgTarget
from consortium_operator.render import Renderer
from consortium_operator.settings import Settings

from tests.unit.operator.test_operator_crd import CRD_FILE, _fits

pytestmark = pytest.mark.unit

N = Names("c")
OWNER = Owner("c", "ns", "0b5c2b8e-0000-4000-8000-000000000001")
BACKUP = {"schedule": "*/5 * * * *", "claimName": "backups", "retention": 3}


def spec(**extra: Any) -> ConsortiumSpec:
    body: dict[str, Any] = {
        "chainId": "x",
        "organizations": [{"name": "a", "validators": 2}, {"name": "b", "validators": 2}],
        "backup": BACKUP,
    }
    body.update(extra)
    return ConsortiumSpec.parse(body)


PODS = ["c-a-0", "c-a-1", "c-b-0", "c-b-1"]
KEYS = {p: bytes([i + 1]) * 32 for i, p in enumerate(PODS)}


def world(
    ready: set[str], heights: dict[str, int] | None = None, syncing: frozenset[str] = frozenset()
) -> Observed:
    vset = tuple((k, p.split("-")[1]) for p, k in KEYS.items())
    h = heights or {}
    return Observed(
        node_keys=KEYS,
        genesis_validators=vset,
        pods={
            p: PodState(p, p.split("-")[1], int(p[-1]), p in ready, "r", "10.0.0.1") for p in PODS
        },
        nodes={
            p: NodeStatus(
                h.get(p, 50),
                "leader" if p == "c-a-0" else "follower",
                KEYS["c-a-0"],
                vset,
                "catching-up" if p in syncing else "synced",
            )
            for p in PODS
            if p in ready
        },
    )


# --------------------------------------------------------------------------- sources


def test_sources_are_ready_in_sync_nodes_followers_first_in_a_stable_order() -> None:
    s = backupplan.sources(spec(), world(set(PODS)), 2)
    assert s.pods == ("c-a-1", "c-b-0", "c-b-1", "c-a-0") and not s.why


def test_lagging_and_catching_up_nodes_are_not_sources() -> None:
    o = world(set(PODS), heights={"c-b-0": 40}, syncing=frozenset({"c-b-1"}))
    assert backupplan.sources(spec(), o, 2).pods == ("c-a-1", "c-a-0")


def test_the_last_ready_node_is_never_loaded_while_others_are_down() -> None:
    s = backupplan.sources(spec(), world({"c-b-1"}), 2)
    assert s.pods == () and "only c-b-1 is ready" in s.why and "3 of 4" in s.why
    assert backupplan.sources(spec(), world(set()), 2) == Sources(
        (), "no node is ready and in sync"
    )
    # two ready (of four): both may be asked
    assert backupplan.sources(spec(), world({"c-a-0", "c-b-0"}), 2).pods == ("c-b-0", "c-a-0")


def test_a_single_node_consortium_backs_up_its_only_node() -> None:
    one = ConsortiumSpec.parse(
        {
            "chainId": "x",
            "consensus": {"type": "raft"},
            "organizations": [{"name": "a", "validators": 1}],
            "backup": BACKUP,
        }
    )
    o = Observed(
        node_keys={"c-a-0": KEYS["c-a-0"]},
        pods={"c-a-0": PodState("c-a-0", "a", 0, True, "r")},
        nodes={"c-a-0": NodeStatus(9, "leader", KEYS["c-a-0"], (), "synced")},
    )
    assert backupplan.sources(one, o, 2).pods == ("c-a-0",)


def test_property_a_source_is_always_ready_and_never_the_last_ready_one() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(500):
        ready = {p for p in PODS if rng.random() < 0.6}
        heights = {p: rng.randrange(45, 51) for p in PODS}
        o = world(ready, heights, frozenset(p for p in PODS if rng.random() < 0.2))
        s = backupplan.sources(spec(), o, 2)
        assert set(s.pods) <= ready, f"seed {seed}"
        assert len(s.pods) != 1, f"seed {seed}: the last ready node was listed alone"
        assert bool(s.pods) != bool(s.why), f"seed {seed}"


# --------------------------------------------------------------------------- runs


def test_a_run_is_read_from_its_termination_message() -> None:
    ok = backupplan.run_of(
        "c-backup-1-x",
        1000,
        0,
        '{"bytes":2048,"created":990,"height":41,"name":"x-20261201T030000Z-h41.tar",'
        '"source":"c-a-1.c-peers.ns.svc:7050","pruned":[]}\n',
    )
    assert ok == BackupRun(
        "c-backup-1-x", 1000, True, "x-20261201T030000Z-h41.tar", 41, 2048, 990,
        "c-a-1.c-peers.ns.svc:7050",
    )  # fmt: skip
    bad = backupplan.run_of("p", 5, 1, '{"error":"no node exported: x"}')
    assert not bad.succeeded and bad.error == "no node exported: x"
    odd = backupplan.run_of("p", 5, 137, "")
    assert not odd.succeeded and odd.error == "exit code 137"
    assert not backupplan.run_of("p", 5, 0, "not json").succeeded  # no report: not a backup


def _status(
    runs: list[BackupRun], previous: dict[str, Any] | None = None, now: int = 10_000, **b: Any
) -> tuple[dict[str, Any], dict[str, backupplan.Condition]]:
    s = spec(backup={**BACKUP, **b})
    return backupplan.backup_status(s, runs, previous, Sources(("c-a-1",)), now, 0)


def ok(pod: str, t: int, h: int) -> BackupRun:
    return BackupRun(pod, t, True, f"n{h}.tar", h, 100 * h, t, "src")


def test_status_shows_the_last_success_and_a_newer_failure_raises_backup_failed() -> None:
    section, conds = _status([ok("p1", 9000, 10), ok("p2", 9500, 12)])
    assert (section["lastName"], section["lastHeight"], section["lastBytes"]) == (
        "n12.tar",
        12,
        1200,
    )
    assert section["lastTimeUnix"] == 9500 and "lastError" not in section
    assert conds["BackupFailed"].status == "False" and conds["BackupStale"].status == "False"
    fail = BackupRun("p3", 9900, False, error="the node stored no block 13 within 30s")
    section, conds = _status([ok("p2", 9500, 12), fail])
    assert conds["BackupFailed"] == backupplan.Condition(
        "True", "BackupFailed", "backup p3 failed: the node stored no block 13 within 30s"
    )
    assert section["lastHeight"] == 12 and section["lastError"].startswith("the node stored")
    # an older failure than the last success is history, not an alarm
    _, conds = _status([fail, ok("p4", 9950, 13)])
    assert conds["BackupFailed"].status == "False"


def test_the_last_success_survives_the_jobs_history_limit() -> None:
    prev = {"lastName": "n7.tar", "lastHeight": 7, "lastBytes": 700, "lastTimeUnix": 9000}
    section, _ = _status([], prev)
    assert section["lastName"] == "n7.tar" and section["lastTimeUnix"] == 9000


def test_stale_when_the_last_success_is_older_than_the_limit_or_there_is_none() -> None:
    _, conds = _status([ok("p", 10_000 - 61 * 60, 3)], staleAfterMinutes=60)
    assert (
        conds["BackupStale"].status == "True" and "61 minutes old" in conds["BackupStale"].message
    )
    _, conds = _status([ok("p", 10_000 - 59 * 60, 3)], staleAfterMinutes=60)
    assert conds["BackupStale"].status == "False"
    _, conds = _status([], now=2 * 3600, staleAfterMinutes=60)
    assert conds["BackupStale"].status == "True" and "no backup in the 120 minutes" in (
        conds["BackupStale"].message
    )
    _, conds = _status([], now=2 * 3600, staleAfterMinutes=60, suspend=True)
    assert conds["BackupStale"].reason == "Suspended"


# --------------------------------------------------------------------------- restores

R = {"claimName": "backups", "backup": "x-h41.tar"}


def test_a_refusal_is_remembered_for_its_source_and_forgotten_when_the_source_changes() -> None:
    s = spec(restoreFrom=R)
    seen = [RestoreRefusal("c-a-0", "a", "restore refused: another chain")]
    refused = backupplan.refused_orgs(s, seen, None)
    assert refused == {
        "a": {
            "source": "backups/x-h41.tar",
            "pod": "c-a-0",
            "message": "restore refused: another chain",
        }
    }
    # the pods are gone (held at 0): the status remembers
    want = {"a": 3, "b": 2}
    held, released = backupplan.holds(refused, None, {"a": 2, "b": 2}, want)
    assert (held, released) == ({"a": 2}, {})
    entries = backupplan.refused_entries(refused, held)
    assert entries == [{"organization": "a", **refused["a"], "replicas": 2}]
    # held at 0 now: the count to come back to is the remembered one, not the planned 0
    assert backupplan.holds(refused, {"refused": entries}, {"a": 0, "b": 2}, want) == ({"a": 2}, {})
    # a status read older than the hold (kopf's copy) and held at 0 already: the spec's count
    assert backupplan.holds(refused, None, {"a": 0, "b": 2}, want) == ({"a": 3}, {})
    assert backupplan.refused_orgs(s, [], {"refused": entries}) == refused
    cond = backupplan.restore_condition(s, refused)
    assert cond is not None and cond.status == "True" and "another chain" in cond.message
    moved = spec(restoreFrom={**R, "backup": "x-h50.tar"})
    assert backupplan.refused_orgs(moved, [], {"refused": entries}) == {}
    assert backupplan.holds({}, {"refused": entries}, {"a": 0, "b": 2}, want) == ({}, {"a": 2})
    cond = backupplan.restore_condition(moved, {})
    assert cond is not None and cond.status == "False"
    assert backupplan.restore_condition(spec(), {}) is None  # no restoreFrom: no condition


def test_an_organisation_s_own_restore_source_overrides_the_consortium_s() -> None:
    s = spec(
        restoreFrom=R,
        organizations=[
            {"name": "a", "validators": 2, "restoreFrom": {"claimName": "other", "backup": "y"}},
            {"name": "b", "validators": 2},
        ],
    )
    assert backupplan.restore_key(s, "a") == "other/y"
    assert backupplan.restore_key(s, "b") == "backups/x-h41.tar"


# --------------------------------------------------------------------------- render


def renderer() -> Renderer:
    return Renderer(Settings(), N, OWNER)


def test_the_cronjob_asks_the_sources_in_order_and_is_suspended_without_any() -> None:
    cj = renderer().backup_cronjob(spec(), ("c-a-1", "c-b-0"))
    assert cj["kind"] == "CronJob" and cj["metadata"]["name"] == "c-backup"
    assert cj["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    s = cj["spec"]
    assert s["schedule"] == "*/5 * * * *" and s["suspend"] is False
    assert s["concurrencyPolicy"] == "Forbid" and s["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = s["jobTemplate"]["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "consortium-backup"
    (c,) = pod["spec"]["containers"]
    assert c["command"] == [
        "consortium", "backup", "create", "/backups/c", "--from-node",
        "c-a-1.c-peers.ns.svc:7050,c-b-0.c-peers.ns.svc:7050", "--keep", "3",
        "--report", "/dev/termination-log",
    ]  # fmt: skip
    assert {"name": "CONSORTIUM_TLS_DIR", "value": "/tls"} in c["env"]
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["backups"]["persistentVolumeClaim"] == {"claimName": "backups"}
    assert vols["tls"]["secret"]["secretName"] == N.operator_client_secret
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert renderer().backup_cronjob(spec(), ())["spec"]["suspend"] is True


def test_restore_from_adds_the_init_step_and_its_claim_and_changes_the_fingerprint() -> None:
    plain = renderer().statefulset(spec(), "a", OrgTarget(2, 0), "ab" * 32)
    assert "initContainers" not in plain["spec"]["template"]["spec"]
    s = spec(restoreFrom=R)
    sts = renderer().statefulset(s, "a", OrgTarget(2, 0), "ab" * 32)
    pod = sts["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == [
        "consortium", "backup", "restore", "/restore/x-h41.tar", "--config",
        "/etc/consortium/config.yaml", "--once", "--report", "/dev/termination-log",
    ]  # fmt: skip
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert mounts["restore"]["readOnly"] is True and mounts["data"]["mountPath"] == "/data"
    assert {"name": "TMPDIR", "value": "/data"} in init["env"]  # replay on the volume, not /tmp
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["restore"]["persistentVolumeClaim"] == {"claimName": "backups", "readOnly": True}
    org = s.organizations[0]
    assert s.pod_fingerprint(org, "img") != spec().pod_fingerprint(spec().organizations[0], "img")


def test_restricted_client_sources_still_admit_the_backup_pods() -> None:
    s = spec(security={"clientCidrs": ["10.0.0.0/8"]})
    np = renderer().network_policy(s, None)
    (client_rule,) = [
        r for r in np["spec"]["ingress"] if {"port": 7050, "protocol": "TCP"} in r["ports"]
    ]
    assert {"podSelector": {"matchLabels": N.backup_selector()}} in client_rule["from"]


def test_backup_pods_are_never_taken_for_nodes() -> None:
    assert not set(N.backup_selector().items()) >= set(N.selector().items())
    assert N.parse_pod("c-backup-29000000-abcde", ("a", "b")) is None


def test_the_backup_status_and_conditions_fit_the_crd_status_schema() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    (v,) = crd["spec"]["versions"]
    schema = v["schema"]["openAPIV3Schema"]["properties"]["status"]
    section, conds = _status([ok("p", 9000, 4), BackupRun("q", 9999, False, error="x")])
    refused = {"a": {"source": "b/x", "pod": "c-a-0", "message": "m"}}
    st = {
        "backup": section,
        "restore": {"refused": backupplan.refused_entries(refused, {"a": 2})},
        "conditions": backupplan.conditions([], conds, "2026-01-01T00:00:00Z", 2),
    }
    _fits(st, schema, "status")
    for k in ("lastName", "lastHeight", "lastBytes", "lastTimeUnix", "lastError", "sources"):
        assert k in section


# --------------------------------------------------------------------------- the phase


def _pass(s: ConsortiumSpec, status: dict[str, Any] | None = None) -> Any:
    import datetime as dt

    from consortium_operator import reconcile

    no_kube: Any = None  # the phase's pure parts never call Kubernetes
    env = reconcile.Env(Settings(), no_kube, clock=lambda: dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    subj = reconcile.Subject(OWNER, {}, status or {}, {}, 3, "2026-11-30T00:00:00Z")
    p = reconcile.Pass(env, subj, reconcile.Events(lambda r, m: None, lambda r, m: None))
    p.spec = s
    return p


def test_extend_status_sets_the_gauges_and_appends_the_conditions() -> None:
    from consortium_operator import backups

    p = _pass(spec())
    view = backups.View(runs=[ok("p", 1_764_547_000, 9)], sources=Sources(("c-a-1",)))
    new = backups.extend_status(p, view, {"conditions": [{"type": "Ready", "status": "True"}]})
    assert new["backup"]["lastHeight"] == 9
    assert [c["type"] for c in new["conditions"]] == ["Ready", "BackupFailed", "BackupStale"]
    assert backups.LAST_HEIGHT.labels("ns", "c")._value.get() == 9
    assert backups.LAST_BYTES.labels("ns", "c")._value.get() == 900
    assert backups.FAILED.labels("ns", "c")._value.get() == 0
    # without spec.backup (and none before) nothing is added
    plain = backups.extend_status(_pass(spec(backup=None)), backups.View(), {"conditions": []})
    assert "backup" not in plain and plain["conditions"] == []
    # spec.backup removed: the section is removed (merge patch null)
    gone = backups.extend_status(
        _pass(spec(backup=None), {"backup": {"lastHeight": 9}}), backups.View(), {}
    )
    assert gone["backup"] is None


def test_hold_and_release_change_only_the_refused_organisation_s_targets() -> None:
    from consortium_operator import backups, plan

    s = spec(organizations=[
        {"name": "a", "validators": 2, "restoreFrom": R}, {"name": "b", "validators": 2},
    ])  # fmt: skip
    p = _pass(s)
    p.step = plan.Step(plan.Converged(), {"a": OrgTarget(2, 0), "b": OrgTarget(2, 0)}, "Running")
    refused = {"a": {"source": "backups/x-h41.tar", "pod": "c-a-0", "message": "m"}}
    view = backups.View(refused=refused)
    backups.hold_refused(p, view)
    assert p.step.targets == {"a": OrgTarget(0, 0), "b": OrgTarget(2, 0)} and view.held == {"a": 2}
    # released: the remembered count again
    entries = backupplan.refused_entries(refused, view.held)
    p = _pass(s, {"restore": {"refused": entries}})
    p.step = plan.Step(plan.Converged(), {"a": OrgTarget(0, 0), "b": OrgTarget(2, 0)}, "Running")
    backups.hold_refused(p, backups.View())
    assert p.step.targets == {"a": OrgTarget(2, 0), "b": OrgTarget(2, 0)}
