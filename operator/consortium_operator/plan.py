"""Pure planning: (desired spec, observed world) -> the next step.

`next_step` returns a `Step`: the workload targets to render this pass (per organisation:
replicas, template fingerprint, rollout partition) and at most ONE action. The handler applies
the targets, performs the action, and comes back later; the plan is level-triggered, so a
restarted operator simply recomputes where it is.

Order of business:
  1. genesis phase (gated): each organisation's admin key -> member keys (memberKey) ->
     node keys of the genesis validators -> genesis ConfigMap. No workload exists before the
     genesis does; no node key is minted over an existing ledger volume (_refuse_new_keys).
  2. workloads exist with the current membership (never more pods than keys).
  2b. a lost validator a person declared (annotation consortium.dev/replace-validator) is
     replaced by its own organisation: replace.py, one step per pass.
  3. a rollout in progress continues: one pod at a time (StatefulSet partition), the next
     only after the restarted pod is Ready AND caught up with the chain's height.
  4. membership, one member per pass, each awaited (by requeueing: the pending change is
     kept in an annotation, `Observed.pending`) until the chain confirms it:
     an organisation added to the spec after genesis is admitted first (AddOrganization with
     its CA, so every node trusts its certificates before its first pod starts);
     federation, joining (a local organisation the adopted genesis does not list, and no
     local organisation is a member to propose it: federation.joining): its genesis-phase
     pods start at once as non-validators (phase Joining) and wait, WaitingForAdmission, for
     the members' AddOrganization — the other clusters' operators propose and vote it once
     their specs describe it (`consortium ceremony remote-org`); once the chain lists it and
     its pods caught up, it proposes its own validators like any scale-up;
     a remote organisation's validators are its own operator's to propose: this one only
     votes yes on a pending AddValidator of a node id its spec lists for it;
     scale up = key -> pod -> caught up -> AddValidator; scale down = RemoveValidator ->
     confirmed -> pod removed.
  5. member keys (organizations[].memberKey): the key in the organisation's client Secret
     (before the genesis, which then vouches for it; or later), and an AddMember signed by
     the organisation itself when the genesis does not list it.
  6. chain parameters (spec.parameters): a value that differs from the chain's becomes a
     SetParam — a proposal like a membership change (phase Configuring), one per pass, in
     parameter-name order; nothing is asked while no node reports the chain's parameters.

Governance by organisations (chains whose genesis lists organizations[].admins — every chain
this operator creates; `Observed.org_governance`). Each organisation has its own admin key in
its own Secret (genesis phase: one CreateAdminKey(org) per organisation, before the genesis).
A membership change is then not sent directly but becomes a proposal (`_Ctx.govern`):
  - no proposal for it on chain (or only EXPIRED/ABORTED ones, or an EXECUTED one older than
    EXECUTED_WINDOW blocks): Propose, signed by the organisation the change concerns if it
    approves automatically, else by the first member organisation that does (none does:
    wait for a person to propose it);
  - PENDING: Vote yes for the first member organisation with `approve: auto` that has not
    voted — signed with that organisation's key, one vote per pass; when only `manual`
    organisations can still vote, wait (WaitingForApprovals, "1/3, need 2");
  - EXECUTED within EXECUTED_WINDOW blocks: wait for the chain to apply it;
  - REJECTED / FAILED / WITHDRAWN: Blocked — the organisations refused what the spec asks.
Chains made before (a genesis without organisation admins) keep the single consortium admin
key and direct transactions; `consortium gov migrate` moves them to organisations.

Invariants (tests/unit/operator/test_plan.py):
  - never more than one membership change or one restarting pod at a time;
  - a RemoveValidator or a restart is only planned if the validators left live still make a
    quorum of the validator set both before and after the change;
  - bft never goes below 4 validators, raft never below 1;
  - existing keys and an existing genesis are never replaced;
  - under governance by organisations, every Propose and Vote names the organisation whose
    own key signs it, and that organisation is the one the vote is counted for: the operator
    never votes for an organisation with `approve: manual`, nor twice for one."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import certplan, federation, genesis, replace
from .model import ConsortiumSpec, Names, Observed, OrganizationSpec, ProposalView


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
    """An organisation's own admin key (its Secret <consortium>-<org>-admin); `org` ""
    is the single consortium admin key of a legacy chain (never created for a new one)."""

    org: str = ""

    def __str__(self) -> str:
        if not self.org:
            return "create the governance admin key"
        return f"create the admin key of {self.org}"


@dataclass(frozen=True, slots=True)
class CreateNodeKeys:
    org: str
    pods: tuple[str, ...]

    def __str__(self) -> str:
        return f"create node keys for {', '.join(self.pods)}"


@dataclass(frozen=True, slots=True)
class WriteGenesis:
    """Everything the genesis needs but the creation time (a property of the object): the
    genesis validators' keys (pod -> node id), the organisations' CAs, each organisation's
    own admin key and (memberKey) member key. A new chain is always governed by its
    organisations: there is no consortium admin key to list."""

    validators: tuple[tuple[str, bytes], ...] = ()
    ca_certs: tuple[tuple[str, bytes], ...] = ()
    org_admins: tuple[tuple[str, bytes], ...] = ()  # organisation -> its admin key
    members: tuple[tuple[str, bytes], ...] = ()  # organisation -> its member key (memberKey)

    def __str__(self) -> str:
        return "write the genesis"


@dataclass(frozen=True, slots=True)
class AdoptGenesis:
    """Federation: write the ceremony's genesis (verified: hash, every organisation's
    signature, this cluster's and the spec's parts) into the genesis ConfigMap."""

    genesis: bytes

    def __str__(self) -> str:
        return f"adopt the ceremony's genesis {hashlib.sha256(self.genesis).hexdigest()[:16]}"


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
    admins: tuple[bytes, ...] = ()  # its admin keys (governance by organisations)

    def __str__(self) -> str:
        return f"admit organisation {self.org}"


@dataclass(frozen=True, slots=True)
class DeployContract:
    """Install contract `name` from its ConfigMap's module (spec.contracts), its init run
    with `init_input`. `code_hash` (SHA-256 of `code`) names the proposal: a refused deploy of
    one module does not block a corrected one."""

    name: str
    code: bytes = field(repr=False)
    code_hash: bytes
    init_input: bytes = b""

    def __str__(self) -> str:
        return f"deploy contract {self.name} (code {self.code_hash.hex()[:16]})"


@dataclass(frozen=True, slots=True)
class UpgradeContract:
    """Replace contract `name`'s code with its ConfigMap's module: the spec raised its
    version above the deployed one (`from_version`) and the module differs."""

    name: str
    code: bytes = field(repr=False)
    code_hash: bytes
    from_version: int

    def __str__(self) -> str:
        return (
            f"upgrade contract {self.name} from version {self.from_version} "
            f"(code {self.code_hash.hex()[:16]})"
        )


@dataclass(frozen=True, slots=True)
class ReplaceValidator:
    """Swap the chain's lost validator `old` of `org` for `new`, the key of `pod` (policy
    SELF: `org` alone decides; replace.py plans it from a person's declaration)."""

    pod: str
    org: str
    old: bytes
    new: bytes

    def __str__(self) -> str:
        return f"replace validator {self.old.hex()[:16]} of {self.org} by {self.pod}"


@dataclass(frozen=True, slots=True)
class SetParam:
    """Set chain parameter `name` (ledger/state.py PARAMS) to `value`, as spec.parameters
    asks. It concerns no one organisation (`org` is ""): any auto organisation proposes it."""

    name: str
    value: int
    org: str = ""

    def __str__(self) -> str:
        return f"set {self.name} to {self.value}"


Change = (
    AddValidator
    | RemoveValidator
    | AddOrganization
    | DeployContract
    | UpgradeContract
    | SetParam
    | ReplaceValidator
)
ContractChange = DeployContract | UpgradeContract
EXECUTED_WINDOW = 20  # blocks: an executed change is awaited this long before it is re-proposed


def change_key(change: Change) -> tuple[str, str]:
    """What a proposal must do to be the proposal for `change` (`ProposalView.change`)."""
    if isinstance(change, AddValidator):
        return ("add_validator", change.node_id.hex())
    if isinstance(change, RemoveValidator):
        return ("remove_validator", change.node_id.hex())
    if isinstance(change, DeployContract):
        return ("deploy_contract", contract_subject(change.name, change.code_hash))
    if isinstance(change, UpgradeContract):
        return ("upgrade_contract", contract_subject(change.name, change.code_hash))
    if isinstance(change, SetParam):
        return ("set_param", f"{change.name}={change.value}")
    if isinstance(change, ReplaceValidator):
        return ("replace_validator", f"{change.old.hex()}>{change.new.hex()}")
    return ("add_organization", change.org)


def contract_subject(name: str, code_hash: bytes) -> str:
    """The subject a contract proposal is matched by: the name and the module's hash."""
    return f"{name}@{code_hash.hex()}"


@dataclass(frozen=True, slots=True)
class Propose:
    """Open a proposal for `change`, signed with `org`'s own admin key (whose organisation
    thereby votes yes)."""

    change: Change
    org: str

    def __str__(self) -> str:
        return f"propose to {self.change} (as {self.org})"


@dataclass(frozen=True, slots=True)
class Vote:
    """Vote yes on proposal `proposal` (which does `change`), signed with `org`'s own admin
    key — only ever for an organisation with `approve: auto`."""

    proposal: int
    org: str
    change: Change

    def __str__(self) -> str:
        return f"vote yes on proposal {self.proposal} ({self.change}) as {self.org}"


@dataclass(frozen=True, slots=True)
class CreateMemberKey:
    """A member (sender) key for the users of `org` (an organisation with memberKey), in its
    client Secret; never replaced once there."""

    org: str

    def __str__(self) -> str:
        return f"create the member key of {self.org}"


@dataclass(frozen=True, slots=True)
class RegisterMember:
    """AddMember{key, org}: `org` vouches for its member key on a permissioned chain, signed
    with `org`'s own admin key (policy SELF: no other organisation decides who its members
    are); on a legacy chain with the consortium admin key."""

    org: str
    key: bytes

    def __str__(self) -> str:
        return f"vouch for the member key {self.key.hex()[:16]} of {self.org}"


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
    | AdoptGenesis
    | AddValidator
    | RemoveValidator
    | AddOrganization
    | DeployContract
    | UpgradeContract
    | SetParam
    | ReplaceValidator
    | replace.Declare
    | replace.Finish
    | Propose
    | Vote
    | CreateMemberKey
    | RegisterMember
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


# Waits whose end only the Kubernetes objects the operator watches can bring (the events of
# kube.MetadataWatch): the StatefulSet controller catching up, workloads being created, pods
# appearing or becoming ready.
WATCHED_WAITS = frozenset({"StatefulSetPending", "Creating", "PodsNotReady"})


def waits_on_watched_objects(step: Step, observed: Observed) -> bool:
    """The step waits for nothing but watched Kubernetes objects: a WATCHED_WAITS reason and
    no node answering (so nothing the chain reports — heights, proposals to vote on, params
    — took part in the plan, and nothing the chain does can change it before a pod does)."""
    a = step.action
    return isinstance(a, Wait) and a.reason in WATCHED_WAITS and not observed.nodes


# --------------------------------------------------------------------------- planning


def next_step(  # noqa: C901 -- the order of business of the module docstring
    desired: ConsortiumSpec,
    observed: Observed,
    names: Names,
    default_image: str,
    max_lag: int = 2,
) -> Step:
    # 1. genesis phase
    if not observed.has_genesis:
        if desired.genesis.admins:
            return Step(
                Blocked(
                    "GenesisAdminsUnsupported",
                    "spec.genesis.admins are single-admin governance, which new chains do not "
                    "use: each organisation gets its own admin key (Secret "
                    f"{names.org_admin_secret('<org>')}); re-create the Consortium without them",
                ),
                phase="Degraded",
            )
        # a new chain is governed by its organisations: each gets its own admin key first
        # (federation: only the local ones — a remote organisation's keys live elsewhere)
        for org in desired.local:
            if org.name not in observed.org_admins:
                return Step(CreateAdminKey(org.name), phase="Genesis")
        # and, with memberKey, a member key its users write with (vouched for in genesis)
        for org in desired.local:
            if org.member_key and org.name not in observed.member_keys:
                return Step(CreateMemberKey(org.name), phase="Genesis")
        for org in desired.local:
            missing = tuple(
                names.pod(org.name, i)
                for i in range(org.validators)
                if names.pod(org.name, i) not in observed.node_keys
            )
            if missing:
                refused = _refuse_new_keys(observed, names, org.name, missing)
                if refused is not None:
                    return Step(refused, phase="Degraded")
                return Step(CreateNodeKeys(org.name, missing), phase="Genesis")
        cas_wait = _cas_missing(desired, observed, [o.name for o in desired.local])
        if cas_wait is not None:
            return Step(cas_wait, phase="Genesis")
        if desired.federated or desired.genesis_from is not None:
            return _federated_genesis(desired, observed, names)
        members = [p for p, _ in genesis.initial_members(desired, names)]
        return Step(
            WriteGenesis(
                tuple((p, observed.node_keys[p]) for p in members),
                tuple(sorted(observed.ca_certs.items())) if desired.security.tls else (),
                tuple((o.name, observed.org_admins[o.name]) for o in desired.organizations),
                tuple(
                    (o.name, observed.member_keys[o.name])
                    for o in desired.organizations
                    if o.member_key
                ),
            ),
            phase="Genesis",
        )

    pinned = desired.genesis_from
    if pinned is not None and observed.genesis_hash != pinned.sha256:
        # the genesis ConfigMap the nodes mount is not the one the organisations signed
        return Step(
            Blocked(
                "GenesisMismatch",
                f"ConfigMap {names.genesis_configmap} holds genesis {observed.genesis_hash[:16]}…, "
                f"spec.genesisFrom.sha256 is {pinned.sha256[:16]}…: not running nodes on it",
            ),
            phase="Degraded",
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
    if any(org.name not in observed.statefulsets for org in desired.local):
        return Step(Wait("Creating", "creating node workloads"), targets, "Creating")

    # a committed membership change is awaited (by requeueing) before anything else moves
    if not observed.pending_reflected():
        return Step(
            Wait("WaitingForMembership", f"waiting for the chain to apply {observed.pending}"),
            targets,
            "Scaling",
        )

    # a lost validator declared for replacement (replace.py): before anything else moves
    step = replace.step(ctx, targets)
    if step is not None:
        return step

    # 3. rollout (one pod at a time across the whole consortium)
    step = ctx.rollout(targets)
    if step is not None:
        return step

    # 4. membership
    step = ctx.membership(targets)
    if step is not None:
        return step

    # 5. member keys of organisations that ask for one (issue 20): a user's first write
    step = ctx.member_keys(targets)
    if step is not None:
        return step

    # 6. contracts of spec.contracts: deployed, or upgraded when the spec raises the version
    step = ctx.contracts(targets)
    if step is not None:
        return step

    # 7. chain parameters
    step = ctx.parameters(targets)
    if step is not None:
        return step

    not_ready = sorted(p.name for p in observed.pods.values() if not p.ready)
    expected = sum(t.replicas for t in targets.values())
    if not_ready or len(observed.pods) < expected:
        waiting = ", ".join(not_ready) or f"{expected - len(observed.pods)} pod(s) to appear"
        return Step(Wait("PodsNotReady", f"waiting for {waiting}"), targets, "Creating")
    return Step(Converged(), targets, "Running")


def _federated_genesis(desired: ConsortiumSpec, observed: Observed, names: Names) -> Step:
    """No operator holds every organisation's keys: the genesis is assembled from every
    organisation's contribution by the ceremony, never written here alone; it is adopted by
    reference (spec.genesisFrom) once it verifies (federation.adopt)."""
    if desired.genesis_from is None:
        return Step(
            Wait(
                "WaitingForCeremony",
                "waiting for the ceremony's genesis (spec.genesisFrom): export this cluster's "
                "contributions (status.contributions) with `consortium ceremony contribute "
                "--from-cluster`",
            ),
            phase="Genesis",
        )
    verdict = federation.adopt(desired, observed, names)
    if isinstance(verdict, federation.Adopt):
        return Step(AdoptGenesis(verdict.genesis), phase="Genesis")
    if verdict.reason == "WaitingForGenesis":
        return Step(Wait(verdict.reason, verdict.message), phase="Genesis")
    return Step(Blocked(verdict.reason, verdict.message), phase="Degraded")


def _refuse_new_keys(
    observed: Observed, names: Names, org: str, pods: tuple[str, ...]
) -> Blocked | None:
    """Why no new node key may be minted for `pods` now, if so (the quorum-kubernetes
    incident: restarted pods minted new keys over old data and halted a production network).
    A new key is refused while (1) a pod's ledger volume exists — it holds a chain (an earlier
    consortium of this name, or this pod's own) that a new identity must never take over — or
    (2) the chain records a validator of `org` whose key is not in the organisation's key
    Secret: a key was lost, and the pod that would get a new one may be that validator's.
    Either way a person decides: restore the key Secret from a backup, or delete the volume;
    a lost validator is replaced by its organisation (ReplaceValidator), not by a new key."""
    secret = names.keys_secret(org)
    old = [p for p in pods if p in observed.volumes]
    if old:
        return Blocked(
            "OldDataExists",
            f"not creating a new key for {', '.join(old)}: its ledger volume "
            f"({', '.join('data-' + p for p in old)}) exists but Secret {secret} has no key "
            "for it; restore the key from a backup, or delete the volume if its data is not "
            "this chain's",
        )
    held = set(observed.node_keys.values())
    vset = observed.validator_set() if observed.has_genesis else None
    lost = sorted(k.hex()[:16] for k, o in vset or () if o == org and k not in held)
    if lost:
        return Blocked(
            "KeyLost",
            f"not creating a new key for {', '.join(pods)}: the chain lists validator(s) "
            f"{', '.join(lost)} of {org} whose key is not in Secret {secret}; restore it from "
            "a backup (a lost validator is replaced by its organisation with ReplaceValidator)",
        )
    return None


def _cas_missing(desired: ConsortiumSpec, observed: Observed, orgs: list[str]) -> Wait | None:
    """With TLS, an organisation's CA must exist before the chain lists it (genesis,
    AddOrganization): the certificate decision (certplan) says whether the operator holds
    it; if not, the certificate phase of this pass issues it and the next pass uses it."""
    decisions = certplan.ca_decisions(desired, observed)
    # (no decisions without TLS; an incomplete CA Secret counts as held, and fails the pass)
    missing = [o for o in orgs if o in decisions and o not in observed.ca_certs]
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
        self.joining = federation.joining(desired, observed)

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
        for org in self.d.local:  # remote organisations' nodes run in their own clusters
            sts = self.o.statefulsets.get(org.name)
            if org.name in self.joining and not any(o == org.name for _, o in self.vset or ()):
                # joining a running chain, no validator of it yet: every keyed genesis-phase
                # pod runs, as a non-validator (it is what observes the chain for us)
                keyed = sum(
                    self.names.pod(org.name, i) in self.o.node_keys for i in range(org.validators)
                )
                if sts is None or sts.replicas < keyed:
                    out[org.name] = OrgTarget(keyed, sts.partition if sts is not None else 0)
                    continue
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
        """Validators of the current set whose pod is caught up (minus `exclude`). A
        validator of a remote organisation (federation) cannot be observed from here and is
        counted as live: its own operator guards its restarts the same way, and the chain
        itself refuses nothing for it — so in a federation this check protects against our
        own moves only."""
        n = 0
        for node_id, org in self.validators().items():
            if not self.d.is_local(org):
                n += 1
                continue
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
        for org in self.d.local:
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
            for o in self.d.local
            if self.o.statefulsets[o.name].fingerprint != self.fingerprint(o.name)
        ]
        if changing:
            return Step(
                Wait("RollingUpdate", f"updating the pod template of {', '.join(changing)}"),
                targets,
                "Upgrading",
            )
        # (3) start the next held organisation: its highest ordinal first
        for org in self.d.local:
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

    def membership(self, targets: dict[str, OrgTarget]) -> Step | None:  # noqa: C901 -- one case per membership change
        if self.vset is None:
            joiner = next((o for o in self.d.local if o.name in self.joining), None)
            if joiner is not None:
                return self.join(joiner, None, targets)
            return Step(
                Wait("WaitingForNodes", "waiting for a node to report the chain's status"),
                targets,
                "Creating",
            )
        vals = self.validators()
        n = len(vals)
        on_chain = self.o.chain_organizations()
        for org in self.d.organizations:
            if not self.d.is_local(org.name):
                # a remote organisation: admitted with its own CA and admins from the spec;
                # its validators are its own operator's to propose (we second them)
                if on_chain is not None and org.name not in on_chain and org.remote:
                    r = org.remote
                    change = AddOrganization(
                        org.name, r.ca_cert.encode(), tuple(bytes.fromhex(k) for k in r.admins)
                    )
                    return self.govern(change, targets)
                step = self.second_remote_validators(org, targets)
                if step is not None:
                    return step
                continue
            t = targets[org.name]
            if org.name in self.joining and (on_chain is None or org.name not in on_chain):
                step = self.join(org, on_chain, targets)
                if step is not None:
                    return step
            # an organisation new to the chain: admitted before it gets a key or a pod
            if on_chain is not None and org.name not in on_chain:
                cas_wait = _cas_missing(self.d, self.o, [org.name])
                if cas_wait is not None:
                    return Step(cas_wait, targets, "Scaling")
                if not self.o.org_governance:
                    ca = self.o.ca_certs.get(org.name, b"")
                    return Step(AddOrganization(org.name, ca), targets, "Scaling")
                # admitted with its own admin key, which it then governs alone (SELF)
                admin = self.o.org_admins.get(org.name)
                if admin is None:
                    return Step(CreateAdminKey(org.name), targets, "Scaling")
                ca = self.o.ca_certs.get(org.name, b"")
                return self.govern(AddOrganization(org.name, ca, (admin,)), targets)
            want = org.validators
            members = [
                i
                for i in range(t.replicas)
                if self.o.node_keys.get(self.names.pod(org.name, i)) in vals
            ]
            # (a) a pod below the desired count that is not a validator yet: add it once it
            # has caught up (a fresh node syncs as an observer first)
            phase = "Joining" if org.name in self.joining and not members else "Scaling"
            for i in range(min(t.replicas, want)):
                pod = self.names.pod(org.name, i)
                key = self.o.node_keys.get(pod)
                if key is None or key in vals:
                    continue
                if not self.caught_up(pod):
                    return Step(
                        Wait(phase, f"waiting for {pod} to catch up before adding it"),
                        targets,
                        phase,
                    )
                block = self.quorum_block(n, n + 1, None)
                if block is not None:
                    return Step(
                        Blocked("QuorumAtRisk", f"not adding {pod}: {block}"), targets, "Degraded"
                    )
                return self.govern(AddValidator(pod, org.name, key), targets, phase)
            # (b) scale up: the next pod (its key first, so the pod finds it when it starts)
            if len(members) == t.replicas and t.replicas < want:
                pod = self.names.pod(org.name, t.replicas)
                if pod not in self.o.node_keys:
                    refused = _refuse_new_keys(self.o, self.names, org.name, (pod,))
                    if refused is not None:
                        return Step(refused, targets, "Degraded")
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
                return self.govern(RemoveValidator(pod, org.name, self.o.node_keys[pod]), targets)
        return None

    def join(
        self, org: OrganizationSpec, on_chain: frozenset[str] | None, targets: dict[str, OrgTarget]
    ) -> Step | None:
        """A joining organisation the chain does not list yet: its nodes run as non-validators
        (base_targets) and wait for the members to admit it. None when a local member
        organisation can propose the admission itself (the ordinary path)."""
        if on_chain is None:
            return Step(
                Wait(
                    "Joining",
                    f"starting the nodes of {org.name} as non-validators on the adopted "
                    "genesis; none answers yet",
                ),
                targets,
                "Joining",
            )
        admin = self.o.org_admins.get(org.name)
        ca = self.o.ca_certs.get(org.name, b"")
        if admin is None or self.proposer(AddOrganization(org.name, ca, (admin,))) is not None:
            return None
        return Step(
            Wait(
                "WaitingForAdmission",
                f"{org.name} is not a member of chain {self.d.chain_id} yet: its nodes run as "
                "non-validators and catch up once a member organisation's AddOrganization for "
                f"it executes. Give the members its contribution (`consortium ceremony "
                f"contribute-from-cluster --org {org.name}`); each adds it to its spec with "
                "`consortium ceremony remote-org`",
            ),
            targets,
            "Joining",
        )

    def second_remote_validators(
        self, org: OrganizationSpec, targets: dict[str, OrgTarget]
    ) -> Step | None:
        """A yes vote on a pending AddValidator of a remote organisation's validator that the
        spec lists (its node id under remote.validators): the spec is this cluster's consent.
        Never a proposal (its own operator proposes once the node caught up, which only it
        sees), and never a wait: manual organisations deciding does not hold up our work."""
        if org.remote is None or self.o.proposals is None:
            return None
        vals = self.validators()
        for v in org.remote.validators:
            node_id = bytes.fromhex(v.node_id)
            if node_id in vals:
                continue
            change = AddValidator(v.name, org.name, node_id)
            key = change_key(change)
            latest = next((p for p in self.o.proposals if p.change == key), None)
            if latest is None or latest.state != "PENDING":
                continue
            step = self.approve(latest, change, targets)
            if isinstance(step.action, Vote):
                return step
        return None

    # ----------------------------------------------------------------------- member keys

    def member_keys(self, targets: dict[str, OrgTarget]) -> Step | None:
        """For each member organisation with memberKey: its key exists, then the chain
        vouches for it (permissioned chains; an open chain takes any sender), signed by the
        organisation itself — its own admin key, which the operator must hold."""
        members = self.members()
        for org in self.d.local:
            if not org.member_key or org.name not in members:
                continue
            key = self.o.member_keys.get(org.name)
            if key is None:
                return Step(CreateMemberKey(org.name), targets, "Creating")
            if self.d.genesis.membership != "permissioned":
                continue
            if key in self.o.genesis_members or self.o.registered_members.get(org.name) == key:
                continue
            signer = org.name in self.o.org_admins if self.o.org_governance else True
            if not signer:
                return Step(
                    Blocked(
                        "NoAdminKey",
                        f"cannot vouch for the member key of {org.name}: the operator holds "
                        f"no admin key of {org.name} (Secret {self.names.org_admin_secret(org.name)})",
                    ),
                    targets,
                    "Degraded",
                )
            return Step(RegisterMember(org.name, key), targets, "Creating")
        return None

    # ----------------------------------------------------------------------- contracts

    def contracts(self, targets: dict[str, OrgTarget]) -> Step | None:
        """spec.contracts, one at a time in spec order: a contract the chain lacks is
        deployed, one whose module differs from the deployed code is upgraded when the spec
        raised its version above the deployed one (without a raised version the difference
        is only reported in status: the spec's version is the deliberate gate). Both go
        through governance like every configuration change."""
        if not self.d.contracts:
            return None
        if not self.o.org_governance:
            return Step(
                Blocked(
                    "ContractsNeedGovernance",
                    "spec.contracts are deployed by the organisations' vote, which this legacy "
                    "single-admin chain does not have: move it to governance by organisations "
                    "with `consortium gov migrate`",
                ),
                targets,
                "Degraded",
            )
        deployed = self.o.contracts
        if deployed is None:
            return Step(
                Wait("WaitingForNodes", "waiting for a node to report the chain's contracts"),
                targets,
                "Deploying",
            )
        for c in self.d.contracts:
            module = self.o.contract_modules.get(c.name)
            if not isinstance(module, bytes):
                why = module or f"ConfigMap {c.config_map} was not read"
                return Step(
                    Blocked("ContractSourceMissing", f"contract {c.name}: {why}"),
                    targets,
                    "Degraded",
                )
            code_hash = hashlib.sha256(module).digest()
            on_chain = deployed.get(c.name)
            change: ContractChange
            if on_chain is None:
                change = DeployContract(c.name, module, code_hash, bytes.fromhex(c.init_input))
            elif on_chain.code_hash != code_hash and c.version > on_chain.version:
                change = UpgradeContract(c.name, module, code_hash, on_chain.version)
            else:
                continue
            return self.govern(change, targets, "Deploying")
        return None

    # ----------------------------------------------------------------------- parameters

    def parameters(self, targets: dict[str, OrgTarget]) -> Step | None:
        """The first chain parameter whose committed value is not what spec.parameters asks:
        its SetParam, through governance like a membership change."""
        wanted = self.d.parameters.chain_values()
        if not wanted:
            return None
        if self.o.chain_params is None:
            return Step(
                Wait("WaitingForNodes", "waiting for a node to report the chain's parameters"),
                targets,
                "Configuring",
            )
        for name, value in sorted(wanted.items()):
            if self.o.chain_params.get(name) != value:
                return self.govern(SetParam(name, value), targets, "Configuring")
        return None

    # ----------------------------------------------------------------------- governance

    def govern(self, change: Change, targets: dict[str, OrgTarget], phase: str = "Scaling") -> Step:
        """The step that moves `change` forward: the change itself on a legacy chain (one
        admin key, direct transaction); under governance by organisations its proposal —
        opened, voted for by the organisations that approve automatically, awaited while
        manual organisations decide (see the module docstring)."""
        if not self.o.org_governance:
            return Step(change, targets, phase)
        proposals = self.o.proposals
        if proposals is None:
            return Step(
                Wait("WaitingForNodes", "waiting for a node to report the chain's proposals"),
                targets,
                phase,
            )
        key = change_key(change)
        latest = next((p for p in proposals if p.change == key), None)  # newest first
        if latest is not None and latest.state == "PENDING":
            return self.approve(latest, change, targets, phase)
        executed = latest is not None and latest.state == "EXECUTED"
        if (
            latest is not None
            and executed
            and latest.closed_height + EXECUTED_WINDOW >= self.height
        ):
            return Step(
                Wait(
                    "WaitingForMembership",
                    f"waiting for the chain to apply proposal {latest.id} ({change})",
                ),
                targets,
                phase,
            )
        if latest is not None and latest.state in ("REJECTED", "FAILED", "WITHDRAWN"):
            why = f": {latest.reason}" if latest.reason else ""
            return Step(
                Blocked(
                    "ProposalRefused",
                    f"proposal {latest.id} to {change} was {latest.state.lower()}{why}; "
                    "change the spec, or propose it again with `consortium gov propose`",
                ),
                targets,
                "Degraded",
            )
        proposer = self.proposer(change)
        if proposer is None:
            return Step(
                Wait(
                    "WaitingForApprovals",
                    f"{change}: no member organisation approves automatically; "
                    "propose it with `consortium gov propose`",
                ),
                targets,
                phase,
            )
        return Step(Propose(change, proposer), targets, phase)

    def members(self) -> tuple[str, ...]:
        """Member organisations on chain (the genesis ones until a node reports them)."""
        on_chain = self.o.chain_organizations()
        return tuple(on_chain) if on_chain is not None else self.o.genesis_organizations

    def auto(self, org: str) -> bool:
        """`org` is local, approves automatically and the operator holds its own admin key
        (a remote organisation votes in its own cluster, with its own key)."""
        spec = self.d.org(org)
        return (
            spec is not None
            and self.d.is_local(org)
            and spec.approve == "auto"
            and org in self.o.org_admins
        )

    def proposer(self, change: Change) -> str | None:
        """The organisation the change concerns if it is a member approving automatically,
        else the first such member organisation in spec order; None if there is none."""
        members = self.members()
        concerned = (
            None
            if isinstance(change, AddOrganization | DeployContract | UpgradeContract | SetParam)
            else change.org
        )
        order = [concerned] if concerned is not None else []
        if not isinstance(change, ReplaceValidator):  # SELF: its own organisation only
            order += [o.name for o in self.d.organizations]
        return next((o for o in order if o in members and self.auto(o)), None)

    def approve(
        self, p: ProposalView, change: Change, targets: dict[str, OrgTarget], phase: str = "Scaling"
    ) -> Step:
        """A pending proposal for what the spec asks: the next automatic yes vote (one per
        pass, each signed by its own organisation), or wait for the manual ones."""
        for org in self.d.organizations:
            if isinstance(change, ReplaceValidator) and org.name != change.org:
                continue  # SELF: no other organisation's vote is asked for or cast
            if org.name in p.members and not p.voted(org.name) and self.auto(org.name):
                return Step(Vote(p.id, org.name, change), targets, phase)
        waiting = ", ".join(p.waiting_for()) or "nobody (the policy can no longer be met)"
        return Step(
            Wait(
                "WaitingForApprovals",
                f"proposal {p.id} to {change}: {p.approvals()}; waiting for {waiting}",
            ),
            targets,
            phase,
        )
