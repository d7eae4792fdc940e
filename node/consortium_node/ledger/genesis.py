"""Genesis: the chain's initial validator set, admins, balances, key/values and parameters.

Organisations: each member organisation with its CA certificate (PEM bytes: the trust roots of
peer and client TLS, parsed by transport, never here: the ledger stays pure) and the Ed25519
sender keys it vouches for. `permissioned` makes only vouched keys (and admins) able to
transact (see ledger/state.py); an open chain (demos) accepts any key.

Canonical form is JSON with sorted keys and hex-encoded bytes; the genesis hash (SHA-256 of
the canonical bytes) is the `prev_hash` of block 1, so nodes with different genesis files can
never agree on a block. Produced by the operator (genesis.py there) and `consortium up`, loaded
by the node at first start (storage writes its state once)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .certs import ca_bundle_problem
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
from .tx import ASSET_RE, MAX_AMOUNT, MAX_ORG_BYTES


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

    def to_dict(self) -> dict[str, Any]:
        return {
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
            "organizations": [
                {
                    "name": o.name,
                    "ca_cert_pem": o.ca_cert_pem.decode("ascii"),
                    "members": sorted(m.hex() for m in o.members),
                }
                for o in self.organizations
            ],
            "permissioned": self.permissioned,
        }

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
                    )
                    for o in d.get("organizations", [])
                ),
                permissioned=_bool(d.get("permissioned", False)),
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
        if self.organizations:
            unknown = {v.organization for v in self.validators} - set(names)
            if unknown:
                raise DecodeError(
                    f"validator organisations {sorted(unknown)} are not genesis organisations"
                )

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
        return w

    def lthash(self) -> LtHash:
        h = LtHash()
        for k, v in self.writes().items():
            if v is not None:
                h.add(k, v)
        return h


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"expected true or false, got {v!r}")
    return v


def _mapping(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise TypeError(f"expected a mapping, got {type(v).__name__}")
    return v
