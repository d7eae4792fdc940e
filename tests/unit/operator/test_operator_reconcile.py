"""The reconcile pass (consortium_operator.reconcile) over an in-memory Kube: a committed
membership change is remembered in the object's annotation and awaited by requeueing, never
by waiting inside the pass (the per-object lock is free as soon as the pass returns); and the
shape rules of the operator package: handlers.py holds only kopf-decorated functions, no
function takes more than 6 parameters, the status timer follows CONSORTIUM_STATUS_SECONDS."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from consortium_operator import nodes, plan, reconcile
from consortium_operator.kube import Kube, MetaEvent, Observation
from consortium_operator.model import (
    PENDING_ANNOTATION,
    ConsortiumSpec,
    Names,
    NodeStatus,
    Observed,
    Owner,
    PodState,
    StatefulSetState,
)
from consortium_operator.settings import Settings

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[3] / "operator" / "consortium_operator"
N = Names("c")
OWNER = Owner("c", "ns", "uid-1")
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SPEC = {
    "chainId": "test",
    "consensus": {"type": "raft"},
    "organizations": [{"name": "a", "validators": 3}],
    "security": {"tls": False},
}


def key(pod: str) -> bytes:
    return pod.encode().ljust(32, b"\0")


class MemoryKube(Kube):
    """Kube's public surface over dicts: what the pass reads and writes, nothing more."""

    def __init__(self, observed: Observed) -> None:
        self.observed = observed
        self.observe_calls = 0
        self.applied: list[dict[str, Any]] = []
        self.statuses: list[Mapping[str, Any]] = []
        self.annotations: dict[str, str | None] = {}
        self.noticed: list[tuple[str, str, str, str | None]] = []
        self.own: set[tuple[str, str, str | None]] = set()  # objects as this "process" applied

    def notice(self, kind: str, namespace: str, name: str, rv: str | None) -> bool:
        self.noticed.append((kind, namespace, name, rv))
        return (kind, name, rv) not in self.own  # Kube.notice: news but our own apply's event

    async def observe(
        self, namespace: str, names: Names, orgs: tuple[str, ...], tls: bool = False
    ) -> Observation:
        self.observe_calls += 1
        return Observation(self.observed, None)

    async def apply(self, manifests: Any) -> None:
        self.applied.extend(manifests)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.append(status)

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        self.annotations.update(annotations)

    async def read_admin_key(self, namespace: str, names: Names) -> str:
        return "admin key file"


class Chain:
    """What the nodes answer: the validator set, changed by `commit`."""

    def __init__(self, validators: list[str]) -> None:
        self.validators = validators
        self.committed: list[plan.Action] = []

    async def statuses(self, pods: Mapping[str, PodState], *_: Any) -> dict[str, NodeStatus]:
        vset = tuple((key(p), "a") for p in self.validators)
        return {p: NodeStatus(10, "follower", key("c-a-0"), vset, "synced") for p in pods}

    async def governance(self, eps: Any, chain_id: str, admin: str, action: Any, *_: Any) -> str:
        self.committed.append(action)
        return "ab" * 32


def world() -> Observed:
    pods = {
        p: PodState(p, "a", i, True, "r1", "10.0.0.1")
        for i, p in enumerate(("c-a-0", "c-a-1", "c-a-2"))
    }
    sp = ConsortiumSpec.parse(SPEC)
    org = sp.org("a")
    assert org is not None
    sts = StatefulSetState("a", 3, 0, sp.pod_fingerprint(org, Settings().node_image), "r1", 1, 1)
    return Observed(
        admin_public=b"\x09" * 32,
        node_keys={p: key(p) for p in pods},
        genesis_validators=((key("c-a-0"), "a"), (key("c-a-1"), "a")),
        genesis_hash="ab" * 32,
        statefulsets={"a": sts},
        pods=pods,
    )


def subject(annotations: Mapping[str, str] | None = None) -> reconcile.Subject:
    return reconcile.Subject(OWNER, SPEC, annotations=dict(annotations or {}), generation=1)


def events() -> reconcile.Events:
    return reconcile.Events(lambda r, m: None, lambda r, m: None)


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Chain:
    c = Chain(["c-a-0", "c-a-1"])
    monkeypatch.setattr(nodes, "statuses", c.statuses)
    monkeypatch.setattr(nodes, "governance", c.governance)
    return c


def test_a_membership_change_is_awaited_by_requeueing_not_inside_the_pass(chain: Chain) -> None:
    kube = MemoryKube(world())
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW)

    # pass 1: c-a-2 has caught up -> AddValidator, committed; the pass returns at once
    out = asyncio.run(reconcile.reconcile(env, subject(), events()))
    assert chain.committed == [plan.AddValidator("c-a-2", "a", key("c-a-2"))]
    assert out.requeue == 0.5 and out.message == "add validator c-a-2 (a)"
    assert kube.observe_calls == 1  # no polling inside the pass (it used to observe 20x)
    assert not env.lock(OWNER).locked()
    pending = kube.annotations[PENDING_ANNOTATION]
    assert pending is not None
    change = json.loads(pending)
    assert change["kind"] == "add-validator" and change["subject"] == key("c-a-2").hex()
    assert change["until"] == NOW.timestamp() + Settings().governance_timeout

    # pass 2: the chain has not applied it yet -> wait (requeue), never plan it again
    out = asyncio.run(reconcile.reconcile(env, subject({PENDING_ANNOTATION: pending}), events()))
    assert len(chain.committed) == 1
    assert out.requeue == reconcile.MEMBERSHIP_POLL
    assert out.message.startswith("waiting for the chain to apply add validator")
    assert kube.statuses[-1]["conditions"][1]["reason"] == "WaitingForMembership"

    # pass 3: the chain shows it -> the annotation is cleared and the plan moves on
    chain.validators.append("c-a-2")
    out = asyncio.run(reconcile.reconcile(env, subject({PENDING_ANNOTATION: pending}), events()))
    assert kube.annotations[PENDING_ANNOTATION] is None
    assert out.requeue is None and len(chain.committed) == 1  # converged


def test_an_expired_pending_change_is_no_longer_awaited(chain: Chain) -> None:
    kube = MemoryKube(world())
    stale = reconcile.Env(Settings(), kube, clock=lambda: NOW + dt.timedelta(seconds=60))
    change = {"kind": "add-validator", "subject": key("c-a-2").hex(), "tx": "ab", "until": 1.0}
    out = asyncio.run(
        reconcile.reconcile(stale, subject({PENDING_ANNOTATION: json.dumps(change)}), events())
    )
    # planned afresh (the change was lost, e.g. the chain refused it): AddValidator again,
    # and the annotation now holds the new change, not the expired one (nor nothing)
    assert chain.committed == [plan.AddValidator("c-a-2", "a", key("c-a-2"))]
    assert out.requeue == 0.5
    pending = kube.annotations[PENDING_ANNOTATION]
    assert pending is not None and json.loads(pending)["until"] > 1.0


@pytest.mark.usefixtures("chain")
def test_the_timer_skips_an_object_whose_pass_holds_the_lock() -> None:
    kube = MemoryKube(world())
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW)

    async def run() -> reconcile.Outcome | None:
        async with env.lock(OWNER):
            return await reconcile.timer(env, subject(), events())

    assert asyncio.run(run()) is None and kube.observe_calls == 0


def test_the_timer_runs_a_pass_when_one_is_due(chain: Chain) -> None:
    """The timer ticks every timer_seconds (min of retry 5 s and status 10 s); a pass runs
    when one is due: status_seconds after a converged pass, the requeue after any other
    (a tick up to a fifth of its interval early still runs it)."""
    kube = MemoryKube(world())
    now = [100.0]
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW, monotonic=lambda: now[0])
    out = asyncio.run(reconcile.reconcile(env, subject(), events()))  # an action: 0.5 s
    assert out.requeue == 0.5 and kube.observe_calls == 1
    chain.validators.append("c-a-2")  # the chain applied it
    now[0] += 0.5
    assert asyncio.run(reconcile.timer(env, subject(), events())) == reconcile.Outcome(
        None, "converged"
    )
    assert kube.observe_calls == 2
    for dt_, runs in ((5.0, False), (3.9, False), (0.2, True)):  # due 10 s after: 9.1 runs
        now[0] += dt_
        got = asyncio.run(reconcile.timer(env, subject(), events()))
        assert (got is not None) is runs, (now[0], got)
    assert kube.observe_calls == 3


class GatedKube(MemoryKube):
    """A MemoryKube whose observe for consortium "x" sets `entered`, then waits for `gate`:
    x's pass is held inside observe until the test opens the gate."""

    def __init__(self, observed: Observed) -> None:
        super().__init__(observed)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def observe(self, namespace: str, names: Names, *a: Any, **kw: Any) -> Observation:
        self.observe_calls += 1
        if names.consortium == "x":
            self.entered.set()
            await self.gate.wait()
        return Observation(self.observed, None)


def test_timer_passes_wait_for_a_slot_and_a_change_pass_never_does(chain: Chain) -> None:
    """Settings.timer_passes timer passes at once (here 1): a second object's timer pass
    waits while the first is in its pass, its change handler's pass runs at once meanwhile
    (100 polled consortia delayed a spec change on all of them by 25-68 s), and the timer
    pass that waited reads the object again and finds no pass due any more."""
    chain.validators.append("c-a-2")  # converged: the next pass is due status_seconds later
    kube = GatedKube(world())
    env = reconcile.Env(Settings(timer_passes=1), kube, clock=lambda: NOW)
    x = reconcile.Subject(Owner("x", "ns", "uid-x"), SPEC, generation=1)
    reads: list[str] = []

    def fresh_c() -> reconcile.Subject:
        reads.append("c")
        return subject()

    async def run() -> tuple[reconcile.Outcome | None, reconcile.Outcome | None]:
        slow = asyncio.create_task(reconcile.timer(env, x, events()))
        await kube.entered.wait()  # x's timer pass holds the one slot, inside observe
        waiting = asyncio.create_task(reconcile.timer(env, fresh_c, events()))
        await asyncio.sleep(0.01)
        assert kube.observe_calls == 1  # c's timer pass waits for the slot
        await reconcile.reconcile(env, subject(), events())  # c's spec changed: at once
        assert kube.observe_calls == 2
        kube.gate.set()
        return await slow, await waiting

    first, second = asyncio.run(run())
    assert first is not None and second is None  # c's pass ran meanwhile: none due
    assert kube.observe_calls == 2 and reads == ["c", "c"]  # read again after waiting


@pytest.mark.usefixtures("chain")
def test_a_timer_pass_waits_while_a_change_pass_is_in_progress() -> None:
    """Change passes first: with slots to spare, a timer pass still starts only once no
    change handler's pass is in progress (it competed with the spec change's passes for
    the apiserver)."""
    kube = GatedKube(world())
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW)
    x = reconcile.Subject(Owner("x", "ns", "uid-x"), SPEC, generation=2)

    async def run() -> reconcile.Outcome | None:
        change = asyncio.create_task(reconcile.reconcile(env, x, events()))
        await kube.entered.wait()  # x's change pass is inside observe
        polled = asyncio.create_task(reconcile.timer(env, subject(), events()))
        await asyncio.sleep(0.01)
        assert kube.observe_calls == 1  # the timer pass waits
        kube.gate.set()
        await change
        return await polled

    assert asyncio.run(run()) is not None and kube.observe_calls == 2


@pytest.mark.usefixtures("chain")
def test_an_invalid_spec_is_permanent_and_written_as_failed() -> None:
    kube = MemoryKube(world())
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW)
    bad = reconcile.Subject(OWNER, {**SPEC, "chainId": "Bad Id"})
    out = asyncio.run(reconcile.reconcile(env, bad, events()))
    assert out.permanent and "chainId" in out.message
    assert kube.statuses[-1]["phase"] == "Failed" and kube.observe_calls == 0


# --------------------------------------------------------------------------- shape rules


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_handlers_holds_only_kopf_decorated_functions() -> None:
    tree = ast.parse((PACKAGE / "handlers.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert top, "no handlers?"
    for fn in top:
        decorators = [ast.unparse(d) for d in fn.decorator_list]
        assert decorators and all(d.startswith("kopf.") for d in decorators), fn.name
    assert not [n for n in tree.body if isinstance(n, ast.ClassDef)]
    nested = {f.name for f in _functions(tree)} - {f.name for f in top}
    assert not nested, nested


def test_no_operator_function_takes_more_than_six_parameters() -> None:
    wide = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            a = fn.args
            params = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            params = [p for p in params if p not in ("self", "cls")]
            if len(params) > 6:
                wide.append(f"{path.name}:{fn.lineno} {fn.name}({len(params)})")
    assert wide == []


def test_the_status_timer_follows_consortium_status_seconds() -> None:
    """The Helm value operator.statusSeconds -> CONSORTIUM_STATUS_SECONDS -> the kopf timer's
    interval (it was a fixed 10 s whatever the value)."""
    code = (
        "import kopf, consortium_operator.handlers as h\n"
        "t = [x for x in kopf.get_default_registry()._spawning.get_all_handlers()]\n"
        "print([(x.id, x.interval, x.initial_delay) for x in t])\n"
    )
    env = {**os.environ, "CONSORTIUM_STATUS_SECONDS": "3.5"}
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[('report', 3.5, 3.5)]"


def test_a_new_change_in_the_pass_that_sees_the_last_one_applied_is_remembered(
    chain: Chain,
) -> None:
    """The chain shows the pending c-a-2 and the plan adds c-a-3 in the same pass: the
    annotation must end up holding c-a-3's change (clearing the old one comes first)."""
    spec4 = {**SPEC, "organizations": [{"name": "a", "validators": 4}]}
    w = world()
    pods = {**w.pods, "c-a-3": PodState("c-a-3", "a", 3, True, "r1", "10.0.0.1")}
    sts = StatefulSetState(
        "a", 4, 0, ConsortiumSpec.parse(spec4).pod_fingerprint(
            ConsortiumSpec.parse(spec4).organizations[0], Settings().node_image
        ), "r1", 1, 1,
    )  # fmt: skip
    kube = MemoryKube(
        replace(w, pods=pods, node_keys={p: key(p) for p in pods}, statefulsets={"a": sts})
    )
    chain.validators.append("c-a-2")
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW)
    old = {"kind": "add-validator", "subject": key("c-a-2").hex(), "tx": "ab", "until": 1e12}
    sub = reconcile.Subject(
        OWNER, spec4, annotations={PENDING_ANNOTATION: json.dumps(old)}, generation=1
    )
    out = asyncio.run(reconcile.reconcile(env, sub, events()))
    assert chain.committed == [plan.AddValidator("c-a-3", "a", key("c-a-3"))]
    assert out.requeue == 0.5
    pending = kube.annotations[PENDING_ANNOTATION]
    assert pending is not None and json.loads(pending)["subject"] == key("c-a-3").hex()


def test_the_change_handler_leaves_waiting_to_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a follow-up sooner than the timer is a kopf retry (kopf writes every retry's
    progress to the object); a pass waiting at the retry pace returns, the timer follows."""
    import kopf
    from consortium_operator import handlers

    outcomes: list[reconcile.Outcome] = []

    async def fake(*_: Any) -> reconcile.Outcome:
        return outcomes.pop()

    monkeypatch.setattr(reconcile, "reconcile", fake)  # what handlers calls as passes.reconcile
    body = kopf.Body({"metadata": {"name": "c", "namespace": "ns", "uid": "u"}, "spec": {}})

    def handle(out: reconcile.Outcome) -> None:
        outcomes.append(out)
        handler: Any = handlers.reconcile  # kopf's decorator types it for kopf's own calls
        asyncio.run(handler(body=body, memo=kopf.Memo(env=None)))

    handle(reconcile.Outcome(None, "converged"))
    handle(reconcile.Outcome(5.0, "waiting for c-a-0"))  # the timer's pace: no kopf retry
    handle(reconcile.Outcome(15.0, "blocked"))
    with pytest.raises(kopf.TemporaryError):
        handle(reconcile.Outcome(0.5, "add validator c-a-2"))
    with pytest.raises(kopf.PermanentError):
        handle(reconcile.Outcome(None, "invalid spec", permanent=True))


def unsettled() -> Observed:
    """The StatefulSet controller has not seen the latest StatefulSet (no controller runs,
    as on the integration tier): the plan waits on a watched object."""
    w = world()
    return replace(w, statefulsets={"a": replace(w.statefulsets["a"], observed_generation=0)})


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> None:
    """No node answers (pods not serving yet)."""

    async def none(*_: Any) -> dict[str, NodeStatus]:
        return {}

    monkeypatch.setattr(nodes, "statuses", none)


@pytest.mark.usefixtures("silent")
def test_a_pass_waiting_only_on_watched_objects_is_woken_not_polled() -> None:
    """StatefulSetPending with no node answering: the next pass is due after
    watched_wait_seconds (the safety net), not at the retry pace; a watch event of one of
    the consortium's objects (`wake`, by its instance label) makes it due at the next tick,
    but the event of the pass's own apply (Kube.notice False) does not.
    100 such consortia polled at the retry pace made 17 passes/s (bench operator)."""
    kube = MemoryKube(unsettled())
    now = [100.0]
    settings = Settings(watched_wait_seconds=60.0)
    env = reconcile.Env(settings, kube, clock=lambda: NOW, monotonic=lambda: now[0])
    out = asyncio.run(reconcile.reconcile(env, subject(), events()))
    assert out == reconcile.Outcome(60.0, "waiting for the StatefulSet controller")
    for _ in range(10):  # 50 s of timer ticks: no pass
        now[0] += settings.timer_seconds
        assert asyncio.run(reconcile.timer(env, subject(), events())) is None
    assert kube.observe_calls == 1
    reconcile.wake(env, "other-ns", "c")  # another namespace's "c": not this one
    reconcile.wake(env, "ns", "d")
    now[0] += 1
    assert asyncio.run(reconcile.timer(env, subject(), events())) is None
    kube.own.add(("StatefulSet", "c-a", "7"))
    reconcile.wake(env, "ns", "c", reconcile.Changed("StatefulSet", "c-a", "7"))
    assert asyncio.run(reconcile.timer(env, subject(), events())) is None  # our own apply's
    reconcile.wake(env, "ns", "c", reconcile.Changed("Service", "c-client", None))
    assert kube.noticed[-1] == ("Service", "ns", "c-client", None)  # re-applied if it was ours
    assert asyncio.run(reconcile.timer(env, subject(), events())) is not None
    assert kube.observe_calls == 2
    now[0] += 60.0  # and without an event, the safety net
    assert asyncio.run(reconcile.timer(env, subject(), events())) is not None
    assert kube.observe_calls == 3


@pytest.mark.usefixtures("silent")
def test_a_watch_event_during_a_pass_makes_the_next_one_due_at_once() -> None:
    """The event may show what the pass read before it (its own apply, a pod turning
    Ready): the pass's requeue must not swallow it."""
    kube = GatedKube(unsettled())
    now = [100.0]
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW, monotonic=lambda: now[0])
    x = reconcile.Subject(Owner("x", "ns", "uid-x"), SPEC, generation=1)

    async def run() -> reconcile.Outcome:
        first = asyncio.create_task(reconcile.reconcile(env, x, events()))
        await kube.entered.wait()
        reconcile.wake(env, "ns", "x")  # mid-pass
        kube.gate.set()
        return await first

    out = asyncio.run(run())
    assert out.requeue == Settings().watched_wait_seconds
    assert asyncio.run(reconcile.timer(env, x, events())) is not None


def test_a_wait_with_a_node_answering_keeps_the_retry_pace(chain: Chain) -> None:
    """The chain took part in the plan (heights, votes to cast): nothing Kubernetes shows
    would wake it, so it is polled at the retry pace as before."""
    kube = MemoryKube(unsettled())
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW)
    out = asyncio.run(reconcile.reconcile(env, subject(), events()))
    assert out.requeue == Settings().retry_seconds
    assert chain.committed == []


def test_a_metadata_watch_event_wakes_its_consortium_in_the_operators_loop() -> None:
    """reconcile.watch_events (the callback of kube.MetadataWatch's threads): an event of an
    object labelled with a consortium instance reaches `wake` through the event loop (Kube
    told of the change); an object without the label wakes nothing."""
    kube = MemoryKube(world())
    now = [100.0]
    env = reconcile.Env(Settings(), kube, clock=lambda: NOW, monotonic=lambda: now[0])
    env.uids[("ns", "c")] = "uid-1"

    async def run() -> None:
        on_event = reconcile.watch_events(env, asyncio.get_running_loop())
        labels = {"app.kubernetes.io/instance": "c"}
        await asyncio.to_thread(on_event, MetaEvent("Service", "ns", "c-client", labels, None))
        # the thread hands `wake` to the loop before its own result: both ran by now
        await asyncio.to_thread(on_event, MetaEvent("Service", "ns", "x", {}, "3"))

    asyncio.run(run())
    assert kube.noticed == [("Service", "ns", "c-client", None)]
    assert env.due["uid-1"] == 100.0 and env.wakes["uid-1"] == 1
