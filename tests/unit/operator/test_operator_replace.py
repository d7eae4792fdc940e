"""Replacing a permanently lost validator by its own organisation (issue 14; replace.py): the
operator never mints a key for a validator the chain lists on its own; a person's declaration
(annotation consortium.dev/replace-validator) is checked, stamped, waited on until the old
volume is gone, then the pod gets a new key, syncs as a follower, and is swapped in by a
ReplaceValidator its own organisation proposes (SELF: no other organisation votes).

Worlds: organisations a (2 validators), b, c (1 each) on a raft chain governed by them;
validator c-a-1 is lost — the chain lists key("c-a-1"), no Secret holds it, its pod is down."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from consortium_operator import nodes, plan, reconcile
from consortium_operator import replace as rp
from consortium_operator.model import ConsortiumSpec, Observed

from tests.unit.operator.test_operator_governance import (
    KEYS,
    NOW,
    OWNER,
    PUBLIC,
    SETTINGS,
    OrgKube,
    governed,
    gspec,
    next_action,
    proposal,
)
from tests.unit.operator.test_operator_plan import IMAGE, N, key

pytestmark = pytest.mark.unit

OLD = key("c-a-1")
NEW = b"\x5e" * 32
DECLARED = f"c-a-1={OLD.hex()}"
STAMP = "2026-03-01T00:00:00Z"
STAMPED = f"{DECLARED}@{STAMP}"
REPLACE = plan.ReplaceValidator("c-a-1", "a", OLD, NEW)


def spec(approve: dict[str, str] | None = None) -> ConsortiumSpec:
    return gspec(approve, validators={"a": 2})


def lost(sp: ConsortiumSpec, replacement: str | None = None, **kw: Any) -> Observed:
    """c-a-1 lost: listed by the chain, its key in no Secret, its pod not answering."""
    o = governed(
        sp, replicas={"a": 2, "b": 1, "c": 1}, validators={"c-a-0", "c-a-1", "c-b-0", "c-c-0"}
    )
    keys = {p: k for p, k in o.node_keys.items() if p != "c-a-1"}
    nodes = {p: n for p, n in o.nodes.items() if p != "c-a-1"}
    pods = {p: replace(s, ready=p != "c-a-1") for p, s in o.pods.items()}
    return replace(o, node_keys=keys, nodes=nodes, pods=pods, replacement=replacement, **kw)


def minted(sp: ConsortiumSpec, synced: bool = True, **kw: Any) -> Observed:
    """The declared pod has its new key; `synced`: it runs and has caught up."""
    o = lost(sp, STAMPED, **kw)
    o = replace(o, node_keys={**o.node_keys, "c-a-1": NEW})
    if synced:
        n = o.nodes["c-a-0"]
        o = replace(
            o,
            nodes={**o.nodes, "c-a-1": replace(n, role="follower")},
            pods={**o.pods, "c-a-1": replace(o.pods["c-a-1"], ready=True)},
        )
    return o


# --------------------------------------------------------------------------- planner


def test_without_a_declaration_no_key_is_minted_for_a_lost_validator() -> None:
    sp = spec()
    a = next_action(sp, lost(sp))
    assert not isinstance(a, plan.CreateNodeKeys | plan.Propose | plan.AddValidator), a


def test_the_declaration_is_accepted_then_stamped() -> None:
    sp = spec()
    step = plan.next_step(sp, lost(sp, DECLARED), N, IMAGE)
    assert step.action == rp.Declare(rp.Declaration("c-a-1", OLD), "a")
    assert step.phase == "Replacing"
    assert "delete PVC data-c-a-1 and pod c-a-1" in str(step.action)


def test_a_volume_older_than_the_declaration_is_never_given_a_new_key() -> None:
    sp = spec()
    old = lost(
        sp, STAMPED, volumes=frozenset({"c-a-1"}), volume_created={"c-a-1": "2026-01-01T00:00:00Z"}
    )
    a = next_action(sp, old)
    assert isinstance(a, plan.Blocked) and a.reason == "OldDataExists", a
    assert "kubectl delete pvc data-c-a-1" in a.message
    # the volume the StatefulSet made after the old one was deleted: the key is minted
    fresh = replace(old, volume_created={"c-a-1": "2026-03-01T00:00:05Z"})
    assert next_action(sp, fresh) == plan.CreateNodeKeys("a", ("c-a-1",))
    assert next_action(sp, lost(sp, STAMPED)) == plan.CreateNodeKeys("a", ("c-a-1",))  # none
    # the old claim deleted but still terminating (its pod still runs on it): still old data
    terminating = replace(old, volumes=frozenset())
    a = next_action(sp, terminating)
    assert isinstance(a, plan.Blocked) and a.reason == "OldDataExists", a


def test_the_new_node_syncs_as_a_follower_before_it_is_swapped_in() -> None:
    sp = spec()
    a = next_action(sp, minted(sp, synced=False))
    assert isinstance(a, plan.Wait) and a.reason == "ReplacingValidator", a
    assert "sync as a follower" in a.message


def test_its_own_organisation_proposes_it_alone_even_when_others_vote_by_hand() -> None:
    sp = spec({"b": "manual", "c": "manual"})
    assert next_action(sp, minted(sp)) == plan.Propose(REPLACE, "a")
    # a proposal already open (e.g. a person's): the other auto organisations do not vote
    sp = spec()
    change = plan.change_key(REPLACE)
    o = minted(sp, proposals=(proposal(votes=(), change=change, needed=1),))
    assert next_action(sp, o) == plan.Vote(7, "a", REPLACE)
    o = minted(sp, proposals=(proposal(votes=(("a", False),), change=change, needed=1),))
    a = next_action(sp, o)
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals", a
    # a manual organisation's own replacement waits for its person
    sp = spec({"a": "manual"})
    a = next_action(sp, minted(sp))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals", a


def test_once_the_chain_lists_the_new_key_the_declaration_is_finished() -> None:
    sp = spec()
    o = minted(sp)
    vset = tuple(
        sorted({*((k, org) for k, org in o.validator_set() or () if k != OLD), (NEW, "a")})
    )
    nodes = {p: replace(n, validators=vset) for p, n in o.nodes.items()}
    done = replace(o, nodes=nodes)
    assert next_action(sp, done) == rp.Finish(rp.Declaration("c-a-1", OLD, STAMP), NEW)
    # and with the annotation gone nothing more happens to c-a-1 (it is a validator)
    a = next_action(sp, replace(done, replacement=None))
    assert a == plan.Converged()


@pytest.mark.parametrize(
    ("text", "reason", "needle"),
    [
        ("c-a-1", "ReplacementInvalid", "must be <pod>=<the lost validator's node id"),
        (f"c-x-9={OLD.hex()}", "ReplacementInvalid", "not a running pod"),
        (f"c-a-1={'ee' * 32}", "ReplacementInvalid", "is not a validator on chain"),
        (f"c-a-1={key('c-b-0').hex()}", "ReplacementInvalid", "belongs to b, not to a"),
        (f"c-a-1={key('c-a-0').hex()}", "KeyNotLost", "a validator whose key exists is not lost"),
    ],
)
def test_declarations_that_do_not_name_a_lost_validator_of_the_pod_s_organisation(
    text: str, reason: str, needle: str
) -> None:
    sp = spec()
    a = next_action(sp, lost(sp, text))
    assert isinstance(a, plan.Blocked) and a.reason == reason and needle in a.message, a


def test_an_unstamped_declaration_with_the_pod_s_key_still_present_is_refused() -> None:
    sp = spec()
    o = lost(sp, DECLARED)
    o = replace(o, node_keys={**o.node_keys, "c-a-1": NEW})
    a = next_action(sp, o)
    assert isinstance(a, plan.Blocked) and a.reason == "KeyNotLost", a


def test_the_declaration_round_trips_and_rejects_garbage() -> None:
    d = rp.Declaration.parse(STAMPED)
    assert d == rp.Declaration("c-a-1", OLD, STAMP) and d.text() == STAMPED
    assert rp.Declaration.parse(DECLARED) == rp.Declaration("c-a-1", OLD)
    for bad in ("", "c-a-1=", f"C-A-1={OLD.hex()}", f"c-a-1={OLD.hex()}@yesterday"):
        assert rp.Declaration.parse(bad) is None, bad


# --------------------------------------------------------------------------- reconcile


def test_reconcile_stamps_then_removes_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    sp = spec()
    raw: dict[str, Any] = {
        "chainId": "test",
        "consensus": {"type": "raft"},
        "organizations": [
            {"name": "a", "validators": 2},
            {"name": "b", "validators": 1},
            {"name": "c", "validators": 1},
        ],
        "security": {"tls": False},
    }
    o = replace(lost(sp), org_admins=PUBLIC)
    kube = OrgKube(o, KEYS)

    async def statuses(*_: Any) -> Any:
        return dict(kube.observed.nodes)

    async def proposals(*_: Any) -> Any:
        return ()

    monkeypatch.setattr(nodes, "statuses", statuses)
    monkeypatch.setattr(nodes, "proposals", proposals)
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    got: list[tuple[str, str]] = []
    ev = reconcile.Events(lambda r, m: got.append((r, m)), lambda r, m: got.append((r, m)))

    def run(annotation: str) -> reconcile.Outcome:
        subject = reconcile.Subject(OWNER, raw, annotations={rp.ANNOTATION: annotation})
        return asyncio.run(reconcile.reconcile(env, subject, ev))

    run(DECLARED)
    assert kube.annotations == {rp.ANNOTATION: STAMPED}  # NOW is 2026-03-01T00:00:00Z
    assert (
        "ReplacementDeclared",
        f"{rp.Declare(rp.Declaration('c-a-1', OLD), 'a')} (accepted at {STAMP})",
    ) in got
    # the chain lists the new key: the annotation goes
    vset = tuple(
        sorted([(key("c-a-0"), "a"), (NEW, "a"), (key("c-b-0"), "b"), (key("c-c-0"), "c")])
    )
    kube.observed = replace(
        o,
        node_keys={**o.node_keys, "c-a-1": NEW},
        nodes={p: replace(n, validators=vset) for p, n in o.nodes.items()},
    )
    out = run(STAMPED)
    assert kube.annotations == {rp.ANNOTATION: None}
    assert out.message == f"validator {OLD.hex()[:16]} replaced by {NEW.hex()[:16]} (c-a-1)"
    assert ("ValidatorReplaced", out.message) in got
