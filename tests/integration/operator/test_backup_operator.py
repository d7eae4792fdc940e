"""Backups and restores through the spec, with the operator (a real process) against a real
kube-apiserver: bad spec.backup / restoreFrom refused at apply time; spec.backup gives the
CronJob (suspended while no node can be asked); the backup pods' termination messages become
status.backup and the conditions BackupFailed/BackupStale; a refused restore becomes
RestoreFailed and holds the organisation at 0 replicas until its restoreFrom changes;
removing spec.backup removes the CronJob and status.backup.

No kubelet runs here: the pods the CronJob and the StatefulSet controller would make are
created by the test, and their container statuses written through the status subresource
as a kubelet would write them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from .conftest import Kubectl, OperatorProcess, eventually
from .test_crd_validation import manifest
from .test_operator_lifecycle import conditions, consortium, status_of

pytestmark = pytest.mark.integration

BACKUP = {"schedule": "*/5 * * * *", "claimName": "backups", "retention": 2}

INVALID = [
    ("bk-cron", {"backup": {**BACKUP, "schedule": "every day"}}, "schedule must be 5 cron fields"),
    ("bk-claim", {"backup": {**BACKUP, "claimName": "Not_A_Claim"}}, "claimName must be a"),
    ("bk-keep", {"backup": {**BACKUP, "retention": 0}}, "should be greater than or equal to 1"),
    ("bk-noclaim", {"backup": {"schedule": "@daily"}}, "claimName: Required value"),
    (
        "rs-path",
        {"restoreFrom": {"claimName": "backups", "backup": "../etc/passwd"}},
        "backup must be a backup in the claim",
    ),
    (
        "rs-hidden",
        {"restoreFrom": {"claimName": "backups", "backup": ".incoming-x.tar"}},
        "backup must be a backup in the claim",
    ),
    ("rs-noname", {"restoreFrom": {"claimName": "backups"}}, "backup: Required value"),
]


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_bad_backup_and_restore_specs_are_rejected_at_apply(
    kubectl: Kubectl, namespace: str, case: str, spec: dict[str, Any], message: str
) -> None:
    p = kubectl.apply(manifest(case, **spec), namespace)
    assert p.returncode != 0, f"{case} was accepted"
    assert message in p.stderr, p.stderr


def test_restore_from_is_set_at_creation_only(kubectl: Kubectl, namespace: str) -> None:
    assert kubectl.apply(manifest("late"), namespace).returncode == 0
    src = {"claimName": "backups", "backup": "x.tar"}
    p = kubectl.apply(manifest("late", restoreFrom=src), namespace)
    assert p.returncode != 0 and "spec.restoreFrom is set when a Consortium is created" in p.stderr
    # an organisation's own restoreFrom may be set later (restoring its nodes)
    orgs = [
        {"name": "acme", "validators": 2, "restoreFrom": src},
        {"name": "beta", "validators": 2},
    ]
    assert kubectl.apply(manifest("late", organizations=orgs), namespace).returncode == 0
    assert kubectl.apply(manifest("early", restoreFrom=src), namespace).returncode == 0


def _pod(kubectl: Kubectl, ns: str, name: str, labels: dict[str, str], container: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": container, "image": "consortium/node:it"}]},
    }
    assert kubectl.apply(json.dumps(body), ns).returncode == 0


def _terminated(
    kubectl: Kubectl, ns: str, pod: str, field: str, name: str, code: int, message: str
) -> None:
    status = {
        field: [
            {
                "name": name,
                "image": "consortium/node:it",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "message": message,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": "2026-12-01T03:00:00Z",
                        "finishedAt": "2026-12-01T03:00:09Z",
                    }
                },
            }
        ]
    }
    kubectl.run(
        "patch", "pod", pod, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


BACKUP_LABELS = {
    "app.kubernetes.io/name": "consortium-backup",
    "app.kubernetes.io/instance": "bk",
    "app.kubernetes.io/component": "backup",
    # as the Job template labels its pods: the operator watches only what it manages
    "app.kubernetes.io/managed-by": "consortium-operator",
}


def test_scheduled_backups_cronjob_status_and_conditions(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    assert kubectl.apply(consortium("bk", backup=BACKUP), ns).returncode == 0
    cj = eventually(
        lambda: kubectl.get("cronjob", "bk-backup", ns), 90, "the backup CronJob", operator.tail
    )
    owner = kubectl.get("consortium", "bk", ns)
    assert owner is not None
    assert cj["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert cj["spec"]["schedule"] == "*/5 * * * *" and cj["spec"]["concurrencyPolicy"] == "Forbid"
    # no node runs here: nothing may be asked, so the schedule is suspended
    assert cj["spec"]["suspend"] is True
    (c,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert c["command"][:4] == ["consortium", "backup", "create", "/backups/bk"]
    assert c["command"][c["command"].index("--keep") + 1] == "2"

    def backup_status() -> dict[str, Any] | None:
        st = status_of(kubectl, ns, "bk")
        return st if "backup" in st and "BackupStale" in conditions(st) else None

    st = eventually(backup_status, 60, "status.backup", operator.tail)
    assert st["backup"]["suspended"] is True and st["backup"]["sources"] == []
    conds = conditions(st)
    assert conds["BackupFailed"]["reason"] == "NoBackupYet"
    assert (
        conds["BackupStale"]["status"] == "False" and conds["BackupStale"]["reason"] == "NoSource"
    )

    # a run that succeeded, as the kubelet reports it
    _pod(kubectl, ns, "bk-backup-29000000-aaaaa", BACKUP_LABELS, "backup")
    report = {"name": "bk-chain-20261201T030000Z-h41.tar", "height": 41, "bytes": 123456,
              "created": 1764558000, "source": "bk-acme-1.bk-peers.x.svc:7050", "pruned": []}  # fmt: skip
    _terminated(kubectl, ns, "bk-backup-29000000-aaaaa", "containerStatuses", "backup", 0,
                json.dumps(report))  # fmt: skip

    def succeeded() -> dict[str, Any] | None:
        st = status_of(kubectl, ns, "bk")
        return st if st.get("backup", {}).get("lastHeight") == 41 else None

    st = eventually(succeeded, 60, "the backup in status", operator.tail)
    b = st["backup"]
    assert b["lastName"] == f"bk/{report['name']}" and b["lastBytes"] == 123456
    finished = dt.datetime(2026, 12, 1, 3, 0, 9, tzinfo=dt.UTC)
    assert b["lastTimeUnix"] == int(finished.timestamp())  # the pod's finishedAt
    assert conditions(st)["BackupFailed"]["status"] == "False"
    # the finish time is long past: with a one-minute limit the backups are stale
    p = kubectl.apply(consortium("bk", backup={**BACKUP, "staleAfterMinutes": 1}), ns)
    assert p.returncode == 0, p.stderr
    eventually(
        lambda: conditions(status_of(kubectl, ns, "bk"))["BackupStale"]["status"] == "True",
        60, "BackupStale", operator.tail,
    )  # fmt: skip

    # a later run failed: BackupFailed with its one-line reason; the last success stays
    _pod(kubectl, ns, "bk-backup-29000005-bbbbb", BACKUP_LABELS, "backup")
    _terminated(kubectl, ns, "bk-backup-29000005-bbbbb", "containerStatuses", "backup", 1,
                json.dumps({"error": "node x: FAILED_PRECONDITION: the chain has no block"}))  # fmt: skip
    # (finishedAt is the same instant as the success: a failure must be newer to count)
    kubectl.run(
        "patch", "pod", "bk-backup-29000005-bbbbb", "-n", ns, "--subresource=status",
        "--type=json", "-p", json.dumps([{
            "op": "replace",
            "path": "/status/containerStatuses/0/state/terminated/finishedAt",
            "value": "2026-12-01T03:05:09Z",
        }]),
    )  # fmt: skip

    def failed() -> dict[str, Any] | None:
        st = status_of(kubectl, ns, "bk")
        return st if conditions(st).get("BackupFailed", {}).get("status") == "True" else None

    st = eventually(failed, 60, "BackupFailed", operator.tail)
    assert "the chain has no block" in conditions(st)["BackupFailed"]["message"]
    assert st["backup"]["lastHeight"] == 41 and "no block" in st["backup"]["lastError"]

    # spec.backup removed: the CronJob and status.backup go, and so do the conditions
    assert kubectl.apply(consortium("bk"), ns).returncode == 0
    eventually(
        lambda: kubectl.get("cronjob", "bk-backup", ns) is None,
        60,
        "CronJob deleted",
        operator.tail,
    )
    eventually(
        lambda: "backup" not in status_of(kubectl, ns, "bk")
        and "BackupFailed" not in conditions(status_of(kubectl, ns, "bk")),
        60, "status.backup removed", operator.tail,
    )  # fmt: skip


def test_a_refused_restore_holds_the_organisation_and_a_new_source_releases_it(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    ns = namespace
    src = {"claimName": "backups", "backup": "rs-chain-h41.tar"}
    orgs = [
        {"name": "acme", "validators": 2, "restoreFrom": src},
        {"name": "beta", "validators": 2},
    ]
    assert kubectl.apply(consortium("rs", organizations=orgs), ns).returncode == 0
    sts = eventually(
        lambda: kubectl.get("statefulset", "rs-acme", ns), 90, "StatefulSet", operator.tail
    )
    pod = sts["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "restore" and "/restore/rs-chain-h41.tar" in init["command"]
    assert {v["name"]: v for v in pod["volumes"]}["restore"]["persistentVolumeClaim"] == {
        "claimName": "backups",
        "readOnly": True,
    }
    beta = kubectl.get("statefulset", "rs-beta", ns)
    assert beta is not None and "initContainers" not in beta["spec"]["template"]["spec"]
    st = eventually(
        lambda: (s := status_of(kubectl, ns, "rs")) and "RestoreFailed" in conditions(s) and s,
        60, "RestoreFailed condition", operator.tail,
    )  # fmt: skip
    assert conditions(st)["RestoreFailed"]["status"] == "False"

    # the init step of rs-acme-0 refused the backup (as the kubelet would report it)
    labels = {
        "app.kubernetes.io/name": "consortium-node",
        "app.kubernetes.io/instance": "rs",
        "consortium.dev/organization": "acme",
        "app.kubernetes.io/managed-by": "consortium-operator",  # as the StatefulSet labels it
    }
    _pod(kubectl, ns, "rs-acme-0", labels, "node")
    why = "restore refused: /data holds newer data (height 90) than the backup (height 41)"
    _terminated(kubectl, ns, "rs-acme-0", "initContainerStatuses", "restore", 1,
                json.dumps({"error": why}))  # fmt: skip

    def held() -> dict[str, Any] | None:
        s = status_of(kubectl, ns, "rs")
        c = conditions(s).get("RestoreFailed", {})
        return s if c.get("status") == "True" else None

    st = held_status = eventually(held, 60, "RestoreFailed True", operator.tail)
    assert "newer data" in conditions(st)["RestoreFailed"]["message"]
    assert held_status["restore"]["refused"] == [
        {"organization": "acme", "source": "backups/rs-chain-h41.tar", "pod": "rs-acme-0",
         "message": why, "replicas": 2},
    ]  # fmt: skip
    eventually(
        lambda: kubectl.get("statefulset", "rs-acme", ns)["spec"]["replicas"] == 0,  # type: ignore[index]
        60, "acme held at 0 replicas", operator.tail,
    )  # fmt: skip
    # the pod goes (as the StatefulSet controller would delete it); the refusal is remembered
    kubectl.run("delete", "pod", "rs-acme-0", "-n", ns, "--grace-period=0", "--force")
    operator.restart()  # nothing but the cluster remembers it
    st = eventually(held, 60, "RestoreFailed still True", operator.tail)
    assert kubectl.get("statefulset", "rs-acme", ns)["spec"]["replicas"] == 0  # type: ignore[index]
    b = kubectl.get("statefulset", "rs-beta", ns)
    assert b is not None and b["spec"]["replicas"] == 2

    # the StatefulSet controller (absent here) would report it has seen the new replicas
    for sts_name in ("rs-acme", "rs-beta"):
        obj = kubectl.get("statefulset", sts_name, ns)
        assert obj is not None
        seen = {"observedGeneration": obj["metadata"]["generation"], "replicas": 0}
        kubectl.run(
            "patch", "statefulset", sts_name, "-n", ns, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": seen}),
        )  # fmt: skip
    # another backup named: the hold is released
    orgs[0]["restoreFrom"] = {**src, "backup": "rs-chain-h30.tar"}
    assert kubectl.apply(consortium("rs", organizations=orgs), ns).returncode == 0
    eventually(
        lambda: kubectl.get("statefulset", "rs-acme", ns)["spec"]["replicas"] == 2,  # type: ignore[index]
        60, "acme released", operator.tail,
    )  # fmt: skip
    st = status_of(kubectl, ns, "rs")
    assert conditions(st)["RestoreFailed"]["status"] == "False"
    assert st["restore"]["refused"] == []


def test_a_consortium_restored_from_a_backup_waits_for_its_own_genesis(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    """Never a new genesis or new keys for a restored chain: they would be another chain."""
    ns = namespace
    src = {"claimName": "backups", "backup": "dr-chain-h41.tar"}
    assert kubectl.apply(consortium("dr", restoreFrom=src), ns).returncode == 0

    def blocked() -> dict[str, Any] | None:
        s = status_of(kubectl, ns, "dr")
        return (
            s if conditions(s).get("Degraded", {}).get("reason") == "RestoreNeedsGenesis" else None
        )

    st = eventually(blocked, 60, "RestoreNeedsGenesis", operator.tail)
    assert "dr-genesis is missing" in conditions(st)["Degraded"]["message"]
    for kind, name in (("configmap", "dr-genesis"), ("secret", "dr-acme-admin"),
                       ("secret", "dr-acme-keys"), ("statefulset", "dr-acme")):  # fmt: skip
        assert kubectl.get(kind, name, ns) is None, f"{kind}/{name} was created"
