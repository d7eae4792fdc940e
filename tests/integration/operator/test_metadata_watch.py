"""kube.MetadataWatch against a real kube-apiserver: the operator's watch of its own objects
(metadata only, label-filtered server-side) reports creations, changes and deletions with
their resourceVersions, never another writer's unlabelled objects, and a re-LIST reports as
deleted what went away while it was not watching."""

from __future__ import annotations

import json
import queue
from typing import Any

from consortium_operator.kube import MetadataWatch, MetaEvent
from consortium_operator.reconcile import MANAGED
from kubernetes import config as k8s_config

from tests.support.apiserver import ControlPlane

from .conftest import Kubectl


def configmap(name: str, managed: bool, value: str = "1") -> str:
    labels = {"app.kubernetes.io/instance": "c"}
    if managed:
        labels["app.kubernetes.io/managed-by"] = "consortium-operator"
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": value},
    }
    return json.dumps(doc)


def next_event(events: queue.Queue[MetaEvent]) -> MetaEvent:
    return events.get(timeout=20)


def test_the_metadata_watch_reports_changes_of_managed_objects_only(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    api = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    events: queue.Queue[MetaEvent] = queue.Queue()
    w = MetadataWatch(api, ("", "v1", "configmaps"), namespace, MANAGED, events.put, 30)
    assert kubectl.apply(configmap("before", True), namespace).returncode == 0
    w.start()
    try:
        first = next_event(events)  # what the first LIST shows
        assert (first.kind, first.namespace, first.name) == ("ConfigMap", namespace, "before")
        assert first.labels["app.kubernetes.io/instance"] == "c" and first.rv
        assert kubectl.apply(configmap("theirs", False), namespace).returncode == 0
        assert kubectl.apply(configmap("ours", True), namespace).returncode == 0
        added = next_event(events)
        assert added.name == "ours" and added.rv  # never "theirs": not labelled managed-by
        assert kubectl.apply(configmap("ours", True, "2"), namespace).returncode == 0
        changed = next_event(events)
        assert changed.name == "ours" and changed.rv and int(changed.rv) > int(added.rv)
        kubectl.run("delete", "configmap", "ours", "-n", namespace)
        gone = next_event(events)
        assert (gone.name, gone.rv) == ("ours", None)
    finally:
        w.stop()
    assert events.empty()

    # a deletion while nobody watched: the next LIST reports it
    kubectl.run("delete", "configmap", "before", "-n", namespace)
    w.relist()
    assert next_event(events) == MetaEvent("ConfigMap", namespace, "before", {}, None)
    assert events.empty()
