"""MemoryDiffBase (consortium_operator.diffbase): kopf's diff base kept in the operator's
memory by object uid — no PATCH of the consortium per handled change; an earlier operator's
diff-base annotation is ignored and removed with the next handled change."""

from __future__ import annotations

from typing import Any

import kopf
from consortium_operator.diffbase import LEGACY_DIFFBASE, MemoryDiffBase


def body(uid: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> kopf.Body:
    meta: dict[str, Any] = {"name": "c", "namespace": "ns", "uid": uid}
    if annotations is not None:
        meta["annotations"] = annotations
    raw: Any = {
        "apiVersion": "consortium.dev/v1alpha1",
        "kind": "Consortium",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Ready"},
    }
    return kopf.Body(raw)


def test_the_essence_last_handled_is_kept_per_uid_and_nothing_is_patched() -> None:
    store = MemoryDiffBase()
    a, b = body("uid-a", {"image": "x"}), body("uid-b", {"image": "y"})
    assert store.fetch(body=a) is None  # never handled in this process: kopf's create
    patch = kopf.Patch()
    store.store(body=a, patch=patch, essence=store.build(body=a))
    assert not patch  # no request: the point of keeping it here
    assert store.fetch(body=a) == {"spec": {"image": "x"}}
    assert store.fetch(body=b) is None
    store.forget("uid-a")  # deleted
    assert store.fetch(body=a) is None


def test_an_earlier_operators_annotation_is_not_essence_and_is_removed() -> None:
    store = MemoryDiffBase()
    old = body("uid-a", {"image": "x"}, {LEGACY_DIFFBASE: '{"spec":{}}', "team": "blue"})
    essence = store.build(body=old)
    assert essence == {"spec": {"image": "x"}, "metadata": {"annotations": {"team": "blue"}}}
    patch = kopf.Patch()
    store.store(body=old, patch=patch, essence=essence)
    assert patch == {"metadata": {"annotations": {LEGACY_DIFFBASE: None}}}
