"""Typed views: the `Consortium` spec (parsed, validated, defaulted), the operator's observation
of the world (`Observed`: Kubernetes objects + node statuses), and the naming scheme of every
object the operator owns.

Who uses it: handlers parse the CR spec here (`ConsortiumSpec.parse`); kube/nodes build
`Observed`; plan, render, genesis and status read both. Pure: no I/O.

Invariants:
- Field names are the CRD's camelCase names in snake_case (`chain_id` <-> `chainId`); defaults
  equal the CRD's defaults. tests/unit/operator/test_crd_agreement.py enforces both directions.
- `validate()` repeats the CRD's CEL rules, so a spec that slipped past the apiserver (an old CRD,
  a unit test) becomes a `SpecError` a user can act on, never a crash later."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

GROUP = "consortium.dev"
VERSION = "v1alpha1"
PLURAL = "consortia"
KIND = "Consortium"
API_VERSION = f"{GROUP}/{VERSION}"

CLIENT_PORT = 7050
PEER_PORT = 7051
METRICS_PORT = 9100
NODE_UID = 10001  # the uid/gid of the node image's `consortium` user

CHAIN_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
ORG_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
ASSET_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
HEX32_RE = re.compile(r"^[0-9a-f]{64}$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
CIDR_RE = re.compile(r"^[0-9a-fA-F.:]+/[0-9]{1,3}$")
MAX_NAME_LEN = 30
MAX_AMOUNT = (1 << 63) - 1


class SpecError(ValueError):
    """The spec is invalid; the message names the field and what to do."""


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True, slots=True)
class ConsensusSpec:
    type: str = "bft"
    max_block_txs: int = 2000
    block_interval_ms: int = 50
    empty_block_interval_ms: int = 2000
    tick_ms: int = 10
    election_timeout_ms: int = 500
    heartbeat_interval_ms: int = 50

    @property
    def election_ticks(self) -> int:
        return max(2, -(-self.election_timeout_ms // self.tick_ms))

    @property
    def heartbeat_ticks(self) -> int:
        return max(1, self.heartbeat_interval_ms // self.tick_ms)

    def min_validators(self) -> int:
        return 4 if self.type == "bft" else 1

    def quorum(self, n: int) -> int:
        """Votes needed to commit with `n` validators: BFT 2f+1 of 3f+1 (n - f), Raft a
        majority."""
        if n <= 0:
            return 1
        if self.type == "bft":
            return n - (n - 1) // 3
        return n // 2 + 1


@dataclass(frozen=True, slots=True)
class StorageSpec:
    size: str = "1Gi"
    class_name: str | None = None


@dataclass(frozen=True, slots=True)
class ResourcesSpec:
    requests: Mapping[str, Any] | None = None
    limits: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class OrganizationSpec:
    name: str
    validators: int
    resources: ResourcesSpec | None = None
    storage: StorageSpec = field(default_factory=StorageSpec)
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True, slots=True)
class GenesisAccount:
    asset: str
    account: str
    amount: int


@dataclass(frozen=True, slots=True)
class GenesisKV:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class GenesisMember:
    organization: str
    key: str


@dataclass(frozen=True, slots=True)
class GenesisSpec:
    accounts: tuple[GenesisAccount, ...] = ()
    kv: tuple[GenesisKV, ...] = ()
    admins: tuple[str, ...] = ()
    max_tx_bytes: int = 131072
    membership: str = "permissioned"  # permissioned | open
    members: tuple[GenesisMember, ...] = ()


@dataclass(frozen=True, slots=True)
class SecuritySpec:
    tls: bool = True
    public_reads: bool = False
    client_cidrs: tuple[str, ...] = ()
    cert_validity_days: int = 90
    cert_renew_before_days: int = 30


@dataclass(frozen=True, slots=True)
class ConsortiumSpec:
    chain_id: str
    organizations: tuple[OrganizationSpec, ...]
    consensus: ConsensusSpec = field(default_factory=ConsensusSpec)
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    genesis: GenesisSpec = field(default_factory=GenesisSpec)
    deletion_policy: str = "Retain"
    security: SecuritySpec = field(default_factory=SecuritySpec)

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ConsortiumSpec:
        """The typed, defaulted, validated spec; `SpecError` names the offending field."""
        parsed = _parse(cls, spec, "spec")
        assert isinstance(parsed, ConsortiumSpec)
        parsed.validate()
        return parsed

    def validate(self) -> None:
        if not CHAIN_ID_RE.match(self.chain_id):
            raise SpecError(
                "spec.chainId must be 1-64 characters of lowercase letters, digits, '.', '_' or "
                f"'-', starting and ending with a letter or digit (got {self.chain_id!r})"
            )
        c = self.consensus
        _one_of("spec.consensus.type", c.type, ("bft", "raft"))
        _one_of("spec.imagePullPolicy", self.image_pull_policy, ("Always", "IfNotPresent", "Never"))
        _one_of("spec.deletionPolicy", self.deletion_policy, ("Retain", "Delete"))
        _range("spec.consensus.maxBlockTxs", c.max_block_txs, 1, 100_000)
        _range("spec.consensus.tickMs", c.tick_ms, 1, 1000)
        _range("spec.consensus.blockIntervalMs", c.block_interval_ms, 1, 60_000)
        _range("spec.consensus.emptyBlockIntervalMs", c.empty_block_interval_ms, 0, 3_600_000)
        _range("spec.consensus.electionTimeoutMs", c.election_timeout_ms, 10, 600_000)
        _range("spec.consensus.heartbeatIntervalMs", c.heartbeat_interval_ms, 1, 60_000)
        if c.heartbeat_interval_ms < c.tick_ms:
            raise SpecError("spec.consensus.heartbeatIntervalMs must be at least tickMs")
        if c.election_timeout_ms < 2 * c.heartbeat_interval_ms:
            raise SpecError(
                "spec.consensus.electionTimeoutMs must be at least twice heartbeatIntervalMs"
            )
        if c.block_interval_ms < c.tick_ms:
            raise SpecError("spec.consensus.blockIntervalMs must be at least tickMs")
        if not 1 <= len(self.organizations) <= 16:
            raise SpecError("spec.organizations needs 1 to 16 organizations")
        seen: set[str] = set()
        for i, org in enumerate(self.organizations):
            where = f"spec.organizations[{i}]"
            if not ORG_NAME_RE.match(org.name):
                raise SpecError(
                    f"{where}.name {org.name!r} must be 1-20 lowercase letters, digits or '-', "
                    "starting with a letter and ending with a letter or digit"
                )
            if org.name in seen:
                raise SpecError(f"organization names must be unique ({org.name!r} repeats)")
            seen.add(org.name)
            _range(f"{where}.validators", org.validators, 0, 32)
            if not QUANTITY_RE.match(org.storage.size):
                raise SpecError(f"{where}.storage.size must be a quantity such as 512Mi or 10Gi")
        if self.total_validators < 1:
            raise SpecError("the consortium needs at least one validator in total")
        if c.type == "bft" and self.total_validators < 4:
            raise SpecError(
                "bft consensus needs at least 4 validators in total (n = 3f+1 with f >= 1); "
                f"spec.organizations has {self.total_validators}"
            )
        g = self.genesis
        _range("spec.genesis.maxTxBytes", g.max_tx_bytes, 1024, 4 * 1024 * 1024)
        for i, a in enumerate(g.accounts):
            where = f"spec.genesis.accounts[{i}]"
            if not ASSET_RE.match(a.asset):
                raise SpecError(f"{where}.asset must be 1-32 letters, digits, '.', '_' or '-'")
            if not HEX32_RE.match(a.account):
                raise SpecError(f"{where}.account must be 64 lowercase hex characters")
            if a.amount < 0:
                raise SpecError(f"{where}: genesis account balances must not be negative")
            if a.amount > MAX_AMOUNT:
                raise SpecError(f"{where}.amount must be at most 2^63-1")
        for i, k in enumerate(g.admins):
            if not HEX32_RE.match(k):
                raise SpecError(f"spec.genesis.admins[{i}] must be 64 lowercase hex characters")
        _one_of("spec.genesis.membership", g.membership, ("permissioned", "open"))
        for i, m in enumerate(g.members):
            if not HEX32_RE.match(m.key):
                raise SpecError(
                    f"spec.genesis.members[{i}].key must be 64 lowercase hex characters"
                )
            if m.organization not in seen:
                raise SpecError(
                    f"spec.genesis.members[{i}].organization {m.organization!r} is not one of "
                    "spec.organizations"
                )
        if len({m.key for m in g.members}) != len(g.members):
            raise SpecError("spec.genesis.members: a key may be vouched for only once")
        sec = self.security
        _range("spec.security.certValidityDays", sec.cert_validity_days, 1, 3650)
        _range("spec.security.certRenewBeforeDays", sec.cert_renew_before_days, 0, 3649)
        if sec.cert_renew_before_days >= sec.cert_validity_days:
            raise SpecError("spec.security.certRenewBeforeDays must be less than certValidityDays")
        for i, cidr in enumerate(sec.client_cidrs):
            if not CIDR_RE.match(cidr):
                raise SpecError(f"spec.security.clientCidrs[{i}] must be a CIDR such as 10.0.0.0/8")

    @property
    def total_validators(self) -> int:
        return sum(o.validators for o in self.organizations)

    def org(self, name: str) -> OrganizationSpec | None:
        return next((o for o in self.organizations if o.name == name), None)

    def image_or(self, default: str) -> str:
        return self.image or default

    def pod_fingerprint(self, org: OrganizationSpec, default_image: str) -> str:
        """Hash of everything in an organisation's pod template that the spec controls (not
        replicas, not peers). A change means a rolling update, one node at a time."""
        data = {
            "image": self.image_or(default_image),
            "pull": self.image_pull_policy,
            "consensus": dataclasses.asdict(self.consensus),
            "resources": _jsonable(org.resources),
            "nodeSelector": _jsonable(org.node_selector),
            "tolerations": _jsonable(org.tolerations),
        }
        raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def _one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(f"{where} must be one of {', '.join(allowed)} (got {value!r})")


def _range(where: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise SpecError(f"{where} must be in {lo}..{hi} (got {value})")


def camel(name: str) -> str:
    """snake_case field name -> the CRD's camelCase property name."""
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            camel(f.name): _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def to_json(value: Any) -> Any:
    """A model value as the CRD's JSON (camelCase keys, None fields left out)."""
    return _jsonable(value)


def _parse(tp: Any, data: Any, where: str) -> Any:
    """Parse JSON `data` into type `tp` (a model dataclass, tuple[...], Mapping, scalar or
    Optional), naming `where` in errors. Unknown fields are an error (the apiserver prunes
    them, so one here means a spec that never went through the CRD)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _parse(args[0], data, where)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, Mapping):
            raise SpecError(f"{where} must be an object")
        hints = get_type_hints(tp)
        fields = {camel(f.name): f for f in dataclasses.fields(tp)}
        unknown = set(data) - set(fields)
        if unknown:
            raise SpecError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for key, f in fields.items():
            if key in data and data[key] is not None:
                kwargs[f.name] = _parse(hints[f.name], data[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(f"{where}.{key} is required")
        return tp(**kwargs)
    if origin is tuple:
        (item, _ellipsis) = get_args(tp)
        if not isinstance(data, list):
            raise SpecError(f"{where} must be a list")
        return tuple(_parse(item, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin is Mapping or tp is Mapping:
        if not isinstance(data, Mapping):
            raise SpecError(f"{where} must be an object")
        return types.MappingProxyType(dict(data))
    if tp is bool:
        if not isinstance(data, bool):
            raise SpecError(f"{where} must be true or false")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise SpecError(f"{where} must be an integer")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise SpecError(f"{where} must be a string")
        return data
    raise TypeError(f"model type {tp!r} at {where} is not parseable")  # a bug of ours


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
        return f"{self.consortium}-admin"

    def keys_secret(self, org: str) -> str:
        return f"{self.consortium}-{org}-keys"

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
        users: `consortium --tls-dir` reads exactly these files."""
        return f"{self.consortium}-{org}-client"

    @property
    def operator_client_secret(self) -> str:
        """The operator's own client TLS directory, for its status and governance calls."""
        return f"{self.consortium}-operator-client"

    @property
    def pdb(self) -> str:
        return f"{self.consortium}-quorum"

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
class NodeStatus:
    """A node's answer to GetStatus."""

    height: int
    role: str
    leader: bytes
    validators: tuple[tuple[bytes, str], ...]  # (node_id, organization)
    sync_state: str
    chain_id: str = ""
    organizations: tuple[str, ...] = ()  # member organisations on chain (genesis + admitted)


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
    ready_replicas: int = 0
    generation: int = 1
    observed_generation: int = 0  # of the StatefulSet controller; < generation = stale status

    @property
    def settled(self) -> bool:
        """The controller has seen the latest template/replicas (its status is current)."""
        return self.observed_generation >= self.generation


@dataclass(frozen=True, slots=True)
class Observed:
    """What the operator sees in one pass. Holds public keys only: private key material is
    read by kube only when signing, and never enters this object (which may be logged)."""

    admin_public: bytes | None = None
    node_keys: Mapping[str, bytes] = field(default_factory=dict)  # pod name -> public key
    genesis_validators: tuple[tuple[bytes, str], ...] | None = None  # None = no genesis yet
    genesis_hash: str = ""
    genesis_organizations: tuple[str, ...] = ()
    statefulsets: Mapping[str, StatefulSetState] = field(default_factory=dict)  # by org
    pods: Mapping[str, PodState] = field(default_factory=dict)  # by pod name
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)  # by pod name, answering

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
