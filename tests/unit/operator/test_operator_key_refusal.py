"""The operator refuses to mint a new node key while old data or a recorded node id exists
(issue 14; the quorum-kubernetes incident: restarted pods generated new keys and halted a
production network). plan._refuse_new_keys over test_operator_plan.World worlds."""

from __future__ import annotations

from dataclasses import replace

import pytest
from consortium_operator import plan
from consortium_operator.model import Observed

from tests.unit.operator.test_operator_plan import ADMIN, IMAGE, N, World, key, spec

pytestmark = pytest.mark.unit


def test_a_new_consortium_over_a_retained_volume_of_the_same_name_gets_no_new_key() -> None:
    sp = spec()
    o = Observed(org_admins={"a": ADMIN, "b": ADMIN}, volumes=frozenset({"c-a-1"}))
    s = plan.next_step(sp, o, N, IMAGE)
    assert isinstance(s.action, plan.Blocked) and s.action.reason == "OldDataExists"
    assert "c-a-1" in s.action.message and "data-c-a-1" in s.action.message
    assert s.phase == "Degraded" and s.targets is None
    # the volume deleted (a person decided): keys are created
    s = plan.next_step(sp, replace(o, volumes=frozenset()), N, IMAGE)
    assert s.action == plan.CreateNodeKeys("a", ("c-a-0", "c-a-1"))


def test_scale_up_does_not_mint_a_key_over_an_existing_volume() -> None:
    w = World(spec([("a", 3), ("b", 2)]), {"a": 2, "b": 2})
    assert plan.next_step(w.sp, w.observed(), N, IMAGE).action == plan.CreateNodeKeys(
        "a", ("c-a-2",)
    )
    old = replace(w.observed(), volumes=frozenset({"c-a-2"}))
    s = plan.next_step(w.sp, old, N, IMAGE)
    assert isinstance(s.action, plan.Blocked) and s.action.reason == "OldDataExists"
    assert s.targets is not None and s.targets["a"].replicas == 2  # no pod started either
    # its key kept (an earlier scale-down keeps keys): the pod starts on its own data
    w.keys = {*w.pods(), "c-a-2"}
    kept = replace(w.observed(), volumes=frozenset({"c-a-2"}))
    s = plan.next_step(w.sp, kept, N, IMAGE)
    assert s.action == plan.Wait("Scaling", "starting c-a-2")


def test_a_lost_key_secret_is_not_papered_over_with_new_keys() -> None:
    """The key Secret and StatefulSet of a are gone (deleted by hand); the chain still lists
    a's validators: minting keys for c-a-0.. would start new identities beside them."""
    w = World(spec([("a", 2), ("b", 2)]), {"a": 0, "b": 2})
    w.keys = {"c-b-0", "c-b-1"}
    w.validators = {"c-a-0", "c-a-1", "c-b-0", "c-b-1"}
    s = plan.next_step(w.sp, w.observed(), N, IMAGE)
    assert isinstance(s.action, plan.Blocked) and s.action.reason == "KeyLost"
    lost = sorted(key(p).hex()[:16] for p in ("c-a-0", "c-a-1"))
    assert all(k in s.action.message for k in lost) and "Secret c-a-keys" in s.action.message
