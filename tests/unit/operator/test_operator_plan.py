"""plan.next_step over table-driven (desired, observed) worlds, plus a seeded property check
that no step ever breaks quorum or changes more than one member / one restarting pod."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import pytest
from consortium_operator import plan
from consortium_operator.model import (
    ConsortiumSpec,
    Names,
    NodeStatus,
    Observed,
    PendingChange,
    PodState,
    StatefulSetState,
)

pytestmark = pytest.mark.unit

N = Names("c")
IMAGE = "consortium/node:test"
ADMIN = b"\xaa" * 32
ADMIN_B = b"\xbb" * 32


def key(pod: str) -> bytes:
    return hashlib.sha256(pod.encode()).digest()


def spec(
    orgs: Iterable[tuple[str, int]] = (("a", 2), ("b", 2)),
    kind: str = "bft",
    image: str | None = None,
    tls: bool = False,
) -> ConsortiumSpec:
    """Plaintext unless `tls`: the planner's certificate gates (a CA before the genesis or
    AddOrganization lists it) have their own tests (test_*_waits_for_the_ca*)."""
    return ConsortiumSpec.parse(
        {
            "chainId": "test",
            "consensus": {"type": kind},
            "organizations": [{"name": o, "validators": v} for o, v in orgs],
            "security": {"tls": tls},
            **({"image": image} if image else {}),
        }
    )


@dataclass
class World:
    """A compact description of what the operator observes."""

    sp: ConsortiumSpec
    replicas: dict[str, int]
    validators: set[str] | None = None  # pods in the chain's validator set (default: all pods)
    down: set[str] = field(default_factory=set)  # pods not ready / not answering
    heights: dict[str, int] = field(default_factory=dict)  # default 100
    keys: set[str] | None = None  # pods with keys (default: every pod + genesis members)
    partition: dict[str, int] = field(default_factory=dict)
    fingerprint: dict[str, str] = field(default_factory=dict)  # default: desired
    revisions: dict[str, str] = field(default_factory=dict)  # pod -> revision (default r1)
    update_revision: dict[str, str] = field(default_factory=dict)  # org -> (default r1)
    settled: bool = True
    genesis: bool = True
    statefulsets: bool = True
    chain_orgs: tuple[str, ...] = ()  # what nodes report as on chain (() = not reported)

    def pods(self) -> list[str]:
        return [N.pod(o, i) for o, r in self.replicas.items() for i in range(r)]

    def observed(self) -> Observed:
        pods = self.pods()
        keyed = set(pods) | set(self.keys or ())
        if self.keys is not None:
            keyed = set(self.keys)
        vals = set(pods) if self.validators is None else self.validators
        org_of = {N.pod(o, i): o for o, r in self.replicas.items() for i in range(40)}
        vset = tuple(sorted((key(p), org_of[p]) for p in vals))
        sts = {}
        if self.statefulsets:
            for o, r in self.replicas.items():
                org = self.sp.org(o)
                assert org is not None
                sts[o] = StatefulSetState(
                    org=o,
                    replicas=r,
                    partition=self.partition.get(o, 0),
                    fingerprint=self.fingerprint.get(o, self.sp.pod_fingerprint(org, IMAGE)),
                    update_revision=self.update_revision.get(o, "r1"),
                    generation=2,
                    observed_generation=2 if self.settled else 1,
                )
        pod_states = {
            p: PodState(
                name=p,
                org=org_of[p],
                ordinal=int(p.rsplit("-", 1)[1]),
                ready=p not in self.down,
                revision=self.revisions.get(p, "r1"),
                ip="10.0.0.1",
            )
            for p in (pods if self.statefulsets else [])
        }
        nodes = {
            p: NodeStatus(
                height=self.heights.get(p, 100),
                role="validator",
                leader=key(pods[0]),
                validators=vset,
                sync_state="synced",
                organizations=self.chain_orgs,
            )
            for p in pod_states
            if p not in self.down
        }
        return Observed(
            admin_public=ADMIN,
            node_keys={p: key(p) for p in keyed},
            genesis_validators=vset if self.genesis else None,
            genesis_hash="ab" * 32 if self.genesis else "",
            statefulsets=sts,
            pods=pod_states,
            nodes=nodes,
        )


def step(w: World) -> plan.Step:
    return plan.next_step(w.sp, w.observed(), N, IMAGE, max_lag=2)


def replicas(s: plan.Step) -> dict[str, int]:
    assert s.targets is not None
    return {o: t.replicas for o, t in s.targets.items()}


def partitions(s: plan.Step) -> dict[str, int]:
    assert s.targets is not None
    return {o: t.partition for o, t in s.targets.items()}


# --------------------------------------------------------------------------- genesis phase


def test_genesis_phase_is_gated_admin_key_then_node_keys_then_genesis() -> None:
    """Issue 14: a new chain is governed by its organisations — one admin key per
    organisation (in its own Secret) before anything else; no consortium admin key."""
    sp = spec()
    s = plan.next_step(sp, Observed(), N, IMAGE)
    assert s.action == plan.CreateAdminKey("a") and s.targets is None
    s = plan.next_step(sp, Observed(org_admins={"a": ADMIN}), N, IMAGE)
    assert s.action == plan.CreateAdminKey("b") and s.targets is None
    admins = {"a": ADMIN, "b": ADMIN_B}
    s = plan.next_step(sp, Observed(org_admins=admins), N, IMAGE)
    assert s.action == plan.CreateNodeKeys("a", ("c-a-0", "c-a-1")) and s.targets is None
    half = Observed(org_admins=admins, node_keys={"c-a-0": key("c-a-0"), "c-a-1": key("c-a-1")})
    s = plan.next_step(sp, half, N, IMAGE)
    assert s.action == plan.CreateNodeKeys("b", ("c-b-0", "c-b-1")) and s.targets is None
    full = Observed(
        org_admins=admins, node_keys={p: key(p) for p in ("c-a-0", "c-a-1", "c-b-0", "c-b-1")}
    )
    s = plan.next_step(sp, full, N, IMAGE)
    assert isinstance(s.action, plan.WriteGenesis) and s.targets is None
    assert s.phase == "Genesis"
    # the genesis lists each organisation's own admin key and no consortium admin
    assert s.action.org_admins == (("a", ADMIN), ("b", ADMIN_B))
    # a legacy consortium admin key left from an older operator does not stand in for them
    s = plan.next_step(sp, Observed(admin_public=ADMIN), N, IMAGE)
    assert s.action == plan.CreateAdminKey("a")


def test_workloads_start_with_the_genesis_members_not_the_current_spec() -> None:
    # genesis had a=2, b=2; the spec now asks a=3: the StatefulSet still starts at 2
    w = World(spec([("a", 3), ("b", 2)]), {"a": 2, "b": 2}, statefulsets=False)
    s = step(w)
    assert isinstance(s.action, plan.Wait) and s.action.reason == "Creating"
    assert replicas(s) == {"a": 2, "b": 2} and partitions(s) == {"a": 0, "b": 0}


def test_waits_for_the_statefulset_controller() -> None:
    s = step(World(spec(), {"a": 2, "b": 2}, settled=False))
    assert isinstance(s.action, plan.Wait) and s.action.reason == "StatefulSetPending"


def test_converged_when_everything_matches() -> None:
    s = step(World(spec(), {"a": 2, "b": 2}))
    assert isinstance(s.action, plan.Converged) and s.phase == "Running"
    assert replicas(s) == {"a": 2, "b": 2}


def test_no_node_answers_means_wait_not_act() -> None:
    w = World(
        spec([("a", 3), ("b", 2)]), {"a": 2, "b": 2}, down={"c-a-0", "c-a-1", "c-b-0", "c-b-1"}
    )
    s = step(w)
    assert isinstance(s.action, plan.Wait) and s.action.reason == "WaitingForNodes"
    assert replicas(s) == {"a": 2, "b": 2}


# --------------------------------------------------------------------------- scaling


def test_an_organisation_added_after_genesis_is_admitted_before_its_first_key() -> None:
    sp = spec([("a", 2), ("b", 2), ("c", 1)])
    w = World(sp, {"a": 2, "b": 2, "c": 0}, chain_orgs=("a", "b"))
    s = step(w)
    assert s.action == plan.AddOrganization("c") and s.phase == "Scaling"
    assert replicas(s) == {"a": 2, "b": 2, "c": 0}  # no pod before the chain trusts its CA
    # once the chain lists it: its first key, then its first pod, as any scale-up
    w.chain_orgs = ("a", "b", "c")
    assert step(w).action == plan.CreateNodeKeys("c", ("c-c-0",))
    # nodes that do not report organisations (older images): nothing to decide on
    w.chain_orgs = ()
    assert step(w).action == plan.CreateNodeKeys("c", ("c-c-0",))


def test_admitted_organisations_are_not_admitted_again() -> None:
    s = step(World(spec(), {"a": 2, "b": 2}, chain_orgs=("a", "b")))
    assert isinstance(s.action, plan.Converged)


SCALE_UP = [
    # (description, world, expected action, expected replicas)
    (
        "key first",
        World(spec([("a", 3), ("b", 2)]), {"a": 2, "b": 2}),
        plan.CreateNodeKeys("a", ("c-a-2",)),
        {"a": 2, "b": 2},
    ),
    (
        "then the pod",
        World(
            spec([("a", 3), ("b", 2)]),
            {"a": 2, "b": 2},
            keys={"c-a-0", "c-a-1", "c-a-2", "c-b-0", "c-b-1"},
        ),
        plan.Wait("Scaling", "starting c-a-2"),
        {"a": 3, "b": 2},
    ),
    (
        "wait until it caught up",
        World(
            spec([("a", 3), ("b", 2)]),
            {"a": 3, "b": 2},
            validators={"c-a-0", "c-a-1", "c-b-0", "c-b-1"},
            heights={"c-a-2": 40},
        ),
        plan.Wait("Scaling", "waiting for c-a-2 to catch up before adding it"),
        {"a": 3, "b": 2},
    ),
    (
        "then the governance tx",
        World(
            spec([("a", 3), ("b", 2)]),
            {"a": 3, "b": 2},
            validators={"c-a-0", "c-a-1", "c-b-0", "c-b-1"},
        ),
        plan.AddValidator("c-a-2", "a", key("c-a-2")),
        {"a": 3, "b": 2},
    ),
    (
        "done when the chain confirms",
        World(spec([("a", 3), ("b", 2)]), {"a": 3, "b": 2}),
        plan.Converged(),
        {"a": 3, "b": 2},
    ),
]

SCALE_DOWN = [
    (
        "governance tx first, highest ordinal",
        World(spec([("a", 1), ("b", 4)]), {"a": 3, "b": 4}),
        plan.RemoveValidator("c-a-2", "a", key("c-a-2")),
        {"a": 3, "b": 4},
    ),
    (
        "pod goes once the chain confirmed",
        World(
            spec([("a", 1), ("b", 4)]),
            {"a": 3, "b": 4},
            validators={"c-a-0", "c-a-1", "c-b-0", "c-b-1", "c-b-2", "c-b-3"},
        ),
        plan.Wait("Scaling", "stopping c-a-2"),
        {"a": 2, "b": 4},
    ),
    (
        "one member per pass: the next removal waits for the next pass",
        World(spec([("a", 1), ("b", 4)]), {"a": 2, "b": 4}),
        plan.RemoveValidator("c-a-1", "a", key("c-a-1")),
        {"a": 2, "b": 4},
    ),
    (
        "an organisation can retire all its validators",
        World(spec([("a", 0), ("b", 4)]), {"a": 1, "b": 4}),
        plan.RemoveValidator("c-a-0", "a", key("c-a-0")),
        {"a": 1, "b": 4},
    ),
]


@pytest.mark.parametrize(
    ("desc", "world", "action", "want"),
    SCALE_UP + SCALE_DOWN,
    ids=[c[0] for c in SCALE_UP + SCALE_DOWN],
)
def test_scaling(desc: str, world: World, action: plan.Action, want: dict[str, int]) -> None:
    s = step(world)
    assert s.action == action, desc
    assert replicas(s) == want


QUORUM = [
    # raft 3 -> 2 while another validator is down: 1 live of 2 would remain, quorum 2
    (
        "raft: removal blocked while a peer is down",
        World(
            spec([("a", 1), ("b", 1), ("c", 0)], "raft"), {"a": 1, "b": 1, "c": 1}, down={"c-b-0"}
        ),
    ),
    # bft 5 -> 4 with two others down: 3 live of 5, commit needs 4
    (
        "bft: removal blocked when the change cannot commit",
        World(spec([("a", 1), ("b", 4)]), {"a": 2, "b": 4}, down={"c-b-0", "c-b-1"}),
    ),
    # bft 4 -> 5 with two down: adding needs 4 live of 4 first
    (
        "bft: adding blocked when the current set has no quorum",
        World(
            spec([("a", 3), ("b", 2)]),
            {"a": 3, "b": 2},
            validators={"c-a-0", "c-a-1", "c-b-0", "c-b-1"},
            down={"c-b-0", "c-b-1"},
        ),
    ),
]


@pytest.mark.parametrize(("desc", "world"), QUORUM, ids=[c[0] for c in QUORUM])
def test_membership_changes_never_break_quorum(desc: str, world: World) -> None:
    s = step(world)
    assert isinstance(s.action, plan.Blocked), desc
    assert s.action.reason == "QuorumAtRisk" and s.phase == "Degraded"
    assert "quorum" in s.action.message


def test_removal_allowed_when_quorum_survives() -> None:
    # raft 3 -> 2 with everyone up: 2 live of 2 remain
    w = World(spec([("a", 1), ("b", 1), ("c", 0)], "raft"), {"a": 1, "b": 1, "c": 1})
    assert step(w).action == plan.RemoveValidator("c-c-0", "c", key("c-c-0"))


def test_removing_a_down_validator_is_allowed_if_the_rest_hold_quorum() -> None:
    # bft 5 -> 4, the victim itself is down: 4 live of 5 (commit needs 4); 4 of 4 remain
    w = World(spec([("a", 1), ("b", 4)]), {"a": 2, "b": 4}, down={"c-a-1"})
    assert step(w).action == plan.RemoveValidator("c-a-1", "a", key("c-a-1"))


# --------------------------------------------------------------------------- rollout


def old_fp(sp: ConsortiumSpec) -> dict[str, str]:
    return {o.name: "old" for o in sp.organizations}


def test_template_change_holds_every_pod_first() -> None:
    sp = spec(image="consortium/node:v2")
    s = step(World(sp, {"a": 2, "b": 2}, fingerprint=old_fp(sp)))
    assert isinstance(s.action, plan.Wait) and s.action.reason == "RollingUpdate"
    assert partitions(s) == {"a": 2, "b": 2}  # nothing restarts yet
    assert s.phase == "Upgrading"


def test_rollout_starts_with_one_pod_of_one_organisation() -> None:
    w = World(
        spec(), {"a": 2, "b": 2}, partition={"a": 2, "b": 2}, update_revision={"a": "r2", "b": "r2"}
    )
    s = step(w)
    assert s.action == plan.Wait("RollingUpdate", "restarting c-a-1")
    assert partitions(s) == {"a": 1, "b": 2}


def test_rollout_waits_for_catch_up_not_just_ready() -> None:
    w = World(
        spec(),
        {"a": 2, "b": 2},
        partition={"a": 1, "b": 2},
        update_revision={"a": "r2", "b": "r2"},
        revisions={"c-a-1": "r2"},
        heights={"c-a-1": 50},
    )
    s = step(w)
    assert s.action == plan.Wait("RollingUpdate", "waiting for c-a-1 to restart and catch up")
    assert partitions(s) == {"a": 1, "b": 2}


def test_rollout_moves_on_after_catch_up() -> None:
    w = World(
        spec(),
        {"a": 2, "b": 2},
        partition={"a": 1, "b": 2},
        update_revision={"a": "r2", "b": "r2"},
        revisions={"c-a-1": "r2"},
    )
    s = step(w)
    assert s.action == plan.Wait("RollingUpdate", "restarting c-a-0")
    assert partitions(s) == {"a": 0, "b": 2}


def test_rollout_goes_to_the_next_organisation_when_one_is_done() -> None:
    w = World(
        spec(),
        {"a": 2, "b": 2},
        partition={"a": 0, "b": 2},
        update_revision={"a": "r2", "b": "r2"},
        revisions={"c-a-0": "r2", "c-a-1": "r2"},
    )
    s = step(w)
    assert s.action == plan.Wait("RollingUpdate", "restarting c-b-1")
    assert partitions(s) == {"a": 0, "b": 1}


def test_rollout_never_restarts_a_node_the_quorum_needs() -> None:
    # bft 4 with c-b-0 down: restarting c-a-1 would leave 2 live of 4, quorum 3
    w = World(
        spec(),
        {"a": 2, "b": 2},
        partition={"a": 2, "b": 2},
        update_revision={"a": "r2", "b": "r2"},
        down={"c-b-0"},
    )
    s = step(w)
    assert isinstance(s.action, plan.Blocked) and s.action.reason == "QuorumAtRisk"
    assert partitions(s) == {"a": 2, "b": 2}


# --------------------------------------------------------------------------- properties


def _random_world(rng: random.Random) -> World:
    kind = rng.choice(["bft", "raft"])
    n_orgs = rng.randint(1, 3)
    names = ["a", "b", "c"][:n_orgs]
    min_total = 4 if kind == "bft" else 1
    while True:
        want = {o: rng.randint(0, 4) for o in names}
        have = {o: max(0, want[o] + rng.randint(-2, 2)) for o in names}
        if sum(want.values()) >= min_total and sum(have.values()) >= min_total:
            break
    sp = spec(list(want.items()), kind)
    pods = [N.pod(o, i) for o, r in have.items() for i in range(r)]
    validators = {p for p in pods if rng.random() < 0.9} or set(pods[:1])
    return World(
        sp,
        have,
        validators=validators,
        down={p for p in pods if rng.random() < 0.25},
        heights={p: rng.choice([100, 100, 100, 99, 60]) for p in pods},
        keys=set(pods) | {N.pod(o, have[o]) for o in names if rng.random() < 0.5},
        partition={o: rng.choice([0, have[o]]) for o in names},
        update_revision={o: rng.choice(["r1", "r2"]) for o in names},
    )


@pytest.mark.parametrize("seed", range(300))
def test_plan_invariants(seed: int) -> None:
    rng = random.Random(seed)
    w = _random_world(rng)
    obs = w.observed()
    s = plan.next_step(w.sp, obs, N, IMAGE, max_lag=2)
    q = w.sp.consensus.quorum
    vset = dict(obs.validator_set() or ())
    n = len(vset)

    def live(exclude: str | None = None) -> int:
        return sum(
            1
            for node_id in vset
            if (pod := obs.pod_of_key(node_id)) is not None
            and pod != exclude
            and pod not in w.down
            and w.heights.get(pod, 100) + 2 >= obs.chain_height()
        )

    if isinstance(s.action, plan.RemoveValidator):
        assert live() >= q(n) and live(s.action.pod) >= q(n - 1), f"seed {seed}"
        assert n - 1 >= w.sp.consensus.min_validators()
    if isinstance(s.action, plan.AddValidator):
        assert live() >= q(n) and live() >= q(n + 1) - 1
    if s.targets is not None:
        # at most one pod more or less, in one organisation
        diffs = [abs(s.targets[o].replicas - r) for o, r in w.replicas.items()]
        assert sum(diffs) <= 1, f"seed {seed}: {diffs}"
        # never more pods than keys
        for o, t in s.targets.items():
            for i in range(t.replicas):
                assert N.pod(o, i) in obs.node_keys
        # at most one organisation mid-rollout, and at most one pod restarts this pass:
        # a pod restarts when the partition drops to or below its ordinal while it runs an
        # old revision
        mid = [o for o, t in s.targets.items() if 0 < t.partition < t.replicas]
        assert len(mid) <= 1, f"seed {seed}: {mid}"
        restarting = [
            N.pod(o, i)
            for o, t in s.targets.items()
            for i in range(min(t.replicas, w.replicas[o]))
            if t.partition <= i < w.partition.get(o, 0)
            and w.revisions.get(N.pod(o, i), "r1") != w.update_revision.get(o, "r1")
        ]
        assert len(restarting) <= 1, f"seed {seed}: restarts {restarting}"
        for pod in restarting:
            assert live(pod) >= q(n), f"seed {seed}: restarting {pod} breaks quorum"


def test_plan_is_deterministic() -> None:
    rng = random.Random(7)
    for _ in range(50):
        w = _random_world(rng)
        obs = w.observed()
        assert plan.next_step(w.sp, obs, N, IMAGE) == plan.next_step(w.sp, obs, N, IMAGE)


def test_quorum_sizes() -> None:
    bft, raft = spec().consensus, spec(kind="raft").consensus
    assert [bft.quorum(n) for n in (4, 5, 6, 7, 10)] == [3, 4, 5, 5, 7]
    assert [raft.quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_which_cas_the_chain_trusts() -> None:
    from consortium_operator.model import Observed as Obs

    assert Obs().ca_trusted_on_chain("a") is False  # before genesis: any CA may be made
    g = Obs(genesis_validators=(), genesis_organizations=("a", "b"))
    assert g.ca_trusted_on_chain("a") is True  # listed in genesis: never replaced
    assert g.ca_trusted_on_chain("c") is None  # added later, no node reports yet
    reporting = {"p": NodeStatus(5, "validator", b"", (), "synced", "x", ("a", "b"))}
    assert replace(g, nodes=reporting).ca_trusted_on_chain("c") is False  # not admitted yet
    admitted = {"p": NodeStatus(6, "validator", b"", (), "synced", "x", ("a", "b", "c"))}
    assert replace(g, nodes=admitted).ca_trusted_on_chain("c") is True


# --------------------------------------------------------------------------- certificates


CA_A, CA_B, CA_C = b"-----BEGIN CERTIFICATE-----a", b"-----BEGIN CERTIFICATE-----b", b"cc"


def test_with_tls_the_genesis_waits_for_every_ca_then_lists_them() -> None:
    sp = spec(tls=True)
    pods = ("c-a-0", "c-a-1", "c-b-0", "c-b-1")
    admins = {"a": ADMIN, "b": ADMIN_B}
    full = Observed(org_admins=admins, node_keys={p: key(p) for p in pods}, ca_certs={"a": CA_A})
    s = plan.next_step(sp, full, N, IMAGE)
    assert s.action == plan.Wait("IssuingCertificates", "waiting for the CA of b")
    s = plan.next_step(sp, replace(full, ca_certs={"a": CA_A, "b": CA_B}), N, IMAGE)
    # a complete action: the executor needs nothing but the object's creation time
    assert s.action == plan.WriteGenesis(
        tuple((p, key(p)) for p in pods), (("a", CA_A), ("b", CA_B)), tuple(admins.items())
    )


def test_with_tls_admission_waits_for_the_ca_then_carries_it() -> None:
    sp = spec([("a", 2), ("b", 2), ("c", 1)], tls=True)
    w = World(sp, {"a": 2, "b": 2, "c": 0}, chain_orgs=("a", "b"))
    cas = {"a": CA_A, "b": CA_B}
    s = plan.next_step(sp, replace(w.observed(), ca_certs=cas), N, IMAGE)
    assert s.action == plan.Wait("IssuingCertificates", "waiting for the CA of c")
    assert replicas(s) == {"a": 2, "b": 2, "c": 0}
    s = plan.next_step(sp, replace(w.observed(), ca_certs={**cas, "c": CA_C}), N, IMAGE)
    assert s.action == plan.AddOrganization("c", CA_C)


# --------------------------------------------------------------------------- pending change


def test_a_pending_membership_change_is_awaited_until_the_chain_shows_it() -> None:
    w = World(
        spec([("a", 3), ("b", 2)]),
        {"a": 3, "b": 2},
        validators={"c-a-0", "c-a-1", "c-b-0", "c-b-1"},
    )
    assert step(w).action == plan.AddValidator("c-a-2", "a", key("c-a-2"))
    pending = PendingChange("add-validator", key("c-a-2").hex(), "ab" * 32, 1e12)
    s = plan.next_step(w.sp, replace(w.observed(), pending=pending), N, IMAGE)
    assert isinstance(s.action, plan.Wait) and s.action.reason == "WaitingForMembership"
    assert s.targets is not None  # workloads are still rendered while waiting
    w.validators = None  # every pod is a validator now: the change is visible
    s = plan.next_step(w.sp, replace(w.observed(), pending=pending), N, IMAGE)
    assert isinstance(s.action, plan.Converged)
    # nodes that do not answer cannot confirm anything: keep waiting
    w.down = set(w.pods())
    s = plan.next_step(w.sp, replace(w.observed(), pending=pending), N, IMAGE)
    assert isinstance(s.action, plan.Wait) and s.action.reason == "WaitingForMembership"
