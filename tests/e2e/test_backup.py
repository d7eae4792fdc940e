"""Backup and disaster recovery on a real cluster, as the README's drill runs it: a Consortium
with spec.backup (a CronJob every minute into a PersistentVolumeClaim); transactions, then a
scheduled backup at or above their heights (status.backup); the key Secrets and the genesis
ConfigMap saved; the Consortium deleted with its ledger volumes (deletionPolicy Delete); a new
Consortium of the same name restored from the backup (spec.restoreFrom) with the saved keys:
every transaction acknowledged at or below the backup height is there, and the chain goes on.

One consortium, the tests in order (module-scoped fixtures), in a namespace of its own with a
namespaced operator (test_consortium_lifecycle's `installed` fixture)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .consortium_fixtures import Chain, report
from .test_consortium_lifecycle import Installed, installed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
__all__ = ["installed"]  # the module fixture (namespaced operator), used below

NAME = "bk"
CLAIM = "backups"


def manifest(**extra: Any) -> str:
    spec: dict[str, Any] = {
        "chainId": "bk-chain",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "acme", "validators": 2}, {"name": "globex", "validators": 1}],
        "deletionPolicy": "Delete",
        **extra,
    }
    return json.dumps(
        {
            "apiVersion": "consortium.dev/v1alpha1",
            "kind": "Consortium",
            "metadata": {"name": NAME},
            "spec": spec,
        }
    )


BACKUP = {"schedule": "* * * * *", "claimName": CLAIM, "retention": 2, "staleAfterMinutes": 30}


@dataclass
class Drill:
    chain: Chain
    acked: dict[str, int] = field(default_factory=dict)  # key -> committed height
    backup: dict[str, Any] = field(default_factory=dict)  # status.backup used for the restore
    saved: list[dict[str, Any]] = field(default_factory=list)  # key Secrets + genesis


@pytest.fixture(scope="module")
def drill(installed: Installed, node_image: str) -> Iterator[Drill]:
    c = Chain(installed.kube, installed.namespace, NAME)
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    c.kube.apply(json.dumps(pvc), namespace=c.namespace)
    c.start_client(node_image)
    yield Drill(c)


def _apply(c: Chain, text: str) -> None:
    c.kube.apply(text, namespace=c.namespace)


def test_scheduled_backup_covers_every_acknowledged_transaction(
    drill: Drill, request: pytest.FixtureRequest
) -> None:
    c = drill.chain
    _apply(c, manifest(backup=BACKUP))
    c.wait_ready(timeout=300)
    c.use_client_tls("acme")
    c.vouch_client("acme")
    for i in range(10):
        drill.acked[f"dr/{i}"] = int(c.put_eventually(f"dr/{i}", f"v{i}")["height"])
    top = max(drill.acked.values())
    t0 = time.monotonic()

    def covered() -> dict[str, Any] | None:
        b = c.get()["status"].get("backup") or {}
        return b if int(b.get("lastHeight", 0)) >= top else None

    b = c.wait(f"a scheduled backup at height >= {top}", covered, 240)
    report(request.config, f"scheduled backup covering height {top}: {time.monotonic() - t0:.1f}s")
    # <consortium>/<file> in the claim: what restoreFrom.backup takes
    assert b["lastName"].startswith(f"{NAME}/bk-chain-") and b["lastName"].endswith(".tar"), b
    assert b["lastBytes"] > 0 and b["sources"], b
    conds = {x["type"]: x for x in c.get()["status"]["conditions"]}
    assert conds["BackupFailed"]["status"] == "False", conds["BackupFailed"]
    assert conds["BackupStale"]["status"] == "False", conds["BackupStale"]
    # stop the schedule so the backup restored below is the one named here, after any run in
    # progress has finished
    c.patch([{"op": "replace", "path": "/spec/backup/suspend", "value": True}])
    c.wait(
        "the backup CronJob suspended and idle",
        lambda: (
            (cj := c.json("get", "cronjob", f"{NAME}-backup"))["spec"].get("suspend")
            and not cj.get("status", {}).get("active")
        ),
        120,
    )
    # a status pass after that reads any run that finished meanwhile
    drill.backup = c.wait(
        "status.backup after the last run",
        lambda: (bb := c.get()["status"].get("backup") or {}).get("suspended") and bb,
        60,
    )


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    keep = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
    keep.get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
    out = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    out["metadata"] = keep
    return out


def test_disaster_every_node_and_volume_lost_then_restored_from_the_backup(
    drill: Drill, request: pytest.FixtureRequest
) -> None:
    c = drill.chain
    assert drill.backup, "the backup test runs first"
    # the keys are backed up separately (a backup never holds a private key): every Secret of
    # the consortium and its genesis ConfigMap, without owner references
    secrets = c.json("get", "secrets")["items"]
    drill.saved = [_strip(s) for s in secrets if s["metadata"]["name"].startswith(f"{NAME}-")]
    drill.saved.append(_strip(c.json("get", "configmap", f"{NAME}-genesis")))
    assert any(s["metadata"]["name"] == f"{NAME}-acme-keys" for s in drill.saved)
    before = c.get()["status"]["genesisHash"]

    t0 = time.monotonic()
    c.k("delete", "consortium", NAME, "--timeout=180s", timeout=200)
    c.wait(
        "the ledger volumes deleted",
        lambda: (
            not [
                p
                for p in c.json("get", "pvc")["items"]
                if p["metadata"]["name"].startswith(f"data-{NAME}-")
            ]
        ),
        180,
    )
    assert c.json("get", "pvc", CLAIM)["metadata"]["name"] == CLAIM  # the backups survive
    for obj in drill.saved:
        _apply(c, json.dumps(obj))
    restore = {"claimName": CLAIM, "backup": drill.backup["lastName"]}
    _apply(c, manifest(restoreFrom=restore))
    c.wait_ready(timeout=420)
    report(
        request.config,
        f"restore into a new Consortium from {restore['backup']} -> Ready: "
        f"{time.monotonic() - t0:.1f}s",
    )
    st = c.get()["status"]
    assert st["genesisHash"] == before
    conds = {x["type"]: x for x in st["conditions"]}
    assert conds["RestoreFailed"]["status"] == "False", conds["RestoreFailed"]
    h = int(drill.backup["lastHeight"])
    assert st["height"] >= h
    for key, height in sorted(drill.acked.items()):
        if height <= h:

            def found(k: str = key) -> str | None:
                return c.read(k)

            assert c.wait(f"{key} after the restore", found, 60) == f"v{key.split('/')[1]}"
    # the chain continues above the backup's height
    after = c.put_eventually("dr/after", "restored")
    assert int(after["height"]) > h
    for pod in c.pods():
        c.wait_value("dr/after", "restored", c.pod_endpoint(pod["metadata"]["name"]), 90)
