"""Typed views: the operator's observation of the world (`Observed`: Kubernetes objects + node
statuses) and the naming scheme of every object the operator owns; the `Consortium` spec itself
(parsed, validated, defaulted) is the provisioning core's model, re-exported here.

Who uses it: reconcile parses the CR spec here (`ConsortiumSpec.parse`); kube/nodes build
`Observed`; plan, render, genesis and status read both. Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from consortium_node.provision import ceremony

# The spec model lives in the provisioning core (consortium_node.provision.spec), shared with
# `consortium up` and `consortium-node dev`; re-exported here for the operator's modules.
from consortium_node.provision.spec import (
    ASSET_RE,
    CHAIN_ID_RE,
    CIDR_RE,
    HEX32_RE,
    MAX_AMOUNT,
    MAX_NAME_LEN,
    ORG_NAME_RE,
    QUANTITY_RE,
    CeremonySpec,
    ConsensusSpec,
    ConsortiumSpec,
    ContractSpec,
    ExposeSpec,
    GenesisAccount,
    GenesisFromSpec,
    GenesisKV,
    GenesisMember,
    GenesisSpec,
    OrganizationSpec,
    ParametersSpec,
    RemoteOrganization,
    RemoteValidator,
    ResourcesSpec,
    SecuritySpec,
    SpecError,
    StorageSpec,
    Toleration,
    camel,
    to_json,
)

GROUP = "consortium.dev"
VERSION = "v1alpha1"
PLURAL = "consortia"
KIND = "Consortium"
API_VERSION = f"{GROUP}/{VERSION}"

CLIENT_PORT = 7050
PEER_PORT = 7051
METRICS_PORT = 9100
NODE_UID = 10001  # the uid/gid of the node image's `consortium` user

__all__ = [
    "API_VERSION",
    "ASSET_RE",
    "CHAIN_ID_RE",
    "CIDR_RE",
    "CLIENT_PORT",
    "GROUP",
    "HEX32_RE",
    "KIND",
    "MAX_AMOUNT",
    "MAX_NAME_LEN",
    "MEMBER_ANNOTATION",
    "METRICS_PORT",
    "NODE_UID",
    "ORG_NAME_RE",
    "PEER_PORT",
    "PENDING_ANNOTATION",
    "PENDING_KINDS",
    "PLURAL",
    "QUANTITY_RE",
    "VERSION",
    "CeremonyFile",
    "CeremonySpec",
    "ConsensusSpec",
    "ConsortiumSpec",
    "ContractSpec",
    "ContractView",
    "ExposeSpec",
    "GenesisAccount",
    "GenesisFromSpec",
    "GenesisKV",
    "GenesisMember",
    "GenesisSource",
    "GenesisSpec",
    "Names",
    "NodeStatus",
    "Observed",
    "OrganizationSpec",
    "Owner",
    "ParametersSpec",
    "PeerLinkView",
    "PendingChange",
    "PodState",
    "ProposalView",
    "RemoteOrganization",
    "RemoteValidator",
    "ResourcesSpec",
    "SecuritySpec",
    "SpecError",
    "StatefulSetState",
    "StorageSpec",
    "Toleration",
    "camel",
    "to_json",
]


# --------------------------------------------------------------------------- naming


@dataclass(frozen=True, slots=True)
class Names:
    """Names and labels of everything the operator creates for consortium `consortium`.
    Invariant: a pod of organisation `org` with ordinal i is `<consortium>-<org>-<i>` (the
    StatefulSet naming rule), and its key is `<pod>.json` in the org's key Secret."""

    consortium: str

    def statefulset(self, org: str) -> str:
        return f"{self.consortium}-{org}"

    def pod(self, org: str, ordinal: int) -> str:
        return f"{self.consortium}-{org}-{ordinal}"

    def parse_pod(self, pod: str, orgs: tuple[str, ...]) -> tuple[str, int] | None:
        """(org, ordinal) of one of our pod names, else None."""
        for org in sorted(orgs, key=len, reverse=True):
            prefix = f"{self.consortium}-{org}-"
            if pod.startswith(prefix) and pod[len(prefix) :].isdigit():
                return org, int(pod[len(prefix) :])
        return None

    @property
    def peers_service(self) -> str:
        return f"{self.consortium}-peers"

    @property
    def client_service(self) -> str:
        return f"{self.consortium}-client"

    @property
    def genesis_configmap(self) -> str:
        return f"{self.consortium}-genesis"

    @property
    def config_configmap(self) -> str:
        return f"{self.consortium}-config"

    @property
    def admin_secret(self) -> str:
        """The one consortium admin key of a legacy (single-admin) chain."""
        return f"{self.consortium}-admin"

    def org_admin_secret(self, org: str) -> str:
        """The organisation's own governance admin key (admin.json). Invariant: it holds
        that organisation's key only; the operator signs for `org` with nothing else."""
        return f"{self.consortium}-{org}-admin"

    def keys_secret(self, org: str) -> str:
        return f"{self.consortium}-{org}-keys"

    def external_service(self, pod: str) -> str:
        """The per-pod Service exposing `pod`'s peer port to other clusters (federation)."""
        return f"{pod}-ext"

    @property
    def network_policy(self) -> str:
        return f"{self.consortium}-nodes"

    def ca_secret(self, org: str) -> str:
        """The organisation's CA certificate and key (ca.pem, ca.key)."""
        return f"{self.consortium}-{org}-ca"

    def tls_secret(self, org: str) -> str:
        """The organisation's node TLS certificates and keys (<pod>.pem, <pod>.key)."""
        return f"{self.consortium}-{org}-tls"

    def client_secret(self, org: str) -> str:
        """A client TLS directory of the organisation (ca.pem, client.pem, client.key), for its
        users: `consortium --tls-dir` reads exactly these files; with the organisation's
        memberKey also its member key (key.json), which `context from-cluster` takes."""
        return f"{self.consortium}-{org}-client"

    @property
    def operator_client_secret(self) -> str:
        """The operator's own client TLS directory, for its status and governance calls."""
        return f"{self.consortium}-operator-client"

    @property
    def pdb(self) -> str:
        return f"{self.consortium}-quorum"

    @property
    def backup_cronjob(self) -> str:
        """The scheduled backup (spec.backup)."""
        return f"{self.consortium}-backup"

    def backup_selector(self) -> dict[str, str]:
        """Labels selecting the backup Jobs' pods — never the node selector's name label, so
        that a backup pod is never taken for a node."""
        return {
            "app.kubernetes.io/name": "consortium-backup",
            "app.kubernetes.io/instance": self.consortium,
        }

    def backup_labels(self) -> dict[str, str]:
        return {
            **self.backup_selector(),
            "app.kubernetes.io/component": "backup",
            "app.kubernetes.io/part-of": "consortium",
            "app.kubernetes.io/managed-by": "consortium-operator",
        }

    def selector(self) -> dict[str, str]:
        """Labels selecting every node pod of the consortium."""
        return {
            "app.kubernetes.io/name": "consortium-node",
            "app.kubernetes.io/instance": self.consortium,
        }

    def org_selector(self, org: str) -> dict[str, str]:
        return {**self.selector(), "consortium.dev/organization": org}

    def labels(self, component: str, org: str | None = None) -> dict[str, str]:
        """The app.kubernetes.io/* labels of one of our objects."""
        out = {
            "app.kubernetes.io/name": "consortium-node",
            "app.kubernetes.io/instance": self.consortium,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "consortium",
            "app.kubernetes.io/managed-by": "consortium-operator",
        }
        if org is not None:
            out["consortium.dev/organization"] = org
        return out


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True, slots=True)
class Owner:
    """The Consortium object, for owner references."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True, slots=True)
class PeerLinkView:
    """One peer link a node reports (GetStatus.peers): the peer's node id, the address the
    node has for it, whether the link is up, why not (one plain line) and for how long it has
    been in that state."""

    node_id: bytes
    address: str
    connected: bool
    error: str = ""
    since_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node's answer to GetStatus."""

    height: int
    role: str
    leader: bytes
    validators: tuple[tuple[bytes, str], ...]  # (node_id, organization)
    sync_state: str
    chain_id: str = ""
    organizations: tuple[str, ...] = ()  # member organisations on chain (genesis + admitted)
    peers: tuple[PeerLinkView, ...] = ()  # its links to its configured peers


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    org: str
    ordinal: int
    ready: bool
    revision: str  # controller-revision-hash label
    ip: str | None = None
    crash_looping: bool = False
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class StatefulSetState:
    org: str
    replicas: int
    partition: int
    fingerprint: str  # consortium.dev/pod-fingerprint annotation of the template
    update_revision: str = ""
    generation: int = 1
    observed_generation: int = 0  # of the StatefulSet controller; < generation = stale status

    @property
    def settled(self) -> bool:
        """The controller has seen the latest template/replicas (its status is current)."""
        return self.observed_generation >= self.generation


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A membership change the operator committed whose effect the chain has not shown yet
    (a validator change takes effect a couple of blocks after it commits). Kept in the
    Consortium's annotation PENDING_ANNOTATION (the cluster is the only memory between
    passes), so the next pass waits for it instead of planning the same change again.
    `kind`: add-validator | remove-validator | add-organization; `subject`: the node id (hex)
    or the organisation; `until`: epoch seconds after which it is no longer waited for."""

    kind: str
    subject: str
    tx: str
    until: float

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "subject": self.subject, "tx": self.tx, "until": self.until},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PendingChange | None:
        """The annotation's change; None if it is not one (a hand edit: ignored)."""
        try:
            d = json.loads(text)
            out = cls(str(d["kind"]), str(d["subject"]), str(d["tx"]), float(d["until"]))
        except (ValueError, TypeError, KeyError):
            return None
        return out if out.kind in PENDING_KINDS else None

    def __str__(self) -> str:
        what = self.subject if self.kind == "add-organization" else self.subject[:16]
        return f"{self.kind.replace('-', ' ')} {what} (tx {self.tx[:16]})"


@dataclass(frozen=True, slots=True)
class ProposalView:
    """A governance proposal as a node reports it (ListProposals), reduced to what the planner
    and the status need. `change`: (action, subject) — what the proposal does, in the terms
    the planner uses to match it with the change the spec asks for: ("add_validator", node
    id hex), ("remove_validator", node id hex), ("add_organization", name), ("set_param",
    "<name>=<value>"), else (action
    name, the organisation it concerns). `votes`: (organisation, approve) in casting order;
    `members`: the member organisations it is counted over."""

    id: int
    state: str  # PENDING | EXECUTED | FAILED | REJECTED | EXPIRED | ABORTED | WITHDRAWN
    change: tuple[str, str]
    summary: str
    proposer: str
    votes: tuple[tuple[str, bool], ...]
    members: tuple[str, ...]
    yes: int
    needed: int
    expiry_height: int
    closed_height: int = 0
    reason: str = ""

    def voted(self, org: str) -> bool:
        return any(o == org for o, _ in self.votes)

    def waiting_for(self) -> tuple[str, ...]:
        """Member organisations that have not voted yet."""
        return tuple(o for o in self.members if not self.voted(o))

    def approvals(self) -> str:
        """e.g. `1/3, need 2`: yes votes / member organisations, and what the policy needs."""
        return f"{self.yes}/{len(self.members)}, need {self.needed}"


@dataclass(frozen=True, slots=True)
class ContractView:
    """A contract as a node reports it (contract list): the deployed code's SHA-256 and its
    version (1 at deployment, +1 per upgrade)."""

    name: str
    code_hash: bytes
    version: int


@dataclass(frozen=True, slots=True)
class CeremonyFile:
    """spec.ceremony's ConfigMap as observed: its ceremony.json, or why it cannot be used."""

    raw: bytes = b""
    problem: str = ""

    @property
    def id(self) -> str:
        """The ceremony id (sha256 of the file), "" when the file is not usable."""
        if self.problem or not self.raw:
            return ""
        try:
            return ceremony.parse_ceremony(self.raw).id
        except ceremony.CeremonyError:
            return ""


@dataclass(frozen=True, slots=True)
class GenesisSource:
    """spec.genesisFrom's ConfigMaps as observed: genesis.json, the signature files (entry
    name -> bytes), or why they cannot be read yet (a ConfigMap missing)."""

    genesis: bytes = b""
    signatures: tuple[tuple[str, bytes], ...] = ()
    problem: str = ""


PENDING_ANNOTATION = f"{GROUP}/membership-pending"
# on an organisation's client Secret: the member key (hex) the chain vouches for (AddMember
# committed, or refused as already a member) — the cluster remembers it, not the operator
MEMBER_ANNOTATION = f"{GROUP}/member-registered"
PENDING_KINDS = ("add-validator", "remove-validator", "add-organization")


@dataclass(frozen=True, slots=True)
class Observed:
    """What the operator sees in one pass. Holds public keys and certificates only: private
    key material is read by kube only when signing or issuing, and never enters this object
    (which may be logged) — a stored private key shows as its entry name with value b""."""

    admin_public: bytes | None = None
    node_keys: Mapping[str, bytes] = field(default_factory=dict)  # pod name -> public key
    genesis_validators: tuple[tuple[bytes, str], ...] | None = None  # None = no genesis yet
    genesis_hash: str = ""
    genesis_organizations: tuple[str, ...] = ()
    statefulsets: Mapping[str, StatefulSetState] = field(default_factory=dict)  # by org
    pods: Mapping[str, PodState] = field(default_factory=dict)  # by pod name
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)  # by pod name, answering
    # TLS material (spec.security.tls only): organisation -> CA certificate PEM of a complete
    # CA Secret; organisations whose CA Secret exists but is incomplete; organisation -> node
    # TLS Secret entries; client TLS Secret name -> entries (absent: no such Secret)
    ca_certs: Mapping[str, bytes] = field(default_factory=dict)
    ca_incomplete: tuple[str, ...] = ()
    tls_entries: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    client_dirs: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    pending: PendingChange | None = None  # a committed membership change not yet awaited
    # governance by organisations: organisation -> the public key of its own admin Secret;
    # whether the genesis lists organisations' admins (then every configuration change is a
    # proposal; False: a legacy single-admin chain, changed directly with the admin key);
    # the chain's recent proposals, newest first (None: unknown, no node answered)
    org_admins: Mapping[str, bytes] = field(default_factory=dict)
    org_governance: bool = False
    proposals: tuple[ProposalView, ...] | None = None
    # pods whose ledger volume (PVC data-<pod>) exists: old data a new key must never meet
    volumes: frozenset[str] = frozenset()
    # organisation -> public key of the member key in its client Secret (key.json), and the
    # key the Secret's annotation MEMBER_ANNOTATION says is vouched for on chain
    member_keys: Mapping[str, bytes] = field(default_factory=dict)
    registered_members: Mapping[str, bytes] = field(default_factory=dict)
    genesis_members: frozenset[bytes] = frozenset()  # member keys the genesis vouches for
    # contracts (spec.contracts): the chain's deployed contracts by name (None: unknown, no
    # node answered), and each spec contract's module as read from its ConfigMap — the
    # module's bytes, or a sentence saying why it cannot be read (no such ConfigMap or key)
    contracts: Mapping[str, ContractView] | None = None
    contract_modules: Mapping[str, bytes | str] = field(default_factory=dict)
    # federation, before the genesis: spec.ceremony's file, spec.genesisFrom's files
    ceremony: CeremonyFile | None = None
    genesis_source: GenesisSource | None = None
    # the chain's committed parameters (GetGovernance), name -> value; None: not asked (the
    # spec sets no parameters) or no node answered
    chain_params: Mapping[str, int] | None = None
    # a lost validator's replacement, as declared (the annotation replace.ANNOTATION, None:
    # none); pod -> creationTimestamp (RFC 3339) of its ledger PVC, terminating ones included
    replacement: str | None = None
    volume_created: Mapping[str, str] = field(default_factory=dict)

    def pending_reflected(self) -> bool:
        """Whether the chain shows the pending change (True when there is none; False while
        no node tells)."""
        p = self.pending
        if p is None:
            return True
        if p.kind == "add-organization":
            orgs = self.chain_organizations()
            return orgs is not None and p.subject in orgs
        vset = self.validator_set() if self.nodes else None
        if vset is None:
            return False
        return (p.subject in {k.hex() for k, _ in vset}) == (p.kind == "add-validator")

    @property
    def has_genesis(self) -> bool:
        return self.genesis_validators is not None

    def chain_height(self) -> int:
        return max((n.height for n in self.nodes.values()), default=0)

    def validator_set(self) -> tuple[tuple[bytes, str], ...] | None:
        """The freshest validator set a node reports; the genesis set before any node answers
        (only right while no StatefulSet exists yet); None when unknown."""
        if self.nodes:
            best = max(self.nodes.values(), key=lambda n: n.height)
            return best.validators
        if not self.statefulsets:
            return self.genesis_validators
        return None

    def chain_organizations(self) -> frozenset[str] | None:
        """The member organisations the freshest node reports; None when no node reports
        any (none answers yet)."""
        reporting = [n for n in self.nodes.values() if n.organizations]
        if not reporting:
            return None
        return frozenset(max(reporting, key=lambda n: n.height).organizations)

    def ca_trusted_on_chain(self, org: str) -> bool | None:
        """Whether the chain trusts a CA of `org` already (it is in genesis or was admitted):
        True/False, or None when that cannot be told yet (no node reports organisations)."""
        if not self.has_genesis or org in self.genesis_organizations:
            return self.has_genesis
        on_chain = self.chain_organizations()
        return None if on_chain is None else org in on_chain

    def pod_of_key(self, node_id: bytes) -> str | None:
        return next((p for p, k in self.node_keys.items() if k == node_id), None)
