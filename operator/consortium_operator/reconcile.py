"""The reconcile pass: named phases over one `Pass` object. Called by handlers.py (the kopf
decorators), which turns the returned `Outcome` into kopf's retry/permanent-error signals.

    parse -> observe -> plan -> apply (certificates, then workloads) -> act -> write status

- parse: the spec (provision.spec via model); an invalid spec writes a Failed status and
  ends the pass for good (`Outcome.permanent`).
- observe: Kubernetes objects and TLS material (kube), node statuses (nodes), the chain's
  recent proposals (nodes; governance by organisations only), the pending membership change
  (the object's annotation, dropped once its deadline passed).
- plan: `plan.next_step` (pure) — workload targets and at most one complete action.
- apply: the certificate phase (certplan: ensure each CA, then each leaf; issuing is the only
  randomness, injected through `Env.tls_key`/`Env.serial`), then the rendered workloads.
- act: the step's action, one function per action type (`ACTIONS`). A committed membership
  change is written to the annotation and awaited by requeueing — never by waiting in the
  pass, so the per-object lock is never held while the chain catches up. A proposal or vote
  is signed with the key of the organisation it names, read from that organisation's own
  Secret and checked against the admin key observed for it (never another's).
- write status: status.build (pure), a kopf event when the phase changes and one for each
  change of a proposal (opened, voted, closed) between the status written and the new one.

Level-triggered: nothing is remembered between passes but the cluster itself (the pending
change lives in an annotation). Passes over one object are serialised by `Env.locks`; the
timer skips an object whose lock is held; a watch event of one of the consortium's own
objects (kube.MetadataWatch -> `watch_events`) makes its next timer pass due at once
(`wake`), so a pass that waits only on watched objects polls only as a safety net; timer
passes run at most Settings.timer_passes at once (`Env.timer_slots`) and only while no
change handler's pass is in progress (`Env.changes`), which never waits for them."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from consortium_node.ledger.genesis import Genesis
from consortium_node.provision import pki as core_pki
from cryptography.hazmat.primitives.asymmetric import ec

from . import backups, certplan, federation, genesis, nodes, pki, plan, status
from . import replace as replace_plan
from .kube import FIELD_MANAGER, INSTANCE_LABEL, Conflict, Kube, KubeError, MetaEvent
from .model import (
    MEMBER_ANNOTATION,
    PENDING_ANNOTATION,
    CeremonyFile,
    ConsortiumSpec,
    GenesisSource,
    Names,
    Observed,
    Owner,
    PendingChange,
    SpecError,
)
from .nodes import ClientTLS, GovernanceError
from .render import Renderer
from .settings import Settings

log = logging.getLogger("consortium_operator")
MEMBERSHIP_POLL = 1.0  # seconds between passes while the chain applies a membership change


Post = Callable[[str, str], None]  # (reason, message)


@dataclass(frozen=True, slots=True)
class Events:
    """Kubernetes events about the Consortium (kopf.info / kopf.warn in production)."""

    info: Post
    warn: Post


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Changes:
    """The change handlers' passes in progress (`running`); `idle` is set while there are
    none. Timer passes wait for it: change passes first, as a work queue would order them."""

    def __init__(self) -> None:
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def start(self) -> None:
        self.running += 1
        self.idle.clear()

    def end(self) -> None:
        self.running -= 1
        if self.running == 0:
            self.idle.set()


@dataclass(frozen=True)
class Env:
    """What passes share for the operator's lifetime."""

    settings: Settings
    kube: Kube
    operator_namespace: str | None = None
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # uid -> the status this process last wrote: only the operator writes status, so while
    # it is unchanged a new pass that builds the same status need not send it again
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    # uid -> when (monotonic) its next pass is due: the last pass's requeue after it ended,
    # or status_seconds once converged. The timer (every timer_seconds) runs a pass only when
    # one is due; a change handler's pass runs at once
    due: dict[str, float] = field(default_factory=dict)
    # (namespace, name) -> uid of each consortium a pass ran for: watch events of its objects
    # name it by their instance label (`wake`)
    uids: dict[tuple[str, str], str] = field(default_factory=dict)
    # uid -> watch events of its objects so far: a pass that saw the count change while it
    # ran is due again at once (the event may show what the pass did not see)
    wakes: dict[str, int] = field(default_factory=dict)
    monotonic: Callable[[], float] = time.monotonic
    clock: Callable[[], dt.datetime] = _utc_now
    tls_key: Callable[[], ec.EllipticCurvePrivateKey] = pki.new_tls_key
    serial: Callable[[], int] = pki.serial_from
    # timer passes running at once (at most settings.timer_passes; see `timer`)
    timer_slots: asyncio.Semaphore = field(init=False)
    # change handlers' passes in progress: timer passes wait until there are none
    changes: Changes = field(default_factory=lambda: Changes())

    def __post_init__(self) -> None:
        object.__setattr__(self, "timer_slots", asyncio.Semaphore(self.settings.timer_passes))

    def lock(self, owner: Owner) -> asyncio.Lock:
        return self.locks.setdefault(owner.uid, asyncio.Lock())


@dataclass(frozen=True)
class Subject:
    """The Consortium object as this pass sees it (`of`: from the object kopf hands over)."""

    owner: Owner
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int = 0
    created: str = "1970-01-01T00:00:00Z"  # metadata.creationTimestamp

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Subject:
        meta: Mapping[str, Any] = obj["metadata"]
        return cls(
            owner=Owner(str(meta["name"]), str(meta["namespace"]), str(meta["uid"])),
            spec=obj.get("spec") or {},
            status=obj.get("status") or {},
            annotations=meta.get("annotations") or {},
            generation=int(meta.get("generation") or 0),
            created=str(meta.get("creationTimestamp") or "1970-01-01T00:00:00Z"),
        )

    @property
    def names(self) -> Names:
        return Names(self.owner.name)

    def creation_ms(self) -> int:
        """The genesis time: the object's creation, whole seconds (provision.genesis)."""
        t = dt.datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        return int(t.timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a pass ended: `requeue` seconds until the next pass (None: converged), the
    message kopf logs, and whether the object cannot be reconciled as it is."""

    requeue: float | None
    message: str = ""
    permanent: bool = False
    error: bool = False  # the pass failed (an API or governance error), not just waiting


@dataclass
class Pass:
    """One reconcile pass over one Consortium: its inputs and what each phase found."""

    env: Env
    subject: Subject
    events: Events
    spec: ConsortiumSpec | None = None
    observed: Observed = field(default_factory=Observed)
    step: plan.Step | None = None
    cas: dict[str, bytes] = field(default_factory=dict)  # after the certificate phase
    done: str | None = None  # what the act phase did
    backups: backups.View = field(default_factory=backups.View)  # backups.py's phase

    @property
    def names(self) -> Names:
        return self.subject.names

    @property
    def owner(self) -> Owner:
        return self.subject.owner

    @property
    def renderer(self) -> Renderer:
        return Renderer(self.env.settings, self.names, self.owner, self.env.operator_namespace)

    @property
    def desired(self) -> ConsortiumSpec:
        assert self.spec is not None, "parse runs first"
        return self.spec


# --------------------------------------------------------------------------- entry points


async def reconcile(env: Env, subject: Subject, events: Events) -> Outcome:
    """One full pass of a change handler (create / update / resume); timer passes wait while
    one is in progress (`timer`)."""
    env.changes.start()
    try:
        return await _timed(env, subject, events)
    finally:
        env.changes.end()


async def _timed(env: Env, subject: Subject, events: Events) -> Outcome:
    """One full pass; records when the next is due: at once if a watch event of the
    consortium's objects arrived meanwhile (`wake`), else after its requeue (status_seconds
    once converged)."""
    uid = subject.owner.uid
    env.uids[(subject.owner.namespace, subject.owner.name)] = uid
    seen = env.wakes.get(uid, 0)
    out = await _reconcile(env, subject, events)
    wait = out.requeue if out.requeue is not None else env.settings.status_seconds
    env.due[uid] = env.monotonic() + (0.0 if env.wakes.get(uid, 0) != seen else wait)
    return out


# (group, version, plural) of every kind the operator creates in a consortium's namespace,
# and pods: a metadata watch of each (kube.MetadataWatch -> watch_events -> wake;
# tests/charts/test_rbac.py grants list + watch on each); the apiserver sends only those
# labelled MANAGED. Secrets too: a lost CA or key Secret must be noticed at once
WATCHED = (
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("apps", "v1", "statefulsets"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("batch", "v1", "cronjobs"),
)
MANAGED = f"app.kubernetes.io/managed-by={FIELD_MANAGER}"  # model.Names.labels


@dataclass(frozen=True)
class Changed:
    """The object a watch event is about: its kind, name and resourceVersion (None: deleted)."""

    kind: str
    name: str
    rv: str | None


def watch_events(env: Env, loop: asyncio.AbstractEventLoop) -> Callable[[MetaEvent], None]:
    """The callback of the operator's metadata watches (kube.MetadataWatch, one thread per
    kind; handlers.startup starts them): each event of an object labelled with a consortium
    instance is handed to `wake` in the operator's event loop."""

    def on_event(ev: MetaEvent) -> None:
        name = ev.labels.get(INSTANCE_LABEL)
        if name and ev.namespace:
            changed = Changed(ev.kind, ev.name, ev.rv)
            loop.call_soon_threadsafe(wake, env, ev.namespace, name, changed)

    return on_event


def wake(env: Env, namespace: str, name: str, changed: Changed | None = None) -> None:
    """A watch event of one of consortium `name`'s objects (handlers.py): its next timer
    tick runs a pass, whatever the last pass's requeue was. How a pass that waits only on
    watched objects (plan.waits_on_watched_objects) resumes without polling, and how drift
    of an applied object is repaired at the next tick (`changed`, the object the event is
    about: one this process applied and no longer as applied is applied again, Kube.notice).
    Unknown names (no pass ran for them yet: their change handler's first pass is still to
    come) are ignored, and so is the event of this process's own apply (Kube.notice: the
    object at the version that apply answered; with the drift LISTs dropped too, a spec
    change on 100 consortia went from 159 passes to 117, bench operator)."""
    if changed is not None and not env.kube.notice(
        changed.kind, namespace, changed.name, changed.rv
    ):
        return
    uid = env.uids.get((namespace, name))
    if uid is None:
        return
    env.wakes[uid] = env.wakes.get(uid, 0) + 1
    env.due[uid] = env.monotonic()


async def _reconcile(env: Env, subject: Subject, events: Events) -> Outcome:
    p = Pass(env, subject, events)
    try:
        parse(p)
    except SpecError as e:
        await write_status(p, str(e))
        return Outcome(None, f"invalid spec: {e}", permanent=True)
    async with env.lock(subject.owner):
        try:
            await observe(p)
            plan_step(p)
            await apply_certificates(p)
            await apply_workloads(p)
            await act(p)
            await write_status(p)
        except (KubeError, GovernanceError) as e:
            return Outcome(env.settings.retry_seconds, str(e), error=True)
    return outcome(p)


async def timer(
    env: Env, subject: Subject | Callable[[], Subject], events: Events
) -> Outcome | None:
    """Every timer_seconds: one full pass (observe, act if needed, write status) when one is
    due — what follows a converging object at the retry pace (the change handler returns
    after its first pass instead of asking kopf to retry: kopf writes its retry progress to
    the object, a PATCH and a watch event per retry, 22 requests/s for 100 consortia), keeps
    status current and repairs drift after convergence (every status_seconds). None:
    skipped, a pass holds the lock or none is due yet.

    Change passes first: at most `Settings.timer_passes` timer passes run at once
    (`Env.timer_slots`), and one that has its slot starts only while no change handler's
    pass is in progress (`Env.changes`); a change pass never waits for either. So a spec
    change starts its pass at once however many objects the timer is polling — 100
    consortia waiting at the retry pace kept the apiserver busy enough that a spec change on
    all of them took 25-68 s — and under load the polling slows down instead. `subject` may
    be a function returning the object as it is now (kopf's live body), read again once the
    pass may start: a pass that waited must not act on a spec older than the change
    handler's."""
    fresh: Callable[[], Subject] = (lambda: subject) if isinstance(subject, Subject) else subject
    if not _timer_due(env, fresh().owner):
        return None
    async with env.timer_slots:
        await env.changes.idle.wait()
        now = fresh()
        if not _timer_due(env, now.owner):  # a pass ran while this one waited
            return None
        return await _timed(env, now, events)


def _timer_due(env: Env, owner: Owner) -> bool:
    if env.lock(owner).locked():
        return False
    due = env.due.get(owner.uid)
    # a timer tick a little early for the due time still runs it (ticks are not sharp)
    return due is None or env.monotonic() >= due - 0.2 * env.settings.timer_seconds


async def delete(env: Env, subject: Subject, events: Events) -> Outcome:
    """Removes workloads, Services, ConfigMaps, Secrets, and the ledger PVCs if
    deletionPolicy is Delete (kopf keeps its finalizer until this returns None)."""
    raw = subject.spec
    local = raw.get("localOrganizations") or []
    orgs = tuple(
        str(o.get("name"))
        for o in raw.get("organizations") or []
        if isinstance(o, Mapping) and (not local or o.get("name") in local)
    )
    delete_volumes = raw.get("deletionPolicy", "Retain") == "Delete"
    owner = subject.owner
    async with env.lock(owner):
        try:
            deleted = await env.kube.delete_consortium(
                owner.namespace, subject.names, orgs, delete_volumes
            )
        except KubeError as e:
            return Outcome(env.settings.retry_seconds, f"deleting: {e}")
        env.written.pop(owner.uid, None)
        env.due.pop(owner.uid, None)
        env.wakes.pop(owner.uid, None)
        if env.uids.get((owner.namespace, owner.name)) == owner.uid:
            del env.uids[(owner.namespace, owner.name)]
    kept = "ledger volumes kept (deletionPolicy Retain)" if not delete_volumes else ""
    events.info("Deleted", f"deleted {len(deleted)} objects" + (f"; {kept}" if kept else ""))
    return Outcome(None)


def log_outcome(name: str, out: Outcome, waiting_level: int) -> None:
    """For the handlers: a pass that failed is a warning every time (as kopf's retries
    logged it); one that waits is logged at `waiting_level`."""
    level = logging.WARNING if out.error else waiting_level
    log.log(level, "%s: %s (next pass in %gs)", name, out.message, out.requeue)


def outcome(p: Pass) -> Outcome:
    """Converged: done until the next event or timer; otherwise requeue — soon after an
    action, every MEMBERSHIP_POLL while the chain applies a change, after
    watched_wait_seconds (the safety net; `wake` comes first) while waiting only on watched
    objects, slower when Blocked."""
    assert p.step is not None
    a = p.step.action
    if isinstance(a, plan.Converged):
        return Outcome(None, str(a))
    if p.done:
        return Outcome(0.5, p.done)
    if isinstance(a, plan.Wait) and a.reason == "WaitingForMembership":
        return Outcome(MEMBERSHIP_POLL, str(a))
    if plan.waits_on_watched_objects(p.step, p.observed):  # `wake` ends it sooner
        return Outcome(p.env.settings.watched_wait_seconds, str(a))
    factor = 3 if isinstance(a, plan.Blocked) else 1
    return Outcome(p.env.settings.retry_seconds * factor, str(a))


# --------------------------------------------------------------------------- phases


def parse(p: Pass) -> None:
    p.spec = ConsortiumSpec.parse(p.subject.spec)


async def observe(p: Pass) -> None:
    p.observed = await observe_world(p)
    p.observed = replace(
        p.observed,
        pending=_pending(p),
        replacement=p.subject.annotations.get(replace_plan.ANNOTATION),
    )
    p.backups = await backups.observe(p)


def plan_step(p: Pass) -> None:
    s = p.env.settings
    p.step = plan.next_step(p.desired, p.observed, p.names, s.node_image, s.max_lag)
    backups.require_chain(p)  # restored from a backup: the chain's own genesis, never a new one
    backups.hold_refused(p, p.backups)  # a refused restore: that organisation runs no pods


async def apply_certificates(p: Pass) -> None:
    """With spec.security.tls: each organisation's CA (created once, before the genesis or
    AddOrganization that lists it), then every node's TLS certificate and the client TLS
    directories, (re)issued when certplan says they are due (nodes reload rotated files).
    Events name Secrets, never content."""
    spec, o = p.desired, p.observed
    p.cas = dict(o.ca_certs)
    if not spec.security.tls:
        return
    for org, decision in certplan.ca_decisions(spec, o).items():
        if decision is core_pki.CaDecision.LOST:
            raise KubeError(
                0,
                f"Secret {p.names.ca_secret(org)} (the CA of {org}, which the chain trusts) "
                "is missing: restore it from a backup; a new CA would not be trusted",
            )
        if org in o.ca_incomplete:
            raise KubeError(404, f"Secret {p.names.ca_secret(org)} lacks ca.pem/ca.key")
        if decision is core_pki.CaDecision.ISSUE:
            await _issue_ca(p, org)
    window = core_pki.Window(p.env.clock(), dt.timedelta(days=spec.security.cert_renew_before_days))
    issuers: dict[str, pki.Issued] = {}
    renderer = p.renderer
    due = certplan.node_certs(
        spec,
        o,
        p.names,
        lambda pod: (renderer.node_dns_names(pod, spec), renderer.node_ips(spec, pod)),
        p.cas,
        window,
    )
    for org in dict.fromkeys(c.org for c in due):
        ca = issuers.setdefault(org, await p.env.kube.read_ca(p.owner.namespace, p.names, org))
        issued = {c.member: pki.node_tls(ca, c, _issue(p)) for c in due if c.org == org}
        if await p.env.kube.put_secret_entries(renderer.tls_secret(org, issued)) is True:
            p.events.info(
                "CertificatesIssued",
                f"TLS certificates for {', '.join(issued)} in Secret {p.names.tls_secret(org)}",
            )
    bundle = core_pki.trust_bundle(p.cas)
    for c in certplan.client_certs(spec, o, p.names, p.cas, window):
        if c.org not in issuers:
            issuers[c.org] = await p.env.kube.read_ca(p.owner.namespace, p.names, c.org)
        issued_client = pki.client_tls(issuers[c.org], c, _issue(p))
        manifest = renderer.client_secret(c.holder, c.org, bundle, issued_client)
        if await p.env.kube.put_secret_entries(manifest) is True:
            p.events.info(
                "CertificatesIssued", f"client certificate {c.name} of {c.org} in Secret {c.holder}"
            )


async def apply_workloads(p: Pass) -> None:
    assert p.step is not None
    if p.step.targets is not None:
        o = p.observed
        await p.env.kube.apply(
            p.renderer.workloads(
                p.desired,
                p.step.targets,
                o.node_keys,
                o.genesis_hash,
                federation.joining(p.desired, o),
            )
        )
    await backups.apply(p, p.backups)


async def act(p: Pass) -> None:
    """Settles the pending-change annotation, then performs the step's action (at most one;
    a membership action writes the annotation anew)."""
    assert p.step is not None
    o = p.observed
    if PENDING_ANNOTATION in p.subject.annotations and (o.pending is None or o.pending_reflected()):
        await _set_pending(p, None)  # applied by the chain, expired, or unreadable: done with
    a = p.step.action
    run = ACTIONS.get(type(a))
    p.done = await run(p, a) if run is not None else None


async def write_status(p: Pass, error: str | None = None) -> None:
    current = p.subject.status
    ctx = status.Context(
        p.names,
        p.owner.namespace,
        p.subject.generation,
        current.get("conditions") or [],
        p.env.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        p.env.settings.max_lag,
    )
    new = status.build(p.spec if error is None else None, p.observed, p.step, ctx, error)
    if error is None:
        new = backups.extend_status(p, p.backups, new)
    uid = p.owner.uid
    if p.env.written.get(uid) != new:
        p.env.written.pop(uid, None)  # a failed patch leaves nothing known
        await p.env.kube.patch_status(p.owner.namespace, p.owner.name, new)
        p.env.written[uid] = new
    for reason, message in status.proposal_events(current.get("proposals"), p.observed):
        p.events.info(reason, message)
    if new["phase"] != current.get("phase"):
        post = p.events.warn if new["phase"] in ("Degraded", "Failed") else p.events.info
        post(f"Phase{new['phase']}", new["message"] or new["phase"])


# --------------------------------------------------------------------------- observation


async def observe_world(p: Pass) -> Observed:
    """Kubernetes objects, TLS material (with TLS) and the answering nodes' statuses."""
    spec, kube, ns = p.desired, p.env.kube, p.owner.namespace
    orgs = tuple(o.name for o in spec.local)  # a remote organisation has nothing here
    # every Secret of the consortium, the operator's client TLS among them, in one LIST
    seen = await kube.observe(ns, p.names, orgs, tls=spec.security.tls)
    observed = seen.observed
    if not observed.has_genesis or federation.joining(spec, observed):
        # (a joining organisation publishes its contribution for the members to admit it)
        observed = replace(observed, **await observe_ceremony(p))
    try:
        tls = client_tls(p, seen.operator_client)
    except NoClientTLS as e:
        log.debug("%s/%s: not asking nodes: %s", ns, p.owner.name, e)
        return observed
    statuses = await nodes.statuses(observed.pods, p.names, ns, p.env.settings, tls)
    observed = replace(observed, nodes=statuses)
    if observed.org_governance and statuses:
        eps = governance_endpoints(p, observed)
        observed = replace(observed, proposals=await nodes.proposals(eps, p.env.settings, tls))
    if spec.contracts and statuses:
        eps = governance_endpoints(p, observed)
        observed = replace(
            observed,
            contracts=await nodes.contracts(eps, p.env.settings, tls),
            contract_modules=await kube.contract_modules(ns, spec.contracts),
        )
    if spec.parameters.chain_values() and statuses:
        eps = governance_endpoints(p, observed)
        observed = replace(
            observed, chain_params=await nodes.chain_params(eps, p.env.settings, tls)
        )
    return observed


async def observe_ceremony(p: Pass) -> dict[str, Any]:
    """Federation, before the genesis (or while a local organisation joins the running
    chain): spec.ceremony's ceremony.json and spec.genesisFrom's
    genesis.json and signature files (every entry of its ConfigMap), as Observed fields."""
    spec, kube, ns = p.desired, p.env.kube, p.owner.namespace
    out: dict[str, Any] = {}
    if spec.ceremony is not None:
        data = await _configmap_data(kube, ns, spec.ceremony.config_map)
        name = f"ConfigMap {spec.ceremony.config_map}"
        if data is None:
            out["ceremony"] = CeremonyFile(problem=f"{name} not found")
        elif "ceremony.json" not in data:
            out["ceremony"] = CeremonyFile(problem=f"{name} has no ceremony.json")
        else:
            out["ceremony"] = CeremonyFile(raw=data["ceremony.json"])
    g = spec.genesis_from
    if g is not None:
        genesis = await _configmap_data(kube, ns, g.config_map)
        sigs = await _configmap_data(kube, ns, g.signatures_config_map)
        if genesis is None or "genesis.json" not in genesis:
            problem = f"ConfigMap {g.config_map} with genesis.json not found"
            out["genesis_source"] = GenesisSource(problem=problem)
        elif sigs is None:
            problem = f"ConfigMap {g.signatures_config_map} (signatures) not found"
            out["genesis_source"] = GenesisSource(problem=problem)
        else:
            out["genesis_source"] = GenesisSource(
                genesis["genesis.json"], tuple(sorted(sigs.items()))
            )
    return out


async def _configmap_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes] | None:
    """A ConfigMap's entries as bytes (data as UTF-8, binaryData decoded); None if absent."""
    cm = await kube.get("ConfigMap", namespace, name)
    if cm is None:
        return None
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


class NoClientTLS(Exception):
    """The operator has no client certificate for a TLS consortium yet: nodes cannot be
    asked anything (there can be no running node either: certificates come first)."""


async def operator_tls(p: Pass) -> ClientTLS | None:
    """The operator's client TLS material for this consortium, from its Secret (written by
    the certificate phase). Raises NoClientTLS with TLS on and the Secret not complete."""
    if not p.desired.security.tls:
        return None
    data = await p.env.kube.secret_data(p.owner.namespace, p.names.operator_client_secret)
    return client_tls(p, data)


def client_tls(p: Pass, data: Mapping[str, bytes] | None) -> ClientTLS | None:
    """`operator_tls` from the Secret's entries `data` as read (None: absent)."""
    if not p.desired.security.tls:
        return None
    secret = p.names.operator_client_secret
    data = data or {}
    try:
        return ClientTLS(data["ca.pem"], data["client.pem"], data["client.key"])
    except KeyError:
        raise NoClientTLS(f"Secret {secret} is not complete") from None


def _pending(p: Pass) -> PendingChange | None:
    """The pending membership change of the annotation, unless its deadline has passed."""
    text = p.subject.annotations.get(PENDING_ANNOTATION)
    change = PendingChange.from_json(text) if text else None
    if change is None or change.until < p.env.clock().timestamp():
        return None
    return change


# --------------------------------------------------------------------------- actions


def _issue(p: Pass) -> pki.Issue:
    days = p.desired.security.cert_validity_days
    return pki.Issue(p.env.clock(), p.env.tls_key(), p.env.serial(), days)


async def _issue_ca(p: Pass, org: str) -> None:
    ca = pki.org_ca(org, p.env.clock(), p.env.tls_key(), p.env.serial())
    if await p.env.kube.create(p.renderer.ca_secret(org, ca)):
        p.events.info(
            "CACreated", f"certificate authority of {org} in Secret {p.names.ca_secret(org)}"
        )
    # a concurrent creator may have won: what the Secret holds now is the CA
    p.cas[org] = (await p.env.kube.read_ca(p.owner.namespace, p.names, org)).cert_pem


async def create_admin_key(p: Pass, a: plan.CreateAdminKey) -> str:
    """An organisation's own admin key in its own Secret (create-if-absent: a key that
    exists is never replaced); `a.org` "" is a legacy chain's consortium admin key."""
    if not a.org:
        manifest = p.renderer.admin_secret(pki.key_file(pki.new_key()))
    else:
        manifest = p.renderer.org_admin_secret(a.org, pki.key_file(pki.new_key()))
    if await p.env.kube.create(manifest):
        p.events.info("KeysCreated", f"{a} in Secret {manifest['metadata']['name']}")
    return str(a)


async def create_node_keys(p: Pass, a: plan.CreateNodeKeys) -> str | None:
    secret = p.renderer.keys_secret(a.org, {pod: pki.key_file(pki.new_key()) for pod in a.pods})
    added = await p.env.kube.add_secret_entries(secret)
    if added is True:
        p.events.info(
            "KeysCreated",
            f"node keys for {', '.join(a.pods)} in Secret {p.names.keys_secret(a.org)}",
        )
    return None if isinstance(added, Conflict) else str(a)


async def write_genesis(p: Pass, a: plan.WriteGenesis) -> str:
    g = genesis.build_governed(
        p.desired,
        p.names,
        dict(a.validators),
        genesis.OrgKeys(dict(a.org_admins), dict(a.members)),
        p.subject.creation_ms(),
        dict(a.ca_certs),
    )
    cm = p.renderer.genesis_configmap(genesis.canonical_json(g), g.hash.hex())
    if await p.env.kube.create(cm):
        p.events.info(
            "GenesisWritten",
            f"genesis {g.hash.hex()[:16]} with {len(g.validators)} validators "
            f"in ConfigMap {p.names.genesis_configmap}",
        )
    return str(a)


async def adopt_genesis(p: Pass, a: plan.AdoptGenesis) -> str:
    """The ceremony's verified genesis, byte for byte, into the genesis ConfigMap the nodes
    mount (create-if-absent: a chain's genesis never changes)."""
    g = Genesis.from_json(a.genesis)
    cm = p.renderer.genesis_configmap(a.genesis.decode(), g.hash.hex())
    if await p.env.kube.create(cm):
        p.events.info(
            "GenesisAdopted",
            f"the ceremony's genesis {hashlib.sha256(a.genesis).hexdigest()[:16]} "
            f"(every organisation's signature verified) in ConfigMap {p.names.genesis_configmap}",
        )
    return str(a)


async def add_validator(p: Pass, a: plan.AddValidator) -> str:
    return await _govern(p, a, PendingChange("add-validator", a.node_id.hex(), "", 0.0))


async def remove_validator(p: Pass, a: plan.RemoveValidator) -> str:
    return await _govern(p, a, PendingChange("remove-validator", a.node_id.hex(), "", 0.0))


async def add_organization(p: Pass, a: plan.AddOrganization) -> str:
    return await _govern(p, a, PendingChange("add-organization", a.org, "", 0.0))


async def _govern(p: Pass, a: nodes.Governance, change: PendingChange) -> str:  # legacy
    """Commit the governance change, then remember it (the annotation, with its tx and
    deadline filled in) so that the next passes wait for the chain to apply it instead of
    planning it again."""
    eps = governance_endpoints(p)
    admin_key = await p.env.kube.read_admin_key(p.owner.namespace, p.names)
    try:
        tls = await operator_tls(p)
    except NoClientTLS as e:
        raise GovernanceError(f"{a}: {e}") from None
    tx = await nodes.governance(eps, p.desired.chain_id, admin_key, a, p.env.settings, tls)
    reason = "OrganizationAdmitted" if change.kind == "add-organization" else "ValidatorSetChanged"
    p.events.info(reason, f"{a}: tx {tx[:16]} committed")
    until = p.env.clock().timestamp() + p.env.settings.governance_timeout
    await _set_pending(p, replace(change, tx=tx, until=until))
    return str(a)


async def set_param(p: Pass, a: plan.SetParam) -> str:  # legacy: a direct SetParam
    """The chain parameter set with the consortium admin key (a legacy chain; under
    governance by organisations the planner proposes it instead); the next pass reads the
    committed value, so nothing is remembered."""
    tx = await _legacy_admin_tx(p, a)
    p.events.info("ParameterSet", f"{a}: tx {tx[:16]} committed")
    return str(a)


async def declare_replacement(p: Pass, a: replace_plan.Declare) -> str:
    """Accept a lost validator's replacement: stamp the declaration with the time now."""
    stamp = p.env.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    text = replace(a.declaration, at=stamp).text()
    await p.env.kube.patch_annotations(
        p.owner.namespace, p.owner.name, {replace_plan.ANNOTATION: text}
    )
    p.events.info("ReplacementDeclared", f"{a} (accepted at {stamp})")
    return str(a)


async def finish_replacement(p: Pass, a: replace_plan.Finish) -> str:
    """The chain lists the new key: the declaration is done with."""
    await p.env.kube.patch_annotations(
        p.owner.namespace, p.owner.name, {replace_plan.ANNOTATION: None}
    )
    p.events.info("ValidatorReplaced", str(a))
    return str(a)


async def propose(p: Pass, a: plan.Propose) -> str:
    """Open the proposal for what the spec asks, as organisation `a.org` (its yes vote)."""
    tx = await _as_org(p, a, a.org)
    p.events.info("ProposalSubmitted", f"{a}: tx {tx[:16]} committed")
    return str(a)


async def vote(p: Pass, a: plan.Vote) -> str:
    """Organisation `a.org`'s yes vote (an `approve: auto` organisation, as planned)."""
    tx = await _as_org(p, a, a.org)
    p.events.info("ProposalVoted", f"{a}: tx {tx[:16]} committed")
    return str(a)


async def create_member_key(p: Pass, a: plan.CreateMemberKey) -> str | None:
    """The organisation's member key, added to its client Secret if that has none."""
    manifest = p.renderer.member_key_secret(a.org, pki.key_file(pki.new_key()))
    added = await p.env.kube.add_secret_entries(manifest)
    if added is True:
        p.events.info("KeysCreated", f"{a} in Secret {p.names.client_secret(a.org)}")
    return None if isinstance(added, Conflict) else str(a)


async def register_member(p: Pass, a: plan.RegisterMember) -> str:
    """AddMember signed by the organisation itself (its own admin key; on a legacy chain the
    consortium admin key), then the client Secret's annotation records the vouched key. A
    refusal because the key is a member already (an earlier pass committed it but did not
    get to the annotation) counts as done."""
    try:
        if p.observed.org_governance:
            tx = await _as_org(p, a, a.org)
        else:
            tx = await _legacy_admin_tx(p, a)
        done = f"tx {tx[:16]} committed"
    except GovernanceError as e:
        if "already a member" not in str(e):
            raise
        done = "the chain has it as a member already"
    await p.env.kube.annotate_secret(
        p.owner.namespace, p.names.client_secret(a.org), {MEMBER_ANNOTATION: a.key.hex()}
    )
    p.events.info("MemberRegistered", f"{a}: {done}")
    return str(a)


async def _legacy_admin_tx(p: Pass, a: nodes.Governance) -> str:
    admin_key = await p.env.kube.read_admin_key(p.owner.namespace, p.names)
    try:
        tls = await operator_tls(p)
    except NoClientTLS as e:
        raise GovernanceError(f"{a}: {e}") from None
    eps = governance_endpoints(p)
    return await nodes.governance(eps, p.desired.chain_id, admin_key, a, p.env.settings, tls)


async def _as_org(p: Pass, a: plan.Propose | plan.Vote | plan.RegisterMember, org: str) -> str:
    """Submit `a` signed with `org`'s key — read from `org`'s own Secret and checked to be the
    admin key observed for `org` (nodes.signer_for) — and wait for its commit."""
    expected = p.observed.org_admins.get(org)
    if expected is None:
        raise GovernanceError(
            f"{a}: no admin key of {org} (Secret {p.names.org_admin_secret(org)})"
        )
    text = await p.env.kube.read_org_admin_key(p.owner.namespace, p.names, org)
    nodes.signer_for(text, org, expected)
    try:
        tls = await operator_tls(p)
    except NoClientTLS as e:
        raise GovernanceError(f"{a}: {e}") from None
    eps = governance_endpoints(p)
    return await nodes.governance(eps, p.desired.chain_id, text, a, p.env.settings, tls)


async def _set_pending(p: Pass, change: PendingChange | None) -> None:
    value = None if change is None else change.to_json()
    await p.env.kube.patch_annotations(p.owner.namespace, p.owner.name, {PENDING_ANNOTATION: value})


def governance_endpoints(p: Pass, observed: Observed | None = None) -> list[nodes.Endpoint]:
    """Client endpoints of answering nodes, the leader first."""
    o = p.observed if observed is None else observed
    leaders = {n.leader for n in o.nodes.values()}
    order = sorted(
        o.nodes, key=lambda pod: (o.node_keys.get(pod) not in leaders, -o.nodes[pod].height, pod)
    )
    out = []
    for pod in order:
        ep = nodes.endpoint(o.pods[pod], p.names, p.owner.namespace, p.env.settings)
        if ep is not None:
            out.append(ep)
    return out


Act = Callable[[Pass, Any], Awaitable[str | None]]
# one function per action type; Wait, Blocked and Converged do nothing
ACTIONS: dict[type, Act] = {
    plan.CreateAdminKey: create_admin_key,
    plan.CreateNodeKeys: create_node_keys,
    plan.WriteGenesis: write_genesis,
    plan.AdoptGenesis: adopt_genesis,
    plan.AddValidator: add_validator,
    plan.RemoveValidator: remove_validator,
    plan.AddOrganization: add_organization,
    plan.SetParam: set_param,
    replace_plan.Declare: declare_replacement,
    replace_plan.Finish: finish_replacement,
    plan.Propose: propose,
    plan.Vote: vote,
    plan.CreateMemberKey: create_member_key,
    plan.RegisterMember: register_member,
}

__all__ = ["Env", "Events", "Outcome", "Pass", "Subject", "delete", "reconcile", "timer"]
