"""Governance by organisations in the operator (issue 14): the planner turns what the spec asks
into proposals — opened by the organisation the change concerns, voted yes by the
organisations with `approve: auto` (one vote per pass, each naming its own organisation),
left pending for `approve: manual` ones — and the reconcile pass signs each proposal or vote
with the key from the named organisation's own Secret, never another's.

Worlds come from test_operator_plan.World, with the chain governed by organisations."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from consortium_node.client.keys import Signer
from consortium_operator import nodes, pki, plan, reconcile, status
from consortium_operator.kube import Kube, Observation
from consortium_operator.model import (
    ConsortiumSpec,
    Names,
    NodeStatus,
    Observed,
    Owner,
    PodState,
    ProposalView,
)
from consortium_operator.nodes import GovernanceError
from consortium_operator.settings import Settings

from tests.unit.operator.test_operator_plan import IMAGE, N, World, key

pytestmark = pytest.mark.unit

ORGS = ("a", "b", "c")


def gspec(
    approve: Mapping[str, str] | None = None,
    validators: Mapping[str, int] | None = None,
    extra: tuple[str, ...] = (),
) -> ConsortiumSpec:
    """Raft, plaintext; organisations a (3 validators wanted), b, c (1 each), plus `extra`."""
    counts = {"a": 3, "b": 1, "c": 1, **{o: 1 for o in extra}, **(validators or {})}
    return ConsortiumSpec.parse(
        {
            "chainId": "test",
            "consensus": {"type": "raft"},
            "organizations": [
                {"name": o, "validators": v, "approve": (approve or {}).get(o, "auto")}
                for o, v in counts.items()
            ],
            "security": {"tls": False},
        }
    )


def admin_of(org: str) -> bytes:
    return (org.encode() * 32)[:32]


def governed(
    sp: ConsortiumSpec,
    proposals: tuple[ProposalView, ...] | None = (),
    replicas: Mapping[str, int] | None = None,
    validators: set[str] | None = None,
    chain_orgs: tuple[str, ...] = ORGS,
) -> Observed:
    """a runs 3 pods of which c-a-2 is not a validator yet (scale-up 2 -> 3); b and c run 1."""
    r = dict(replicas or {"a": 3, "b": 1, "c": 1})
    vals = validators if validators is not None else {"c-a-0", "c-a-1", "c-b-0", "c-c-0"}
    w = World(sp, r, validators=vals, chain_orgs=chain_orgs)
    return replace(
        w.observed(),
        admin_public=None,
        org_governance=True,
        org_admins={o: admin_of(o) for o in chain_orgs},
        genesis_organizations=ORGS,
        proposals=proposals,
    )


ADD = plan.AddValidator("c-a-2", "a", key("c-a-2"))


def proposal(
    pid: int = 7,
    state: str = "PENDING",
    votes: tuple[tuple[str, bool], ...] = (("a", True),),
    change: tuple[str, str] = ("add_validator", key("c-a-2").hex()),
    needed: int = 2,
    closed: int = 0,
    members: tuple[str, ...] = ORGS,
) -> ProposalView:
    return ProposalView(
        id=pid,
        state=state,
        change=change,
        summary="add validator",
        proposer=votes[0][0] if votes else "a",
        votes=votes,
        members=members,
        yes=sum(1 for _, y in votes if y),
        needed=needed,
        expiry_height=1000,
        closed_height=closed,
    )


def next_action(sp: ConsortiumSpec, o: Observed) -> plan.Action:
    return plan.next_step(sp, o, N, IMAGE, max_lag=2).action


# --------------------------------------------------------------------------- planner


def test_a_spec_change_becomes_a_proposal_by_the_organisation_it_concerns() -> None:
    sp = gspec()
    assert next_action(sp, governed(sp)) == plan.Propose(ADD, "a")
    # a legacy chain (no organisation admins in genesis): the direct transaction, as before
    legacy = replace(governed(sp), org_governance=False, admin_public=b"\x09" * 32)
    assert next_action(sp, legacy) == ADD


def test_auto_organisations_vote_yes_one_per_pass_each_for_itself() -> None:
    sp = gspec()
    a = next_action(sp, governed(sp, (proposal(),)))
    assert a == plan.Vote(7, "b", ADD)  # a proposed (its yes); b is the next auto member
    a = next_action(sp, governed(sp, (proposal(votes=(("a", True), ("b", True)), needed=3),)))
    assert a == plan.Vote(7, "c", ADD)


def test_manual_organisations_leave_it_pending_with_the_tally_in_the_message() -> None:
    sp = gspec({"b": "manual", "c": "manual"})
    a = next_action(sp, governed(sp, (proposal(),)))
    assert a == plan.Wait(
        "WaitingForApprovals",
        "proposal 7 to add validator c-a-2 (a): 1/3, need 2; waiting for b, c",
    )
    # a person of b votes yes with the CLI; the chain executes it: wait for the set to change
    executed = proposal(state="EXECUTED", votes=(("a", True), ("b", True)), closed=99)
    a = next_action(sp, governed(sp, (executed,)))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForMembership"


def test_the_operator_never_votes_for_an_organisation_that_already_voted_or_is_manual() -> None:
    sp = gspec({"c": "manual"})
    # b voted no by hand: its vote stands; c is manual -> nobody left for the operator
    p = proposal(votes=(("a", True), ("b", False)), needed=2)
    a = next_action(sp, governed(sp, (p,)))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals"
    assert "waiting for c" in a.message


def test_a_manual_organisation_s_change_is_proposed_by_the_first_auto_member() -> None:
    sp = gspec({"a": "manual"})
    assert next_action(sp, governed(sp)) == plan.Propose(ADD, "b")
    none_auto = gspec({o: "manual" for o in ORGS})
    a = next_action(none_auto, governed(none_auto))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals"
    assert "no member organisation approves automatically" in a.message


def test_an_organisation_without_its_admin_key_neither_proposes_nor_votes() -> None:
    sp = gspec()
    o = governed(sp, (proposal(),))
    o = replace(o, org_admins={k: v for k, v in o.org_admins.items() if k != "b"})
    assert next_action(sp, o) == plan.Vote(7, "c", ADD)


def test_proposal_outcomes_executed_refused_expired() -> None:
    sp = gspec()
    # executed long ago (the same change done before, e.g. removed since): propose anew
    old = proposal(state="EXECUTED", closed=10)
    assert next_action(sp, governed(sp, (old,))) == plan.Propose(ADD, "a")
    for state in ("REJECTED", "FAILED", "WITHDRAWN"):
        a = next_action(sp, governed(sp, (proposal(state=state, closed=99),)))
        assert isinstance(a, plan.Blocked) and a.reason == "ProposalRefused", state
        assert f"proposal 7 to add validator c-a-2 (a) was {state.lower()}" in a.message
    for state in ("EXPIRED", "ABORTED"):
        assert next_action(sp, governed(sp, (proposal(state=state),))) == plan.Propose(ADD, "a")
    # the newest proposal for the change decides (newest first): an old rejection is history
    assert next_action(sp, governed(sp, (proposal(8), proposal(state="REJECTED")))) == (
        plan.Vote(8, "b", ADD)
    )
    # an open proposal for something else is not voted for
    other = proposal(change=("set_param", ""))
    assert next_action(sp, governed(sp, (other,))) == plan.Propose(ADD, "a")


def test_proposals_unknown_means_wait_not_propose_again() -> None:
    sp = gspec()
    a = next_action(sp, governed(sp, None))
    assert isinstance(a, plan.Wait) and a.reason == "WaitingForNodes"


def test_scale_down_is_proposed_by_the_organisation_losing_the_validator() -> None:
    sp = gspec(validators={"b": 1, "c": 1, "a": 2})
    o = governed(sp, validators={"c-a-0", "c-a-1", "c-a-2", "c-b-0", "c-c-0"})
    a = next_action(sp, o)
    assert a == plan.Propose(plan.RemoveValidator("c-a-2", "a", key("c-a-2")), "a")


def test_a_new_organisation_gets_its_own_key_then_is_proposed_by_a_member() -> None:
    sp = gspec(extra=("d",), validators={"a": 2, "d": 0})
    o = governed(sp, replicas={"a": 2, "b": 1, "c": 1, "d": 0})
    assert next_action(sp, o) == plan.CreateAdminKey("d")
    o = replace(o, org_admins={**o.org_admins, "d": admin_of("d")})
    # d is not a member yet: the first auto member proposes it, listing d's own key
    assert next_action(sp, o) == plan.Propose(plan.AddOrganization("d", b"", (admin_of("d"),)), "a")


def test_property_every_vote_and_proposal_is_cast_for_an_auto_member_with_its_key() -> None:
    """Seeded random approve modes, key sets and proposal states: every Propose/Vote names a
    member organisation that approves automatically and whose admin key the operator holds;
    a Vote never names one that already voted; manual organisations never appear."""
    rng = random.Random(14)
    seen = {"Propose": 0, "Vote": 0, "Wait": 0}
    for _ in range(400):
        approve = {o: rng.choice(("auto", "manual")) for o in ORGS}
        sp = gspec(approve)
        voted = tuple((o, rng.random() < 0.7) for o in ORGS if rng.random() < 0.4)
        state = rng.choice(("PENDING", "PENDING", "EXPIRED", "ABORTED"))
        props = (proposal(votes=voted, state=state),) if voted else ()
        o = governed(sp, props)
        held = {k: v for k, v in o.org_admins.items() if rng.random() < 0.8}
        a = next_action(sp, replace(o, org_admins=held))
        if isinstance(a, plan.Propose | plan.Vote):
            seen[type(a).__name__] += 1
            assert approve[a.org] == "auto" and a.org in held and a.org in ORGS
            if isinstance(a, plan.Vote):
                assert a.org not in dict(voted)
        else:
            seen["Wait"] += 1
            assert isinstance(a, plan.Wait) and a.reason == "WaitingForApprovals"
    assert min(seen.values()) > 20, seen  # every branch was exercised


# --------------------------------------------------------------------------- status


def test_status_shows_the_pending_proposal_and_waiting_for_approvals() -> None:
    sp = gspec({"b": "manual", "c": "manual"})
    o = governed(sp, (proposal(),))
    step = plan.next_step(sp, o, N, IMAGE)
    ctx = status.Context(N, "ns", 1, [], "2026-01-01T00:00:00Z", 2)
    st = status.build(sp, o, step, ctx)
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["WaitingForApprovals"]["status"] == "True"
    assert "1/3, need 2" in conds["WaitingForApprovals"]["message"]
    assert conds["Ready"]["status"] == "False"
    assert st["governance"] == "organizations"
    assert st["proposals"] == [
        {
            "id": 7,
            "action": "add_validator",
            "summary": "add validator",
            "proposer": "a",
            "votes": ["a=yes"],
            "approvals": "1/3, need 2",
            "waitingFor": ["b", "c"],
            "expiryHeight": 1000,
        }
    ]
    # events: opened (new), voted (votes changed), closed (terminal state)
    assert status.proposal_events([], o) == [
        ("ProposalOpened", "proposal 7 by a: add validator (1/3, need 2)")
    ]
    voted = replace(o, proposals=(proposal(votes=(("a", True), ("b", True))),))
    assert status.proposal_events(st["proposals"], voted)[0][0] == "ProposalVoted"
    done = replace(o, proposals=(proposal(state="EXECUTED", closed=99),))
    assert status.proposal_events(st["proposals"], done) == [
        ("ProposalClosed", "proposal 7 EXECUTED: add validator")
    ]
    assert status.proposal_events(st["proposals"], replace(o, proposals=None)) == []


# --------------------------------------------------------------------------- reconcile

OWNER = Owner("c", "ns", "uid-1")
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
KEYS = {o: pki.key_file(pki.new_key()) for o in ORGS}
PUBLIC = {o: Signer.from_json(k).public_key for o, k in KEYS.items()}
SETTINGS = Settings(node_image=IMAGE)


class OrgKube(Kube):
    """The in-memory Kube of test_operator_reconcile, with one admin Secret per organisation
    (`secrets`: organisation -> key file text; what read_org_admin_key returns)."""

    def __init__(self, observed: Observed, secrets: Mapping[str, str]) -> None:
        self.observed = observed
        self.secrets = dict(secrets)
        self.statuses: list[Mapping[str, Any]] = []
        self.annotations: dict[str, str | None] = {}
        self.read: list[str] = []

    async def observe(
        self, namespace: str, names: Names, orgs: tuple[str, ...], tls: bool = False
    ) -> Observation:
        return Observation(self.observed, None)

    async def apply(self, manifests: Any) -> None:
        pass

    async def patch_status(self, namespace: str, name: str, st: Mapping[str, Any]) -> None:
        self.statuses.append(st)

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        self.annotations.update(annotations)

    async def read_admin_key(self, namespace: str, names: Names) -> str:
        raise AssertionError("the consortium admin key is never read under governance by orgs")

    async def read_org_admin_key(self, namespace: str, names: Names, org: str) -> str:
        self.read.append(org)
        return self.secrets[org]


class GovChain:
    """The chain's answers: validators, proposals (Propose opens one with the proposer's yes,
    Vote adds one; MAJORITY of 3 executes), and who signed each transaction."""

    def __init__(self) -> None:
        self.validators = ["c-a-0", "c-a-1", "c-b-0", "c-c-0"]
        self.proposals: list[ProposalView] = []
        self.signed: list[tuple[bytes, Any]] = []  # (signer public key, action)

    async def statuses(self, pods: Mapping[str, PodState], *_: Any) -> dict[str, NodeStatus]:
        org = {"c-a-0": "a", "c-a-1": "a", "c-a-2": "a", "c-b-0": "b", "c-c-0": "c"}
        vset = tuple(sorted((key(p), org[p]) for p in self.validators))
        return {
            p: NodeStatus(50, "follower", key("c-a-0"), vset, "synced", "test", ORGS) for p in pods
        }

    async def list(self, *_: Any) -> tuple[ProposalView, ...]:
        return tuple(reversed(self.proposals))

    def org_of(self, public: bytes) -> str:
        return next(o for o, k in PUBLIC.items() if k == public)

    async def governance(self, eps: Any, chain_id: str, text: str, action: Any, *_: Any) -> str:
        signer = Signer.from_json(text).public_key
        self.signed.append((signer, action))
        org = self.org_of(signer)
        if isinstance(action, plan.Propose):
            self.proposals.append(proposal(len(self.proposals) + 1, votes=((org, True),)))
        elif isinstance(action, plan.Vote):
            self.vote(action.proposal, org)
        return "cd" * 32

    def vote(self, pid: int, org: str) -> None:
        p = self.proposals[pid - 1]
        p = proposal(p.id, votes=(*p.votes, (org, True)))
        if p.yes >= p.needed:
            p = replace(p, state="EXECUTED", closed_height=49)
        self.proposals[pid - 1] = p


@pytest.fixture
def gchain(monkeypatch: pytest.MonkeyPatch) -> GovChain:
    c = GovChain()
    monkeypatch.setattr(nodes, "statuses", c.statuses)
    monkeypatch.setattr(nodes, "proposals", c.list)
    monkeypatch.setattr(nodes, "governance", c.governance)
    return c


def _subject(sp_approve: Mapping[str, str], st: Mapping[str, Any] | None = None) -> Any:
    raw = {
        "chainId": "test",
        "consensus": {"type": "raft"},
        "organizations": [
            {"name": "a", "validators": 3},
            {"name": "b", "validators": 1, "approve": sp_approve.get("b", "auto")},
            {"name": "c", "validators": 1, "approve": sp_approve.get("c", "auto")},
        ],
        "security": {"tls": False},
    }
    return reconcile.Subject(OWNER, raw, status=dict(st or {}), generation=1)


def _world(approve: Mapping[str, str]) -> Observed:
    sp = ConsortiumSpec.parse(_subject(approve).spec)
    return replace(governed(sp, None), org_admins=PUBLIC, nodes={}, proposals=None)


def _events() -> tuple[reconcile.Events, list[tuple[str, str]]]:
    got: list[tuple[str, str]] = []
    return reconcile.Events(lambda r, m: got.append((r, m)), lambda r, m: got.append((r, m))), got


def test_reconcile_signs_each_proposal_and_vote_with_its_own_organisation_s_key(
    gchain: GovChain,
) -> None:
    kube = OrgKube(_world({}), KEYS)
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    ev, got = _events()
    out = asyncio.run(reconcile.reconcile(env, _subject({}), ev))
    assert out.requeue == 0.5 and out.message == "propose to add validator c-a-2 (a) (as a)"
    out = asyncio.run(reconcile.reconcile(env, _subject({}, kube.statuses[-1]), ev))
    assert out.message == "vote yes on proposal 1 (add validator c-a-2 (a)) as b"
    # each transaction was signed by the organisation it names, read from its own Secret
    assert [(gchain.org_of(k), type(a).__name__) for k, a in gchain.signed] == [
        ("a", "Propose"),
        ("b", "Vote"),
    ]
    assert kube.read == ["a", "b"]
    assert gchain.proposals[0].state == "EXECUTED"
    out = asyncio.run(reconcile.reconcile(env, _subject({}, kube.statuses[-1]), ev))
    assert out.message.startswith("waiting for the chain to apply proposal 1")
    assert ("ProposalClosed", "proposal 1 EXECUTED: add validator") in got
    gchain.validators.append("c-a-2")
    out = asyncio.run(reconcile.reconcile(env, _subject({}, kube.statuses[-1]), ev))
    assert out.requeue is None and len(gchain.signed) == 2  # converged, nothing more signed


def test_reconcile_waits_for_a_manual_organisation_s_vote_cast_by_hand(gchain: GovChain) -> None:
    manual = {"b": "manual", "c": "manual"}
    kube = OrgKube(_world(manual), KEYS)
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    ev, got = _events()
    asyncio.run(reconcile.reconcile(env, _subject(manual), ev))  # a proposes
    for _ in range(2):  # stays pending: no vote is cast for b or c, pass after pass
        out = asyncio.run(reconcile.reconcile(env, _subject(manual, kube.statuses[-1]), ev))
        assert out.requeue == SETTINGS.retry_seconds
        cond = {c["type"]: c for c in kube.statuses[-1]["conditions"]}["WaitingForApprovals"]
        assert cond["status"] == "True" and "1/3, need 2; waiting for b, c" in cond["message"]
    assert len(gchain.signed) == 1 and kube.read == ["a"]
    assert ("ProposalOpened", "proposal 1 by a: add validator (1/3, need 2)") in got
    gchain.vote(1, "b")  # a person of b: `consortium gov vote 1 yes` in b's context
    out = asyncio.run(reconcile.reconcile(env, _subject(manual, kube.statuses[-1]), ev))
    assert out.message.startswith("waiting for the chain to apply proposal 1")
    cond = {c["type"]: c for c in kube.statuses[-1]["conditions"]}["WaitingForApprovals"]
    assert cond["status"] == "False"


def test_a_secret_holding_another_organisation_s_key_is_refused(gchain: GovChain) -> None:
    """b's Secret holds a's key (a mistake or an attack): the operator does not sign b's vote
    with it — the pass fails and retries; nothing is submitted."""
    kube = OrgKube(_world({}), {**KEYS, "b": KEYS["a"]})
    gchain.proposals.append(proposal(1))
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    out = asyncio.run(reconcile.reconcile(env, _subject({}), _events()[0]))
    assert out.requeue == SETTINGS.retry_seconds
    assert "the key read for b is not b's admin key" in out.message
    assert gchain.signed == []
    with pytest.raises(GovernanceError):
        nodes.signer_for(KEYS["a"], "b", PUBLIC["b"])
    assert nodes.signer_for(KEYS["b"], "b", PUBLIC["b"]).public_key == PUBLIC["b"]


def test_a_new_chain_with_legacy_genesis_admins_is_refused_not_silently_changed() -> None:
    raw = {
        "chainId": "test",
        "organizations": [{"name": "a", "validators": 4}],
        "genesis": {"admins": ["ab" * 32]},
    }
    sp = ConsortiumSpec.parse(raw)
    s = plan.next_step(sp, Observed(), N, IMAGE)
    assert isinstance(s.action, plan.Blocked) and s.action.reason == "GenesisAdminsUnsupported"
    assert s.phase == "Degraded"
    # an existing (legacy) chain with them keeps working: the refusal is for new genesis only
    w = World(sp, {"a": 4})
    assert isinstance(plan.next_step(sp, w.observed(), N, IMAGE).action, plan.Converged)


# --------------------------------------------------------------------------- member keys (issue 20)


def mspec(membership: str = "permissioned") -> ConsortiumSpec:
    return ConsortiumSpec.parse(
        {
            "chainId": "test",
            "consensus": {"type": "raft"},
            "organizations": [
                {"name": "a", "validators": 3},
                {"name": "b", "validators": 1, "memberKey": True},
                {"name": "c", "validators": 1},
            ],
            "genesis": {"membership": membership},
            "security": {"tls": False},
        }
    )


MEMBER_B = b"\x42" * 32


def test_a_member_key_is_created_before_the_genesis_which_vouches_for_it() -> None:
    sp = mspec()
    admins = {o: admin_of(o) for o in ORGS}
    s = plan.next_step(sp, Observed(org_admins=admins), N, IMAGE)
    assert s.action == plan.CreateMemberKey("b") and s.phase == "Genesis"
    pods = ("c-a-0", "c-a-1", "c-a-2", "c-b-0", "c-c-0")
    full = Observed(
        org_admins=admins, member_keys={"b": MEMBER_B}, node_keys={p: key(p) for p in pods}
    )
    s = plan.next_step(sp, full, N, IMAGE)
    assert isinstance(s.action, plan.WriteGenesis) and s.action.members == (("b", MEMBER_B),)


def test_a_member_key_not_in_genesis_is_vouched_for_by_its_own_organisation() -> None:
    sp = mspec()
    done = governed(sp, validators={"c-a-0", "c-a-1", "c-a-2", "c-b-0", "c-c-0"})
    # memberKey turned on after genesis: the key, then AddMember signed by b itself
    assert next_action(sp, done) == plan.CreateMemberKey("b")
    with_key = replace(done, member_keys={"b": MEMBER_B})
    assert next_action(sp, with_key) == plan.RegisterMember("b", MEMBER_B)
    # recorded as registered (the Secret's annotation), or vouched for in genesis: converged
    for o in (
        replace(with_key, registered_members={"b": MEMBER_B}),
        replace(with_key, genesis_members=frozenset({MEMBER_B})),
    ):
        assert isinstance(next_action(sp, o), plan.Converged)
    # an annotation naming an older key does not count for the current one
    stale = replace(with_key, registered_members={"b": b"\x01" * 32})
    assert next_action(sp, stale) == plan.RegisterMember("b", MEMBER_B)
    # an open chain takes any sender: nothing to vouch for
    open_sp = mspec("open")
    assert isinstance(next_action(open_sp, replace(with_key)), plan.Converged)
    # without b's own admin key nobody may vouch for b's member: Degraded, not another's key
    no_b = replace(with_key, org_admins={k: v for k, v in with_key.org_admins.items() if k != "b"})
    a = next_action(sp, no_b)
    assert isinstance(a, plan.Blocked) and a.reason == "NoAdminKey"


def test_reconcile_vouches_for_the_member_key_with_its_organisation_s_key(
    gchain: GovChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = {
        "chainId": "test",
        "consensus": {"type": "raft"},
        "organizations": [
            {"name": "a", "validators": 3},
            {"name": "b", "validators": 1, "memberKey": True},
            {"name": "c", "validators": 1},
        ],
        "security": {"tls": False},
    }
    gchain.validators.append("c-a-2")
    world = replace(_world({}), member_keys={"b": MEMBER_B})
    annotated: list[tuple[str, Mapping[str, str | None]]] = []

    class Annotating(OrgKube):
        async def annotate_secret(
            self, namespace: str, name: str, annotations: Mapping[str, str | None]
        ) -> None:
            annotated.append((name, annotations))

    kube = Annotating(world, KEYS)
    env = reconcile.Env(SETTINGS, kube, clock=lambda: NOW)
    subject = reconcile.Subject(OWNER, raw, generation=1)
    out = asyncio.run(reconcile.reconcile(env, subject, _events()[0]))
    assert out.message == f"vouch for the member key {MEMBER_B.hex()[:16]} of b"
    ((signer, action),) = gchain.signed
    assert gchain.org_of(signer) == "b" and action == plan.RegisterMember("b", MEMBER_B)
    assert annotated == [("c-b-client", {"consortium.dev/member-registered": MEMBER_B.hex()})]

    # the chain says it is a member already (an earlier pass committed it): recorded as done
    async def refused(*_: Any) -> str:
        raise GovernanceError("vouch for ...: refused: 4242424242424242... is already a member key")

    monkeypatch.setattr(nodes, "governance", refused)
    out = asyncio.run(reconcile.reconcile(env, subject, _events()[0]))
    assert len(annotated) == 2 and out.requeue == 0.5


def test_on_a_legacy_chain_the_member_key_is_vouched_for_with_the_consortium_admin_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    legacy_key = pki.key_file(pki.new_key())
    signed: list[tuple[bytes, Any]] = []

    async def governance(_eps: Any, _chain_id: str, text: str, action: Any, *_: Any) -> str:
        signed.append((Signer.from_json(text).public_key, action))
        return "ef" * 32

    chain = GovChain()
    chain.validators.append("c-a-2")
    monkeypatch.setattr(nodes, "statuses", chain.statuses)
    monkeypatch.setattr(nodes, "governance", governance)

    class Legacy(OrgKube):
        async def read_admin_key(self, namespace: str, names: Names) -> str:
            return legacy_key

        async def read_org_admin_key(self, namespace: str, names: Names, org: str) -> str:
            raise AssertionError("a legacy chain has no organisation admin keys")

        async def annotate_secret(self, *_: Any) -> None:
            pass

    raw = dict(_subject({}).spec)
    raw["organizations"] = [
        {"name": "a", "validators": 3},
        {"name": "b", "validators": 1, "memberKey": True},
        {"name": "c", "validators": 1},
    ]
    world = replace(
        _world({}),
        org_governance=False,
        org_admins={},
        admin_public=Signer.from_json(legacy_key).public_key,
        member_keys={"b": MEMBER_B},
    )
    env = reconcile.Env(SETTINGS, Legacy(world, {}), clock=lambda: NOW)
    out = asyncio.run(reconcile.reconcile(env, reconcile.Subject(OWNER, raw), _events()[0]))
    assert out.message == f"vouch for the member key {MEMBER_B.hex()[:16]} of b"
    assert signed == [(Signer.from_json(legacy_key).public_key, plan.RegisterMember("b", MEMBER_B))]
