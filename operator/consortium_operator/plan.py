"""Pure planning: (desired spec, observed world) -> the next step.

`next_step` returns a `Step`: the workload targets to render this pass (per organisation:
replicas, template fingerprint, rollout partition) and at most ONE action. The handler applies
the targets, performs the action, and comes back later; the plan is level-triggered, so a
restarted operator simply recomputes where it is.

Order of business:
  1. genesis phase (gated): admin key -> node keys of the genesis validators -> genesis
     ConfigMap. No workload exists before the genesis does.
  2. workloads exist with the current membership (never more pods than keys).
  3. a rollout in progress continues: one pod at a time (StatefulSet partition), the next
     only after the restarted pod is Ready AND caught up with the chain's height.
  4. membership, one member per pass, each awaited (by requeueing: the pending change is
     kept in an annotation, `Observed.pending`) until the chain confirms it:
     an organisation added to the spec after genesis is admitted first (AddOrganization with
     its CA, so every node trusts its certificates before its first pod starts);
     scale up = key -> pod -> caught up -> AddValidator; scale down = RemoveValidator ->
     confirmed -> pod removed.

Invariants (tests/unit/operator/test_plan.py):
  - never more than one membership change or one restarting pod at a time;
  - a RemoveValidator or a restart is only planned if the validators left live still make a
    quorum of the validator set both before and after the change;
  - bft never goes below 4 validators, raft never below 1;
  - existing keys and an existing genesis are never replaced."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import genesis
from .model import ConsortiumSpec, Names, Observed


@dataclass(frozen=True, slots=True)
class OrgTarget:
    """What an organisation's StatefulSet should be this pass. The pod template is always
    rendered from the desired spec; `partition` decides which pods get it: ordinals >=
    partition run the new template. partition == replicas holds every pod on its current
    template (an organisation waiting for its turn to roll)."""

    replicas: int
    partition: int = 0


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class CreateAdminKey:
    def __str__(self) -> str:
        return "create the governance admin key"


@dataclass(frozen=True, slots=True)
class CreateNodeKeys:
    org: str
    pods: tuple[str, ...]

    def __str__(self) -> str:
        return f"create node keys for {', '.join(self.pods)}"


@dataclass(frozen=True, slots=True)
class WriteGenesis:
    """Everything the genesis needs but the creation time (a property of the object): the
    genesis validators' keys (pod -> node id), the admin key, the organisations' CAs."""

    validators: tuple[tuple[str, bytes], ...] = ()
    admin: bytes = b""
    ca_certs: tuple[tuple[str, bytes], ...] = ()

    def __str__(self) -> str:
        return "write the genesis"


@dataclass(frozen=True, slots=True)
class AddValidator:
    pod: str
    org: str
    node_id: bytes

    def __str__(self) -> str:
        return f"add validator {self.pod} ({self.org})"


@dataclass(frozen=True, slots=True)
class RemoveValidator:
    pod: str
    org: str
    node_id: bytes

    def __str__(self) -> str:
        return f"remove validator {self.pod} ({self.org})"


@dataclass(frozen=True, slots=True)
class AddOrganization:
    """Admit an organisation that joined the spec after genesis, with its CA certificate
    (empty without TLS)."""

    org: str
    ca_cert: bytes = b""

    def __str__(self) -> str:
        return f"admit organisation {self.org}"


@dataclass(frozen=True, slots=True)
class Wait:
    """Progressing: something is under way; look again later."""

    reason: str  # CamelCase, for conditions and events
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Blocked:
    """Cannot proceed safely (e.g. a change would break quorum): Degraded until it can."""

    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Converged:
    def __str__(self) -> str:
        return "converged"


Action = (
    CreateAdminKey
    | CreateNodeKeys
    | WriteGenesis
    | AddValidator
    | RemoveValidator
    | AddOrganization
    | Wait
    | Blocked
    | Converged
)


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    targets: Mapping[str, OrgTarget] | None = None  # None: no workloads yet (genesis phase)
    phase: str = "Pending"
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- planning


def next_step(
    desired: ConsortiumSpec,
    observed: Observed,
    names: Names,
    default_image: str,
    max_lag: int = 2,
) -> Step:
    # 1. genesis phase
    if not observed.has_genesis:
        if observed.admin_public is None:
            return Step(CreateAdminKey(), phase="Genesis")
        for org in desired.organizations:
            missing = tuple(
                names.pod(org.name, i)
                for i in range(org.validators)
                if names.pod(org.name, i) not in observed.node_keys
            )
            if missing:
                return Step(CreateNodeKeys(org.name, missing), phase="Genesis")
        cas_wait = _cas_missing(desired, observed, [o.name for o in desired.organizations])
        if cas_wait is not None:
            return Step(cas_wait, phase="Genesis")
        members = [p for p, _ in genesis.initial_members(desired, names)]
        assert observed.admin_public is not None  # the first gate above
        return Step(
            WriteGenesis(
                tuple((p, observed.node_keys[p]) for p in members),
                observed.admin_public,
                tuple(sorted(observed.ca_certs.items())) if desired.security.tls else (),
            ),
            phase="Genesis",
        )

    ctx = _Ctx(desired, observed, names, default_image, max_lag)
    targets = ctx.base_targets()
    if any(not sts.settled for sts in observed.statefulsets.values()):
        return Step(
            Wait("StatefulSetPending", "waiting for the StatefulSet controller"),
            targets,
            "Creating",
        )

    # 2. workloads: a StatefulSet that does not exist yet is created now (with its genesis
    # members); wait for the pods before anything else.
    if any(org.name not in observed.statefulsets for org in desired.organizations):
        return Step(Wait("Creating", "creating node workloads"), targets, "Creating")

    # a committed membership change is awaited (by requeueing) before anything else moves
    if not observed.pending_reflected():
        return Step(
            Wait("WaitingForMembership", f"waiting for the chain to apply {observed.pending}"),
            targets,
            "Scaling",
        )

    # 3. rollout (one pod at a time across the whole consortium)
    step = ctx.rollout(targets)
    if step is not None:
        return step

    # 4. membership
    step = ctx.membership(targets)
    if step is not None:
        return step

    not_ready = sorted(p.name for p in observed.pods.values() if not p.ready)
    expected = sum(t.replicas for t in targets.values())
    if not_ready or len(observed.pods) < expected:
        waiting = ", ".join(not_ready) or f"{expected - len(observed.pods)} pod(s) to appear"
        return Step(Wait("PodsNotReady", f"waiting for {waiting}"), targets, "Creating")
    return Step(Converged(), targets, "Running")


def _cas_missing(desired: ConsortiumSpec, observed: Observed, orgs: list[str]) -> Wait | None:
    """With TLS, an organisation's CA must exist before the chain lists it (genesis,
    AddOrganization): the certificate phase of this pass issues it, the next pass uses it."""
    missing = [o for o in orgs if desired.security.tls and o not in observed.ca_certs]
    if not missing:
        return None
    return Wait("IssuingCertificates", f"waiting for the CA of {', '.join(missing)}")


class _Ctx:
    def __init__(
        self,
        desired: ConsortiumSpec,
        observed: Observed,
        names: Names,
        default_image: str,
        max_lag: int,
    ) -> None:
        self.d = desired
        self.o = observed
        self.names = names
        self.image = default_image
        self.max_lag = max_lag
        self.height = observed.chain_height()
        self.vset = observed.validator_set()

    def fingerprint(self, org: str) -> str:
        spec = self.d.org(org)
        assert spec is not None
        return self.d.pod_fingerprint(spec, self.image)

    def base_targets(self) -> dict[str, OrgTarget]:
        """Targets that keep what exists (replicas and partition as observed). A new
        StatefulSet starts with the organisation's genesis validators. An organisation whose
        template changes this pass is held (partition = replicas) so that no pod restarts
        before its turn."""
        genesis_count: dict[str, int] = {}
        for node_id, member_org in self.o.genesis_validators or ():
            if self.o.pod_of_key(node_id) is not None:
                genesis_count[member_org] = genesis_count.get(member_org, 0) + 1
        out: dict[str, OrgTarget] = {}
        for org in self.d.organizations:
            sts = self.o.statefulsets.get(org.name)
            if sts is None:
                out[org.name] = OrgTarget(genesis_count.get(org.name, 0), 0)
            elif sts.fingerprint != self.fingerprint(org.name):
                out[org.name] = OrgTarget(sts.replicas, sts.replicas)
            else:
                out[org.name] = OrgTarget(sts.replicas, sts.partition)
        return out

    # ----------------------------------------------------------------------- chain helpers

    def caught_up(self, pod: str) -> bool:
        """Ready, answering, synced and within max_lag blocks of the chain's height."""
        p = self.o.pods.get(pod)
        n = self.o.nodes.get(pod)
        return (
            p is not None
            and p.ready
            and n is not None
            and n.sync_state != "catching-up"
            and n.height + self.max_lag >= self.height
        )

    def validators(self) -> dict[bytes, str]:
        return dict(self.vset or ())

    def live_validators(self, exclude: str | None = None) -> int:
        """Validators of the current set whose pod is caught up (minus `exclude`)."""
        n = 0
        for node_id in self.validators():
            pod = self.o.pod_of_key(node_id)
            if pod is not None and pod != exclude and self.caught_up(pod):
                n += 1
        return n

    def quorum_block(self, size_before: int, size_after: int, exclude: str | None) -> str | None:
        """None if the chain keeps a quorum of live validators before the change (to commit
        it) and after it (with `exclude` gone or restarting); otherwise why not."""
        q = self.d.consensus.quorum
        live_before = self.live_validators()
        live_after = self.live_validators(exclude)
        if live_before < q(size_before):
            return (
                f"only {live_before} of {size_before} validators are live and caught up; "
                f"quorum is {q(size_before)}"
            )
        if live_after < q(size_after):
            return (
                f"{live_after} live validators would remain of {size_after}; "
                f"quorum is {q(size_after)}"
            )
        return None

    def _all_updated(self, org: str, revision: str) -> bool:
        return all(p.revision == revision for p in self.o.pods.values() if p.org == org)

    # ----------------------------------------------------------------------- rollout

    def rollout(self, targets: dict[str, OrgTarget]) -> Step | None:
        """One pod at a time across the consortium, highest ordinal first."""
        n = len(self.validators())
        # (1) continue the rollout under way (at most one organisation is mid-rollout)
        for org in self.d.organizations:
            sts = self.o.statefulsets[org.name]
            t = targets[org.name]
            if sts.fingerprint != self.fingerprint(org.name) or t.replicas == 0:
                continue
            mid = 0 < t.partition < t.replicas or (
                t.partition == 0 and not self._all_updated(org.name, sts.update_revision)
            )
            if not mid:
                continue
            pod = self.names.pod(org.name, t.partition)
            p = self.o.pods.get(pod)
            if p is None or p.revision != sts.update_revision or not self.caught_up(pod):
                return Step(
                    Wait("RollingUpdate", f"waiting for {pod} to restart and catch up"),
                    targets,
                    "Upgrading",
                )
            if t.partition == 0:
                return Step(
                    Wait("RollingUpdate", f"waiting for every {org.name} pod to be updated"),
                    targets,
                    "Upgrading",
                )
            nxt = self.names.pod(org.name, t.partition - 1)
            block = self.quorum_block(n, n, nxt)
            if block is not None:
                return Step(
                    Blocked("QuorumAtRisk", f"not restarting {nxt}: {block}"), targets, "Degraded"
                )
            targets[org.name] = OrgTarget(t.replicas, t.partition - 1)
            return Step(Wait("RollingUpdate", f"restarting {nxt}"), targets, "Upgrading")
        # (2) templates that change this pass are held; start them next pass
        changing = [
            o.name
            for o in self.d.organizations
            if self.o.statefulsets[o.name].fingerprint != self.fingerprint(o.name)
        ]
        if changing:
            return Step(
                Wait("RollingUpdate", f"updating the pod template of {', '.join(changing)}"),
                targets,
                "Upgrading",
            )
        # (3) start the next held organisation: its highest ordinal first
        for org in self.d.organizations:
            sts = self.o.statefulsets[org.name]
            t = targets[org.name]
            if t.replicas == 0 or t.partition < t.replicas:
                continue
            if self._all_updated(org.name, sts.update_revision):
                targets[org.name] = OrgTarget(t.replicas, 0)  # nothing to restart
                continue
            first = self.names.pod(org.name, t.replicas - 1)
            block = "no node reports the chain's status" if self.vset is None else None
            block = block or self.quorum_block(n, n, first)
            if block is not None:
                return Step(
                    Blocked("QuorumAtRisk", f"not restarting {first}: {block}"), targets, "Degraded"
                )
            targets[org.name] = OrgTarget(t.replicas, t.replicas - 1)
            return Step(Wait("RollingUpdate", f"restarting {first}"), targets, "Upgrading")
        return None

    # ----------------------------------------------------------------------- membership

    def membership(self, targets: dict[str, OrgTarget]) -> Step | None:
        if self.vset is None:
            return Step(
                Wait("WaitingForNodes", "waiting for a node to report the chain's status"),
                targets,
                "Creating",
            )
        vals = self.validators()
        n = len(vals)
        on_chain = self.o.chain_organizations()
        for org in self.d.organizations:
            t = targets[org.name]
            # an organisation new to the chain: admitted before it gets a key or a pod
            if on_chain is not None and org.name not in on_chain:
                cas_wait = _cas_missing(self.d, self.o, [org.name])
                if cas_wait is not None:
                    return Step(cas_wait, targets, "Scaling")
                return Step(
                    AddOrganization(org.name, self.o.ca_certs.get(org.name, b"")),
                    targets,
                    "Scaling",
                )
            want = org.validators
            members = [
                i
                for i in range(t.replicas)
                if self.o.node_keys.get(self.names.pod(org.name, i)) in vals
            ]
            # (a) a pod below the desired count that is not a validator yet: add it once it
            # has caught up (a fresh node syncs as an observer first)
            for i in range(min(t.replicas, want)):
                pod = self.names.pod(org.name, i)
                key = self.o.node_keys.get(pod)
                if key is None or key in vals:
                    continue
                if not self.caught_up(pod):
                    return Step(
                        Wait("Scaling", f"waiting for {pod} to catch up before adding it"),
                        targets,
                        "Scaling",
                    )
                block = self.quorum_block(n, n + 1, None)
                if block is not None:
                    return Step(
                        Blocked("QuorumAtRisk", f"not adding {pod}: {block}"), targets, "Degraded"
                    )
                return Step(AddValidator(pod, org.name, key), targets, "Scaling")
            # (b) scale up: the next pod (its key first, so the pod finds it when it starts)
            if len(members) == t.replicas and t.replicas < want:
                pod = self.names.pod(org.name, t.replicas)
                if pod not in self.o.node_keys:
                    return Step(CreateNodeKeys(org.name, (pod,)), targets, "Scaling")
                targets[org.name] = OrgTarget(t.replicas + 1, t.partition)
                return Step(Wait("Scaling", f"starting {pod}"), targets, "Scaling")
            # (c) a pod above the desired count that is no longer a validator: stop it first
            # (pods go highest ordinal first, so it blocks every other removal)
            if t.replicas > want:
                top = self.names.pod(org.name, t.replicas - 1)
                if self.o.node_keys.get(top) not in vals:
                    targets[org.name] = OrgTarget(t.replicas - 1, min(t.partition, t.replicas - 1))
                    return Step(Wait("Scaling", f"stopping {top}"), targets, "Scaling")
            # (d) scale down: take the highest-ordinal validator out of the chain first
            if len(members) > want:
                pod = self.names.pod(org.name, max(members))
                if n - 1 < self.d.consensus.min_validators():
                    return Step(
                        Blocked(
                            "TooFewValidators",
                            f"not removing {pod}: {self.d.consensus.type} needs at least "
                            f"{self.d.consensus.min_validators()} validators",
                        ),
                        targets,
                        "Degraded",
                    )
                block = self.quorum_block(n, n - 1, pod)
                if block is not None:
                    return Step(
                        Blocked("QuorumAtRisk", f"not removing {pod}: {block}"), targets, "Degraded"
                    )
                return Step(
                    RemoveValidator(pod, org.name, self.o.node_keys[pod]), targets, "Scaling"
                )
        return None
