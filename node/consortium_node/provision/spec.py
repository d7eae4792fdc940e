"""The Consortium spec: typed, defaulted and validated — the one model of "what consortium do
we want" that every executor reads (the operator's `Consortium` custom resource, `consortium
up`'s manifest, `consortium-node dev`'s one-organisation solo chain).

Who uses it: consortium_operator.model re-exports it (handlers parse the CR spec with
`ConsortiumSpec.parse`); consortium_node.localnet parses the `consortium up` manifest with it;
provision.genesis and provision.nodeconfig read it. Pure: no I/O, no clock, no randomness.

Invariants:
- Field names are the CRD's camelCase names in snake_case (`chain_id` <-> `chainId`); defaults
  equal the CRD's defaults. tests/unit/operator/test_operator_crd.py enforces both directions.
- `validate()` repeats the CRD's CEL rules, so a spec that slipped past the apiserver (an old CRD,
  a unit test, a local manifest) becomes a `SpecError` a user can act on, never a crash later.
- consensus type `solo` is not a CRD value: only `dev_spec` (provision.dev) builds it, and
  `validate()` refuses it unless the spec was built that way (`allow_solo`)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin, get_type_hints

from consortium_node.ledger.tx import CONTRACT_RE

CHAIN_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
ORG_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$")
ASSET_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
HEX32_RE = re.compile(r"^[0-9a-f]{64}$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
CIDR_RE = re.compile(r"^[0-9a-fA-F.:]+/[0-9]{1,3}$")
# host:port of a peer endpoint another cluster dials: a DNS name or IPv4 address and a port
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
ADDRESS_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:[0-9]{1,5}$")
PEM_CERT_PREFIX = "-----BEGIN CERTIFICATE-----"
EXPOSE_TYPES = ("NodePort", "LoadBalancer")
# the same patterns are in the CRD (charts/consortium-crds), so kubectl apply refuses first
CRON_RE = re.compile(r"^(@(hourly|daily|weekly|monthly|yearly|annually)|([^ ]+ +){4}[^ ]+)$")
CLAIM_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
BACKUP_NAME_RE = re.compile(
    r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,199})?$"
)
MAX_NAME_LEN = 30
MAX_AMOUNT = (1 << 63) - 1
APPROVE_MODES = ("auto", "manual")
CONFIGMAP_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
CONFIGMAP_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
HEX_RE = re.compile(r"^([0-9a-f]{2})*$")
MAX_CONTRACTS = 32
MAX_INIT_INPUT_HEX = 8192


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
class ExposeSpec:
    """How a local organisation's nodes are reached from other clusters (federation): one
    Service per pod — NodePort (pod i on node port `port + i` of every cluster node, dialled
    at `address`) or LoadBalancer (pod i on `address:port + i`, e.g. a shared MetalLB IP).
    TLS passes through untouched: the peer checks the node's own certificate."""

    address: str
    type: str = "NodePort"
    port: int = 30751

    def endpoint(self, ordinal: int) -> str:
        """host:port at which pod `ordinal` of the organisation is dialled from outside."""
        return f"{self.address}:{self.port + ordinal}"


@dataclass(frozen=True, slots=True)
class RemoteValidator:
    """A validator of a remote organisation: its node id and the external address its own
    cluster publishes (what our nodes dial)."""

    name: str
    node_id: str
    address: str


@dataclass(frozen=True, slots=True)
class RemoteOrganization:
    """An organisation another operator (another cluster) runs: what this one needs to know
    of it — its CA certificate (PEM; trusted for its nodes' certificates), its admin public
    keys (hex) and its validators. No key of it is ever held here."""

    ca_cert: str = ""
    admins: tuple[str, ...] = ()
    validators: tuple[RemoteValidator, ...] = ()


@dataclass(frozen=True, slots=True)
class CeremonySpec:
    """Federation: the genesis ceremony this Consortium takes part in — a ConfigMap holding
    its ceremony.json (from `consortium ceremony init`). The operator publishes its local
    organisations' contributions in status for `consortium ceremony contribute
    --from-cluster` to export, signed."""

    config_map: str


@dataclass(frozen=True, slots=True)
class GenesisFromSpec:
    """Federation: the chain's genesis applied by reference — ConfigMap `config_map` holds
    genesis.json (from `consortium ceremony assemble`), `signatures_config_map` every
    organisation's genesis-<org>.sig; nodes start only when the genesis hashes to `sha256`
    and every organisation it lists signed it with one of its own admin keys."""

    config_map: str
    sha256: str
    signatures_config_map: str


@dataclass(frozen=True, slots=True)
class RestoreSpec:
    """Where a node's ledger comes from on its first start: backup `backup` (NAME or
    DIR/NAME: a file or directory in the PersistentVolumeClaim `claim_name` — the
    operator's backups are `<consortium>/<file>`, as status.backup.lastName shows)."""

    claim_name: str
    backup: str


@dataclass(frozen=True, slots=True)
class BackupSpec:
    """Scheduled backups (the operator's CronJob): `schedule` in cron syntax, into the
    PersistentVolumeClaim `claim_name` (a directory per consortium), keeping the newest
    `retention`; `stale_after_minutes` without a successful backup is the BackupStale alert."""

    schedule: str
    claim_name: str
    retention: int = 7
    suspend: bool = False
    stale_after_minutes: int = 1500


@dataclass(frozen=True, slots=True)
class OrganizationSpec:
    name: str
    validators: int
    # federation: reach this (local) organisation's nodes from other clusters
    expose: ExposeSpec | None = None
    # federation: an organisation run elsewhere (not in spec.localOrganizations)
    remote: RemoteOrganization | None = None
    resources: ResourcesSpec | None = None
    storage: StorageSpec = field(default_factory=StorageSpec)
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Toleration, ...] = ()
    # how this organisation's governance votes are cast: `auto` (the operator votes yes
    # with this organisation's own admin key when a proposal is what the spec asks) or
    # `manual` (a person votes with the CLI through the organisation's client context)
    approve: str = "auto"
    # the operator generates a member (sender) key for this organisation, vouched for on
    # chain by the organisation's own admin key, in its client Secret (key.json): what
    # `consortium context from-cluster` gives a user to write with
    member_key: bool = False
    # this organisation's nodes start from a backup (overrides spec.restoreFrom)
    restore_from: RestoreSpec | None = None


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
class ParametersSpec:
    """The chain parameters the consortium wants now (ledger/state.py PARAMS). Unset: keep
    what the chain has. A new chain's genesis takes them (over consensus.maxBlockTxs and
    genesis.maxTxBytes); on a running chain a change becomes a SetParam proposal that the
    organisations vote on (policy set_param)."""

    max_block_txs: int | None = None
    max_tx_bytes: int | None = None

    def chain_values(self) -> dict[str, int]:
        """On-chain parameter name -> the value asked for (set fields only)."""
        out = {"max_block_txs": self.max_block_txs, "max_tx_bytes": self.max_tx_bytes}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True, slots=True)
class SecuritySpec:
    tls: bool = True
    public_reads: bool = False
    client_cidrs: tuple[str, ...] = ()
    cert_validity_days: int = 90
    cert_renew_before_days: int = 30


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """A contract the consortium runs: its module is entry `key` of ConfigMap `config_map`
    (binaryData, or data holding base64). The operator proposes DeployContract through
    governance when the chain has no contract `name`, and UpgradeContract when the module's
    code hash differs from the deployed one and `version` is above the deployed version (a
    new module without a version bump is not proposed: status says so). `init_input`: hex
    bytes handed to the module's `init` at deployment."""

    name: str
    config_map: str
    key: str = "contract.wasm"
    version: int = 1
    init_input: str = ""


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
    contracts: tuple[ContractSpec, ...] = ()
    # federation: the organisations this operator runs (keys, certificates, Secrets, pods,
    # votes); empty = every organisation (one operator hosts the whole consortium)
    local_organizations: tuple[str, ...] = ()
    ceremony: CeremonySpec | None = None
    genesis_from: GenesisFromSpec | None = None
    parameters: ParametersSpec = field(default_factory=ParametersSpec)
    backup: BackupSpec | None = None
    restore_from: RestoreSpec | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> ConsortiumSpec:
        """The typed, defaulted, validated spec; `SpecError` names the offending field."""
        parsed = _parse(cls, spec, "spec")
        assert isinstance(parsed, ConsortiumSpec)
        parsed.validate()
        return parsed

    def validate(self, allow_solo: bool = False) -> None:  # noqa: C901 -- one check per spec field, in CRD order
        """Raise `SpecError` naming the first offending field. `allow_solo`: accept the
        single-validator `solo` consensus (only `consortium-node dev` builds such a spec)."""
        if not CHAIN_ID_RE.match(self.chain_id):
            raise SpecError(
                "spec.chainId must be 1-64 characters of lowercase letters, digits, '.', '_' or "
                f"'-', starting and ending with a letter or digit (got {self.chain_id!r})"
            )
        c = self.consensus
        _one_of(
            "spec.consensus.type",
            c.type,
            ("bft", "raft", "solo") if allow_solo else ("bft", "raft"),
        )
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
            _one_of(f"{where}.approve", org.approve, APPROVE_MODES)
            if not QUANTITY_RE.match(org.storage.size):
                raise SpecError(f"{where}.storage.size must be a quantity such as 512Mi or 10Gi")
        self._validate_federation()
        if self.total_validators < 1:
            raise SpecError("the consortium needs at least one validator in total")
        if c.type == "solo" and self.total_validators != 1:
            raise SpecError("solo consensus takes exactly one validator")
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
        prm = self.parameters
        if prm.max_block_txs is not None:
            _range("spec.parameters.maxBlockTxs", prm.max_block_txs, 1, 100_000)
        if prm.max_tx_bytes is not None:
            _range("spec.parameters.maxTxBytes", prm.max_tx_bytes, 1024, 4 * 1024 * 1024)
        sec = self.security
        _range("spec.security.certValidityDays", sec.cert_validity_days, 1, 3650)
        _range("spec.security.certRenewBeforeDays", sec.cert_renew_before_days, 0, 3649)
        if sec.cert_renew_before_days >= sec.cert_validity_days:
            raise SpecError("spec.security.certRenewBeforeDays must be less than certValidityDays")
        for i, cidr in enumerate(sec.client_cidrs):
            if not CIDR_RE.match(cidr):
                raise SpecError(f"spec.security.clientCidrs[{i}] must be a CIDR such as 10.0.0.0/8")
        _validate_contracts(self.contracts)
        self._validate_backups()

    def _validate_federation(self) -> None:
        """localOrganizations, remote organisations and expose (repeats the CRD's CEL)."""
        declared = {o.name for o in self.organizations}
        for i, name in enumerate(self.local_organizations):
            if name not in declared:
                raise SpecError(
                    f"spec.localOrganizations[{i}] {name!r} is not one of spec.organizations"
                )
        if len(set(self.local_organizations)) != len(self.local_organizations):
            raise SpecError("spec.localOrganizations must not repeat an organization")
        if self.federated and self.ceremony is None and self.genesis_from is None:
            raise SpecError(
                "a federated consortium (spec.localOrganizations) takes its genesis from a "
                "ceremony: set spec.ceremony (and, once assembled and signed, spec.genesisFrom)"
            )
        if self.genesis_from is not None and not HEX32_RE.match(self.genesis_from.sha256):
            raise SpecError("spec.genesisFrom.sha256 must be 64 lowercase hex characters")
        for i, org in enumerate(self.organizations):
            where = f"spec.organizations[{i}]"
            local = self.is_local(org.name)
            if local and org.remote is not None:
                raise SpecError(
                    f"{where}.remote: {org.name!r} is a local organization (listed in "
                    "spec.localOrganizations); only the others are described as remote"
                )
            # during a ceremony a remote organisation is a name and a validator count; its
            # description (from its contribution) comes with the genesis (genesisFrom)
            in_ceremony = self.ceremony is not None and self.genesis_from is None
            if not local and org.remote is None and not in_ceremony:
                raise SpecError(
                    f"{where}: {org.name!r} is not in spec.localOrganizations, so it is remote: "
                    "describe it in .remote (caCert, admins, validators: from its contribution) "
                    "once the genesis is applied (genesisFrom) or without a ceremony"
                )
            if not local and org.expose is not None:
                raise SpecError(f"{where}.expose: only a local organization's nodes are exposed")
            if org.expose is not None:
                e = org.expose
                _one_of(f"{where}.expose.type", e.type, EXPOSE_TYPES)
                if not HOST_RE.match(e.address):
                    raise SpecError(f"{where}.expose.address must be a host name or IP address")
                lo, hi = (30000, 32767) if e.type == "NodePort" else (1, 65535)
                _range(f"{where}.expose.port", e.port, lo, hi - 31)
            if org.remote is not None:
                self._validate_remote(where, org)

    def _validate_remote(self, where: str, org: OrganizationSpec) -> None:
        r = org.remote
        assert r is not None
        if self.security.tls and not r.ca_cert.startswith(PEM_CERT_PREFIX):
            raise SpecError(
                f"{where}.remote.caCert must be the organization's CA certificate (PEM) "
                "with security.tls"
            )
        if not 1 <= len(r.admins) <= 16:
            raise SpecError(f"{where}.remote.admins needs 1 to 16 admin public keys")
        for j, k in enumerate(r.admins):
            if not HEX32_RE.match(k):
                raise SpecError(f"{where}.remote.admins[{j}] must be 64 lowercase hex characters")
        if len(r.validators) != org.validators:
            raise SpecError(
                f"{where}.validators ({org.validators}) must equal the number of "
                f"remote.validators ({len(r.validators)})"
            )
        for j, v in enumerate(r.validators):
            if not HEX32_RE.match(v.node_id):
                raise SpecError(
                    f"{where}.remote.validators[{j}].nodeId must be 64 lowercase hex characters"
                )
            if not ADDRESS_RE.match(v.address):
                raise SpecError(
                    f"{where}.remote.validators[{j}].address must be host:port (got {v.address!r})"
                )
        ids = [v.node_id for v in r.validators]
        if len(set(ids)) != len(ids):
            raise SpecError(f"{where}.remote.validators: a node id may be listed only once")

    def is_local(self, org: str) -> bool:
        """Whether this executor runs organisation `org` (keys, Secrets, pods, votes)."""
        return not self.local_organizations or org in self.local_organizations

    @property
    def local(self) -> tuple[OrganizationSpec, ...]:
        """The organisations this executor runs, in spec order."""
        return tuple(o for o in self.organizations if self.is_local(o.name))

    @property
    def remote(self) -> tuple[OrganizationSpec, ...]:
        """The organisations other executors run (each with its `remote` description)."""
        return tuple(o for o in self.organizations if not self.is_local(o.name))

    @property
    def federated(self) -> bool:
        """Some organisation is run elsewhere: no executor here holds every key."""
        return bool(self.remote)

    def genesis_params(self) -> dict[str, int]:
        """The parameters a new chain starts with: spec.parameters where set, else the
        genesis-time fields consensus.maxBlockTxs and genesis.maxTxBytes."""
        return {
            "max_block_txs": self.consensus.max_block_txs,
            "max_tx_bytes": self.genesis.max_tx_bytes,
            **self.parameters.chain_values(),
        }

    def _validate_backups(self) -> None:
        """spec.backup and every restoreFrom (repeats the CRD's patterns)."""
        if (b := self.backup) is not None:
            if not CRON_RE.match(b.schedule):
                raise SpecError(
                    "spec.backup.schedule must be a cron schedule of 5 fields or @hourly, "
                    f"@daily, @weekly, @monthly, @yearly (got {b.schedule!r})"
                )
            _claim("spec.backup.claimName", b.claim_name)
            _range("spec.backup.retention", b.retention, 1, 1000)
            _range("spec.backup.staleAfterMinutes", b.stale_after_minutes, 1, 527_040)
        wheres = [("spec.restoreFrom", self.restore_from)] + [
            (f"spec.organizations[{i}].restoreFrom", o.restore_from)
            for i, o in enumerate(self.organizations)
        ]
        for where, r in wheres:
            if r is not None:
                _claim(f"{where}.claimName", r.claim_name)
                if not BACKUP_NAME_RE.match(r.backup):
                    raise SpecError(
                        f"{where}.backup must be a backup in the claim, NAME or DIR/NAME: "
                        "letters, digits, '.', '_' or '-', no part starting with '.' "
                        f"(got {r.backup!r})"
                    )

    @property
    def total_validators(self) -> int:
        return sum(o.validators for o in self.organizations)

    def org(self, name: str) -> OrganizationSpec | None:
        return next((o for o in self.organizations if o.name == name), None)

    def image_or(self, default: str) -> str:
        return self.image or default

    def restore_source(self, org: OrganizationSpec) -> RestoreSpec | None:
        """Where `org`'s nodes restore from on first start: its own restoreFrom, else the
        consortium's."""
        return org.restore_from or self.restore_from

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
        if (restore := self.restore_source(org)) is not None:  # absent: fingerprints unchanged
            data["restoreFrom"] = _jsonable(restore)
        raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def _validate_contracts(contracts: tuple[ContractSpec, ...]) -> None:
    """spec.contracts: the CRD's rules again (see the module docstring)."""
    if len(contracts) > MAX_CONTRACTS:
        raise SpecError(f"spec.contracts takes at most {MAX_CONTRACTS} contracts")
    seen: set[str] = set()
    for i, c in enumerate(contracts):
        where = f"spec.contracts[{i}]"
        if not CONTRACT_RE.fullmatch(c.name):
            raise SpecError(
                f"{where}.name {c.name!r} must be 1-64 lowercase letters, digits, '.', '_' or "
                "'-', starting with a letter or digit"
            )
        if c.name in seen:
            raise SpecError(f"contract names must be unique ({c.name!r} repeats)")
        seen.add(c.name)
        if not CONFIGMAP_NAME_RE.match(c.config_map):
            raise SpecError(f"{where}.configMap must be a ConfigMap name (got {c.config_map!r})")
        if not CONFIGMAP_KEY_RE.match(c.key):
            raise SpecError(f"{where}.key must be a ConfigMap key (got {c.key!r})")
        _range(f"{where}.version", c.version, 1, 1_000_000)
        if len(c.init_input) > MAX_INIT_INPUT_HEX or not HEX_RE.match(c.init_input):
            raise SpecError(
                f"{where}.initInput must be lowercase hex bytes, at most "
                f"{MAX_INIT_INPUT_HEX} characters"
            )


def _claim(where: str, name: str) -> None:
    if not CLAIM_RE.match(name):
        raise SpecError(
            f"{where} must be a PersistentVolumeClaim name (lowercase DNS-1123, at most 63 "
            f"characters; got {name!r})"
        )


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


@functools.cache
def _shape(tp: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A model dataclass's resolved field types and its fields by JSON key, once per type
    (get_type_hints re-evaluates every annotation string per call: 5 % of the operator's busy
    CPU during a spec change on 100 consortia, bench operator)."""
    return get_type_hints(tp), {camel(f.name): f for f in dataclasses.fields(tp)}


def _parse(tp: Any, data: Any, where: str) -> Any:  # noqa: C901 -- one branch per type form
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
        hints, fields = _shape(tp)
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
