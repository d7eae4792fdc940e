"""Genesis: the chain's initial validator set, admins, balances, key/values and parameters.

Organisations: each member organisation with its CA certificate (PEM bytes: the trust roots of
peer and client TLS, parsed by transport, never here: the ledger stays pure) and the Ed25519
sender keys it vouches for. `permissioned` makes only vouched keys (and admins) able to
transact (see ledger/state.py); an open chain (demos) accepts any key.

Governance: `organizations[].admins` (Ed25519 keys) turn on governance by organisations
(every change passes a policy counted by organisation; `policies` overrides the defaults of
ledger/governance.py). Without them the top-level `admins` keep legacy single-admin
governance; the two are exclusive.

Canonical form is JSON with sorted keys and hex-encoded bytes; the genesis hash (SHA-256 of
the canonical bytes) is the `prev_hash` of block 1, so nodes with different genesis files can
never agree on a block. Produced by the operator (genesis.py there) and `consortium up`, loaded
by the node at first start (storage writes its state once)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import governance as gov
from .certs import ca_bundle_problem
from .contracts import ENGINE_KEY, ENGINE_RE
from .errors import DecodeError
from .hashing import sha256
from .lthash import LtHash
from .state import (
    ADMINS_KEY,
    PARAMS,
    PERMISSIONED_KEY,
    VSET_LATEST_KEY,
    Validator,
    balance_key,
    encode_validators,
    issuer_key,
    kv_key,
    member_key,
    org_key,
    pack_u64,
    param_key,
    vset_key,
)
from .tx import ASSET_RE, MAX_ADMINS, MAX_AMOUNT, MAX_ORG_BYTES


@dataclass(frozen=True, slots=True)
class Account:
    asset: str
    account: bytes
    amount: int


PEM_CERT_HEADER = b"-----BEGIN CERTIFICATE-----"
MAX_PEM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Organization:
    name: str
    ca_cert_pem: bytes = b""  # PEM of the organisation's CA certificate(s); empty: no TLS CA
    members: tuple[bytes, ...] = ()  # Ed25519 sender keys the organisation vouches for
    admins: tuple[bytes, ...] = ()  # Ed25519 governance admin keys (governance by orgs)


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    time_ms: int
    validators: tuple[Validator, ...]
    admins: tuple[bytes, ...] = ()
    accounts: tuple[Account, ...] = ()
    kv: tuple[tuple[bytes, bytes], ...] = ()
    params: dict[str, int] = field(default_factory=dict)
    consensus: str = "solo"  # solo | raft | bft
    organizations: tuple[Organization, ...] = ()
    permissioned: bool = False
    policies: dict[str, str] = field(default_factory=dict)  # action -> rule (else default)
    # the WebAssembly engine the chain's contracts run on (ledger/contracts.py); empty: a
    # chain without contracts (genesis made before them)
    contracts_engine: str = ""

    @property
    def governed_by_organizations(self) -> bool:
        """Organisation admins in genesis: every change passes a policy counted by
        organisation (ledger/governance.py); otherwise legacy single-admin governance."""
        return any(o.admins for o in self.organizations)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "chain_id": self.chain_id,
            "time_ms": self.time_ms,
            "consensus": self.consensus,
            "validators": [
                {"node_id": v.node_id.hex(), "organization": v.organization}
                for v in sorted(self.validators, key=lambda v: v.node_id)
            ],
            "admins": sorted(a.hex() for a in self.admins),
            "accounts": [
                {"asset": a.asset, "account": a.account.hex(), "amount": a.amount}
                for a in self.accounts
            ],
            "kv": [{"key": k.hex(), "value": v.hex()} for k, v in self.kv],
            "params": dict(sorted(self.params.items())),
            "organizations": [_org_dict(o) for o in self.organizations],
            "permissioned": self.permissioned,
        }
        if self.policies:  # absent when empty: a legacy genesis keeps its exact hash
            d["policies"] = dict(sorted(self.policies.items()))
        if self.contracts_engine:  # likewise: a genesis from before contracts keeps its hash
            d["contracts_engine"] = self.contracts_engine
        return d

    def ca_certs(self) -> dict[str, bytes]:
        """organisation -> CA certificate PEM (organisations that have one)."""
        return {o.name: o.ca_cert_pem for o in self.organizations if o.ca_cert_pem}

    def canonical(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def hash(self) -> bytes:
        return sha256(self.canonical())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genesis:
        try:
            g = cls(
                chain_id=str(d["chain_id"]),
                time_ms=int(d.get("time_ms", 0)),
                consensus=str(d.get("consensus", "solo")),
                validators=tuple(
                    Validator(bytes.fromhex(v["node_id"]), str(v["organization"]))
                    for v in d["validators"]
                ),
                admins=tuple(bytes.fromhex(a) for a in d.get("admins", [])),
                accounts=tuple(
                    Account(str(a["asset"]), bytes.fromhex(a["account"]), int(a["amount"]))
                    for a in d.get("accounts", [])
                ),
                kv=tuple(
                    (bytes.fromhex(e["key"]), bytes.fromhex(e["value"])) for e in d.get("kv", [])
                ),
                params={str(k): int(v) for k, v in _mapping(d.get("params", {})).items()},
                organizations=tuple(
                    Organization(
                        str(o["name"]),
                        str(o.get("ca_cert_pem", "")).encode("ascii"),
                        tuple(bytes.fromhex(m) for m in o.get("members", [])),
                        tuple(bytes.fromhex(a) for a in o.get("admins", [])),
                    )
                    for o in d.get("organizations", [])
                ),
                permissioned=_bool(d.get("permissioned", False)),
                policies={str(k): str(v) for k, v in _mapping(d.get("policies", {})).items()},
                contracts_engine=str(d.get("contracts_engine", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DecodeError(f"invalid genesis: {e!r}") from e
        g.validate()
        return g

    @classmethod
    def from_json(cls, data: bytes | str) -> Genesis:
        try:
            d = json.loads(data)
        except ValueError as e:
            raise DecodeError(f"genesis is not JSON: {e}") from e
        if not isinstance(d, dict):
            raise DecodeError("genesis must be a JSON object")
        return cls.from_dict(d)

    def validate(self) -> None:
        if not self.validators:
            raise DecodeError("genesis needs at least one validator")
        ids = [v.node_id for v in self.validators]
        if len(set(ids)) != len(ids) or any(len(i) != 32 for i in ids):
            raise DecodeError("validator node ids must be distinct 32-byte keys")
        if self.consensus not in ("solo", "raft", "bft"):
            raise DecodeError(f"unknown consensus {self.consensus!r}")
        if self.consensus == "solo" and len(ids) != 1:
            raise DecodeError("solo consensus takes exactly one validator")
        if self.consensus == "bft" and len(ids) < 4:
            raise DecodeError("bft consensus needs at least 4 validators (3f+1, f >= 1)")
        if any(not 0 < len(v.organization.encode()) <= MAX_ORG_BYTES for v in self.validators):
            raise DecodeError(f"validator organizations must be 1..{MAX_ORG_BYTES} bytes")
        totals: dict[tuple[str, bytes], int] = {}
        for a in self.accounts:
            key = (a.asset, a.account)
            totals[key] = totals.get(key, 0) + a.amount
            if totals[key] > MAX_AMOUNT:
                raise DecodeError(
                    f"genesis account balance {a.asset}/{a.account.hex()} exceeds {MAX_AMOUNT}"
                )
            if (
                not ASSET_RE.fullmatch(a.asset)
                or len(a.account) != 32
                or not 0 <= a.amount <= MAX_AMOUNT
            ):
                raise DecodeError(f"invalid genesis account {a.asset}/{a.account.hex()}")
        for name, value in self.params.items():
            if name not in PARAMS or not PARAMS[name][1] <= value <= PARAMS[name][2]:
                raise DecodeError(f"invalid genesis parameter {name}={value}")
        if self.contracts_engine and not ENGINE_RE.fullmatch(self.contracts_engine):
            raise DecodeError(f"invalid genesis contracts_engine {self.contracts_engine!r}")
        self._validate_organizations()

    def _validate_organizations(self) -> None:
        names = [o.name for o in self.organizations]
        if len(set(names)) != len(names):
            raise DecodeError("genesis organisation names must be distinct")
        members: set[bytes] = set()
        for o in self.organizations:
            if not 0 < len(o.name.encode()) <= MAX_ORG_BYTES:
                raise DecodeError(f"organisation names must be 1..{MAX_ORG_BYTES} bytes")
            pem = o.ca_cert_pem
            if pem and (not pem.lstrip().startswith(PEM_CERT_HEADER) or len(pem) > MAX_PEM_BYTES):
                raise DecodeError(f"organisation {o.name}: ca_cert_pem is not a PEM certificate")
            if b"PRIVATE KEY" in pem:
                raise DecodeError(f"organisation {o.name}: ca_cert_pem holds a private key")
            if pem and (why := ca_bundle_problem(pem)) is not None:
                raise DecodeError(f"organisation {o.name}: ca_cert_pem: {why}")
            for m in o.members:
                if len(m) != 32 or m in members:
                    raise DecodeError(
                        f"organisation {o.name}: members must be distinct 32-byte keys, "
                        "each vouched for by one organisation"
                    )
                members.add(m)
        self._validate_governance()
        if self.organizations:
            unknown = {v.organization for v in self.validators} - set(names)
            if unknown:
                raise DecodeError(
                    f"validator organisations {sorted(unknown)} are not genesis organisations"
                )

    def _validate_governance(self) -> None:
        if not self.governed_by_organizations:
            if self.policies:
                raise DecodeError(
                    "genesis policies need organisation admins (organizations[].admins)"
                )
            return
        if self.admins:
            raise DecodeError(
                "genesis has both top-level admins and organisation admins: governance by "
                "organisations takes organizations[].admins only"
            )
        seen: set[bytes] = set()
        for o in self.organizations:
            if not o.admins or len(o.admins) > MAX_ADMINS:
                raise DecodeError(
                    f"organisation {o.name}: every organisation needs 1..{MAX_ADMINS} admins "
                    "under governance by organisations"
                )
            for a in o.admins:
                if len(a) != 32 or a in seen:
                    raise DecodeError(
                        f"organisation {o.name}: admins must be distinct 32-byte keys, "
                        "each acting for one organisation"
                    )
                seen.add(a)
        for action, rule in self.policies.items():
            why = gov.check_policy(action, rule)
            if why:
                raise DecodeError(f"genesis policy {action}: {why}")

    def writes(self) -> dict[bytes, bytes | None]:
        """The state at height 0."""
        w: dict[bytes, bytes | None] = {
            vset_key(1): encode_validators(self.validators),
            VSET_LATEST_KEY: pack_u64(1),
        }
        if self.admins:
            w[ADMINS_KEY] = b"".join(sorted(self.admins))
        for a in self.accounts:
            k = balance_key(a.asset, a.account)
            prev = w.get(k)
            w[k] = pack_u64((int.from_bytes(prev, "big") if prev else 0) + a.amount)
            w.setdefault(
                issuer_key(a.asset), b"\x00" * 32
            )  # genesis-minted: no issuer key holds it
        for k, v in self.kv:
            w[kv_key(k)] = v
        for name, value in self.params.items():
            w[param_key(name)] = str(value).encode()
        for o in self.organizations:
            w[org_key(o.name)] = o.ca_cert_pem
            for m in o.members:
                w[member_key(m)] = o.name.encode()
        if self.permissioned:
            w[PERMISSIONED_KEY] = b"1"
        if self.contracts_engine:
            w[ENGINE_KEY] = self.contracts_engine.encode()
        if self.governed_by_organizations:  # nothing new on a legacy chain: same state root
            w[gov.GOV_ORGS_KEY] = b"1"
            w[gov.ORGS_KEY] = gov.encode_orgs([o.name for o in self.organizations])
            for o in self.organizations:
                w[gov.org_admins_key(o.name)] = gov.encode_keys(o.admins)
                for key in o.admins:
                    w[gov.admin_org_key(key)] = o.name.encode()
            for action, rule in self.policies.items():
                w[gov.policy_key(action)] = str(gov.parse_rule(rule)).encode()
        return w

    def lthash(self) -> LtHash:
        h = LtHash()
        for k, v in self.writes().items():
            if v is not None:
                h.add(k, v)
        return h


def _org_dict(o: Organization) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": o.name,
        "ca_cert_pem": o.ca_cert_pem.decode("ascii"),
        "members": sorted(m.hex() for m in o.members),
    }
    if o.admins:  # absent when empty: a legacy genesis keeps its exact hash
        d["admins"] = sorted(a.hex() for a in o.admins)
    return d


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"expected true or false, got {v!r}")
    return v


def _mapping(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TypeError(f"expected a mapping, got {type(v).__name__}")
    return v
