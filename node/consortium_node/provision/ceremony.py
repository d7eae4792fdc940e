"""The federation genesis ceremony: files, not API access, between organisations.

Pure: bytes in, bytes out (no I/O, no clock; keys come in as signers). Who calls it: the CLI
(`consortium ceremony init|contribute|assemble|sign|verify`, cli/ceremony.py), `consortium up
--org` (localnet), the node at start (runtime/service.py checks `genesis_sha256` and the
signature files of its config with `verify`), and the operator (federated Consortium: it
publishes its local organisations' contributions and applies a genesis by reference).

Every file is canonical JSON (sorted keys, no whitespace, UTF-8; bytes as lower-case hex):

- ceremony.json  `{"kind":"ConsortiumCeremony","version":1,"chainId":…,"consensus":{spec
  consensus section, camelCase},"parameters":{spec genesis section without admins/members:
  accounts, kv, maxTxBytes, membership},"organizations":[names],"genesisTime":<int s>}`.
  The ceremony id is sha256hex(bytes of this file).
- contribution-<org>.json  `{"kind":"ConsortiumContribution","version":1,"ceremony":<id>,
  "organization":…,"ca":<PEM>,"admins":[hex],"members":[hex],"validators":[{"name":…,
  "nodeId":hex,"address":"host:port"}],"signature":{"key":hex,"sig":hex}}`; the signature is
  Ed25519 by one of the listed admins over the canonical bytes of the document without
  "signature".
- genesis.json  the canonical genesis from THE builder (provision.genesis.build); the
  organisations in ceremony order, so the same contributions in any order give the same bytes.
- genesis-<org>.sig  `{"genesis":sha256hex,"organization":…,"key":hex,"sig":hex}`, the
  signature over canonical `{"genesis":…,"organization":…}` by one of that organisation's
  admin keys as the genesis lists them.

API (each raises `CeremonyError` with one line a person can act on):

    c = init(chain_id, ["a", "b", "c"], consensus={"type": "raft"}, parameters={}, genesis_time=T)
    contrib_a = contribute(c, "a", ca_pem, admins=[adm.public], members=[...],
                           validators=[Validator("a-0", node_id, "10.0.0.1:7051")], signer=adm)
    parse_contribution(contrib_a, c)         # -> Contribution (signature and ceremony checked)
    g = assemble(c, [contrib_b, contrib_a, contrib_c])      # -> canonical genesis bytes
    s = sign(g, "a", contrib_a, signer=adm)                 # -> genesis-a.sig bytes
    verify(g, [s_a, s_b, s_c], expected_sha256=None)        # -> the Genesis, or raises
    spec(c, contributions)                                  # -> ConsortiumSpec (node configs)

`signer` is anything with `.public: bytes` and `.sign(data) -> bytes` (crypto.Ed25519Key).
Signature checks use crypto.verify (a function of the bytes; the provision allowlist names
this one exception)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..crypto import verify as ed25519_verify
from ..ledger.certs import ca_bundle_problem
from ..ledger.errors import DecodeError
from ..ledger.genesis import Genesis
from ..ledger.tx import MAX_ADMINS
from . import genesis as genesis_builder
from .spec import ORG_NAME_RE, ConsortiumSpec, SpecError

CEREMONY_KIND = "ConsortiumCeremony"
CONTRIBUTION_KIND = "ConsortiumContribution"
VERSION = 1
MAX_VALIDATORS = 32  # per organisation, as spec.organizations[].validators
MAX_MEMBERS = 1024
PARAMETER_KEYS = ("accounts", "kv", "maxTxBytes", "membership")
VALIDATOR_NAME_MAX = 63


class CeremonyError(ValueError):
    """A ceremony file is invalid or does not match: one line naming the file's part."""


class Signer(Protocol):
    @property
    def public(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


def canonical(doc: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the one serialisation of every ceremony file."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load(data: bytes, what: str, kind: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CeremonyError(f"{what} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise CeremonyError(f"{what} must be a JSON object")
    if kind is not None:
        if doc.get("kind") != kind:
            raise CeremonyError(f"{what}: expected kind {kind}, got {doc.get('kind')!r}")
        if doc.get("version") != VERSION:
            raise CeremonyError(f"{what}: unsupported version {doc.get('version')!r}")
    return doc


def _hex(value: Any, n: int, where: str) -> bytes:
    if not isinstance(value, str) or value != value.lower():
        raise CeremonyError(f"{where} must be lower-case hex")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise CeremonyError(f"{where} must be lower-case hex") from None
    if len(raw) != n:
        raise CeremonyError(f"{where} must be {n} bytes ({2 * n} hex characters)")
    return raw


# --------------------------------------------------------------------------- ceremony.json


@dataclass(frozen=True, slots=True)
class Ceremony:
    """A parsed ceremony.json; `raw` are its exact bytes (the id is their hash)."""

    chain_id: str
    consensus: Mapping[str, Any]
    parameters: Mapping[str, Any]
    organizations: tuple[str, ...]
    genesis_time: int
    raw: bytes

    @property
    def id(self) -> str:
        return sha256hex(self.raw)


def _spec_doc(
    chain_id: str,
    consensus: Mapping[str, Any],
    parameters: Mapping[str, Any],
    orgs: Sequence[tuple[str, int]],
) -> dict[str, Any]:
    return {
        "chainId": chain_id,
        "consensus": dict(consensus),
        "genesis": dict(parameters),
        "organizations": [{"name": n, "validators": v} for n, v in orgs],
        "security": {"tls": True},
    }


def _check_spec_parts(
    chain_id: Any, consensus: Any, parameters: Any, organizations: Any
) -> tuple[str, ...]:
    if not isinstance(consensus, Mapping) or not isinstance(parameters, Mapping):
        raise CeremonyError("ceremony: consensus and parameters must be objects")
    unknown = set(parameters) - set(PARAMETER_KEYS)
    if unknown:
        raise CeremonyError(
            f"ceremony parameters: unknown {', '.join(sorted(unknown))} (allowed: "
            f"{', '.join(PARAMETER_KEYS)}; admins and members come from the contributions)"
        )
    if (
        not isinstance(organizations, list | tuple)
        or not organizations
        or not all(isinstance(o, str) for o in organizations)
    ):
        raise CeremonyError("ceremony: organizations must be a non-empty list of names")
    names = tuple(organizations)
    if len(set(names)) != len(names):
        raise CeremonyError("ceremony: organization names must be unique")
    for n in names:
        if not ORG_NAME_RE.match(n):
            raise CeremonyError(f"ceremony: organization name {n!r} is not valid")
    # the consensus and parameters as the spec model validates them (validator counts are
    # the contributions' business: check the rest with a placeholder count that always fits)
    try:
        ConsortiumSpec.parse(
            _spec_doc(str(chain_id), consensus, parameters, [(n, 4) for n in names])
        )
    except SpecError as e:
        raise CeremonyError(f"ceremony: {e}") from None
    return names


def init(
    chain_id: str,
    organizations: Sequence[str],
    consensus: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    genesis_time: int = 0,
) -> bytes:
    """The canonical bytes of a new ceremony.json. `genesis_time` in whole seconds."""
    consensus = dict(consensus or {})
    parameters = dict(parameters or {})
    names = _check_spec_parts(chain_id, consensus, parameters, list(organizations))
    if isinstance(genesis_time, bool) or not isinstance(genesis_time, int) or genesis_time < 0:
        raise CeremonyError("ceremony: genesisTime must be whole seconds >= 0")
    return canonical(
        {
            "kind": CEREMONY_KIND,
            "version": VERSION,
            "chainId": chain_id,
            "consensus": consensus,
            "parameters": parameters,
            "organizations": list(names),
            "genesisTime": genesis_time,
        }
    )


def parse_ceremony(data: bytes) -> Ceremony:
    """A ceremony.json as written by `init` (canonical bytes only: its id is their hash)."""
    doc = _load(data, "ceremony", CEREMONY_KIND)
    unknown = set(doc) - {
        "kind",
        "version",
        "chainId",
        "consensus",
        "parameters",
        "organizations",
        "genesisTime",
    }
    if unknown:
        raise CeremonyError(f"ceremony: unknown fields {', '.join(sorted(unknown))}")
    if canonical(doc) != data:
        raise CeremonyError("ceremony: not in canonical form (edited by hand? re-run init)")
    t = doc.get("genesisTime")
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise CeremonyError("ceremony: genesisTime must be whole seconds >= 0")
    names = _check_spec_parts(
        doc.get("chainId"), doc.get("consensus"), doc.get("parameters"), doc.get("organizations")
    )
    return Ceremony(str(doc["chainId"]), doc["consensus"], doc["parameters"], names, t, data)


def _ceremony(c: Ceremony | bytes) -> Ceremony:
    return c if isinstance(c, Ceremony) else parse_ceremony(c)


# --------------------------------------------------------------------------- contributions


@dataclass(frozen=True, slots=True)
class Validator:
    name: str
    node_id: bytes
    address: str  # host:port where peers of other organisations dial it


@dataclass(frozen=True, slots=True)
class Contribution:
    """A parsed, signature-checked contribution."""

    ceremony: str
    organization: str
    ca_pem: bytes
    admins: tuple[bytes, ...]
    members: tuple[bytes, ...]
    validators: tuple[Validator, ...]
    signed_by: bytes
    raw: bytes


def _is_hostport(addr: str) -> bool:
    host, sep, port = addr.rpartition(":")
    return bool(sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536)


def _contribution_body(
    ceremony_id: str,
    organization: str,
    ca_pem: bytes,
    admins: Sequence[bytes],
    members: Sequence[bytes],
    validators: Sequence[Validator],
) -> dict[str, Any]:
    return {
        "kind": CONTRIBUTION_KIND,
        "version": VERSION,
        "ceremony": ceremony_id,
        "organization": organization,
        "ca": ca_pem.decode("ascii"),
        "admins": sorted(a.hex() for a in admins),
        "members": sorted(m.hex() for m in members),
        "validators": [
            {"name": v.name, "nodeId": v.node_id.hex(), "address": v.address}
            for v in sorted(validators, key=lambda v: v.name)
        ],
    }


def contribute(
    ceremony: Ceremony | bytes,
    organization: str,
    ca_pem: bytes,
    admins: Sequence[bytes],
    members: Sequence[bytes],
    validators: Sequence[Validator],
    signer: Signer,
    joining: bool = False,
) -> bytes:
    """The canonical bytes of organisation `organization`'s signed contribution. `signer`
    must be one of `admins`. The result passes `parse_contribution` (checked here).
    `joining`: the organisation is not one of the ceremony's and joins the chain it made,
    later (the members admit it with AddOrganization from this file; `assemble` refuses it)."""
    c = _ceremony(ceremony)
    if joining and organization in c.organizations:
        raise CeremonyError(
            f"contribution of {organization}: it is an organisation of this ceremony, so it "
            "contributes to the genesis instead of joining later"
        )
    if signer.public not in admins:
        raise CeremonyError(
            f"contribution of {organization}: the signing key is not one of its admins"
        )
    try:
        pem = ca_pem.decode("ascii")
    except UnicodeDecodeError:
        raise CeremonyError(f"contribution of {organization}: ca must be PEM") from None
    body = _contribution_body(c.id, organization, pem.encode(), admins, members, validators)
    sig = signer.sign(canonical(body))
    out = canonical({**body, "signature": {"key": signer.public.hex(), "sig": sig.hex()}})
    parse_contribution(out, c, joining)
    return out


def parse_contribution(
    data: bytes, ceremony: Ceremony | bytes | None = None, joining: bool = False
) -> Contribution:
    """A contribution whose signature verifies (by one of its own admins); with `ceremony`,
    also one made for that ceremony by one of its organisations — or, `joining`, by an
    organisation it does not list, which joins the chain later."""
    doc = _load(data, "contribution", CONTRIBUTION_KIND)
    org = doc.get("organization")
    if not isinstance(org, str) or not ORG_NAME_RE.match(org):
        raise CeremonyError("contribution: organization must be an organisation name")
    where = f"contribution of {org}"
    unknown = set(doc) - {
        "kind",
        "version",
        "ceremony",
        "organization",
        "ca",
        "admins",
        "members",
        "validators",
        "signature",
    }
    if unknown:
        raise CeremonyError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    cid = doc.get("ceremony")
    if not isinstance(cid, str):
        raise CeremonyError(f"{where}: ceremony must be the ceremony id")
    ca = doc.get("ca")
    if not isinstance(ca, str) or not ca.isascii():
        raise CeremonyError(f"{where}: ca must be the organisation's CA certificate, PEM")
    if (why := ca_bundle_problem(ca.encode())) is not None:
        raise CeremonyError(f"{where}: ca: {why}")
    admins = _key_list(doc.get("admins"), f"{where}: admins", 1, MAX_ADMINS)
    members = _key_list(doc.get("members", []), f"{where}: members", 0, MAX_MEMBERS)
    validators = _validators(doc.get("validators"), where)
    sig = doc.get("signature")
    if not isinstance(sig, dict) or set(sig) != {"key", "sig"}:
        raise CeremonyError(f"{where}: signature must be {{key, sig}}")
    key = _hex(sig["key"], 32, f"{where}: signature.key")
    signature = _hex(sig["sig"], 64, f"{where}: signature.sig")
    if key not in admins:
        raise CeremonyError(f"{where}: signed by {key.hex()[:16]}…, not one of its admins")
    body = {k: v for k, v in doc.items() if k != "signature"}
    if not ed25519_verify(key, canonical(body), signature):
        raise CeremonyError(f"{where}: bad signature (the file was changed after signing)")
    if ceremony is not None:
        c = _ceremony(ceremony)
        if cid != c.id:
            raise CeremonyError(
                f"{where}: made for another ceremony ({cid[:16]}…, this one is {c.id[:16]}…)"
            )
        if org not in c.organizations and not joining:
            raise CeremonyError(f"{where}: {org} is not an organisation of this ceremony")
    return Contribution(cid, org, ca.encode(), admins, members, validators, key, data)


def _key_list(value: Any, where: str, lo: int, hi: int) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not lo <= len(value) <= hi:
        raise CeremonyError(f"{where} must be a list of {lo}..{hi} hex keys")
    keys = tuple(_hex(v, 32, where) for v in value)
    if len(set(keys)) != len(keys):
        raise CeremonyError(f"{where}: a key is listed twice")
    return keys


def _validators(value: Any, where: str) -> tuple[Validator, ...]:
    if not isinstance(value, list) or len(value) > MAX_VALIDATORS:
        raise CeremonyError(f"{where}: validators must be a list of at most {MAX_VALIDATORS}")
    out = []
    for i, v in enumerate(value):
        w = f"{where}: validators[{i}]"
        if not isinstance(v, dict) or set(v) != {"name", "nodeId", "address"}:
            raise CeremonyError(f"{w} must be {{name, nodeId, address}}")
        name, addr = v["name"], v["address"]
        if not isinstance(name, str) or not 0 < len(name) <= VALIDATOR_NAME_MAX:
            raise CeremonyError(f"{w}.name must be 1..{VALIDATOR_NAME_MAX} characters")
        if not isinstance(addr, str) or not _is_hostport(addr):
            raise CeremonyError(f"{w}.address must be HOST:PORT (got {addr!r})")
        out.append(Validator(name, _hex(v["nodeId"], 32, f"{w}.nodeId"), addr))
    if len({v.name for v in out}) != len(out):
        raise CeremonyError(f"{where}: validator names must be unique")
    if len({v.node_id for v in out}) != len(out):
        raise CeremonyError(f"{where}: a validator node id is listed twice")
    return tuple(out)


# --------------------------------------------------------------------------- assemble


def _by_org(c: Ceremony, contributions: Sequence[bytes | Contribution]) -> dict[str, Contribution]:
    parsed = [x if isinstance(x, Contribution) else parse_contribution(x, c) for x in contributions]
    by_org: dict[str, Contribution] = {}
    for p in parsed:
        if p.ceremony != c.id:
            raise CeremonyError(f"contribution of {p.organization}: made for another ceremony")
        if p.organization in by_org:
            raise CeremonyError(f"organisation {p.organization} contributed twice")
        by_org[p.organization] = p
    missing = [o for o in c.organizations if o not in by_org]
    if missing:
        raise CeremonyError(f"no contribution from {', '.join(missing)}")
    seen: dict[bytes, str] = {}
    for p in parsed:
        for v in p.validators:
            if v.node_id in seen:
                raise CeremonyError(
                    f"node id {v.node_id.hex()[:16]}… is listed by {seen[v.node_id]} and "
                    f"{p.organization}"
                )
            seen[v.node_id] = p.organization
    return by_org


def spec(
    ceremony: Ceremony | bytes, contributions: Sequence[bytes | Contribution]
) -> ConsortiumSpec:
    """The ConsortiumSpec the ceremony and its contributions describe: organisations in
    ceremony order with their validator counts, the ceremony's consensus and genesis
    parameters, TLS on. What node configs (provision.nodeconfig) are written from."""
    c = _ceremony(ceremony)
    by_org = _by_org(c, contributions)
    doc = _spec_doc(
        c.chain_id,
        c.consensus,
        c.parameters,
        [(o, len(by_org[o].validators)) for o in c.organizations],
    )
    try:
        return ConsortiumSpec.parse(doc)
    except SpecError as e:
        raise CeremonyError(f"the contributions do not make a valid consortium: {e}") from None


def _member(org: str, i: int) -> str:
    return f"{org}/{i}"


@dataclass(frozen=True, slots=True)
class _Part:
    """What one organisation brings to the genesis (from its contribution, or as a genesis
    lists it)."""

    ca_pem: bytes
    admins: tuple[bytes, ...]
    members: tuple[bytes, ...]
    node_ids: tuple[bytes, ...]


def _build(c: Ceremony, parts: Mapping[str, _Part]) -> bytes:
    """The canonical genesis of ceremony `c` with these organisations' parts: THE genesis
    builder over the ceremony's spec. Organisations in ceremony order, every list sorted."""
    doc = _spec_doc(
        c.chain_id,
        c.consensus,
        c.parameters,
        [(o, len(parts[o].node_ids)) for o in c.organizations],
    )
    try:
        s = ConsortiumSpec.parse(doc)
    except SpecError as e:
        raise CeremonyError(f"the contributions do not make a valid consortium: {e}") from None
    validators: dict[str, bytes] = {}
    for o in c.organizations:
        # the ordinal order is the sorted node ids (it only names the builder's members)
        for i, node_id in enumerate(sorted(parts[o].node_ids)):
            validators[_member(o, i)] = node_id
    keys = genesis_builder.GenesisKeys(
        validators=validators,
        admin=b"",  # unused: organisation admins exclude a consortium-wide admin
        ca_certs={o: parts[o].ca_pem for o in c.organizations},
        org_admins={o: parts[o].admins for o in c.organizations},
        org_members={o: parts[o].members for o in c.organizations},
    )
    try:
        g = genesis_builder.build(
            s, _member, keys, genesis_builder.creation_time_ms(c.genesis_time)
        )
    except DecodeError as e:
        raise CeremonyError(f"the contributions do not make a valid genesis: {e}") from None
    return g.canonical()


def assemble(ceremony: Ceremony | bytes, contributions: Sequence[bytes | Contribution]) -> bytes:
    """The canonical genesis of the ceremony, from the one genesis builder. Deterministic:
    organisations come in ceremony order, every list inside is sorted, so the order of
    `contributions` does not matter. Refuses a contribution for another ceremony or with a
    bad signature, an organisation missing or twice, a node id twice."""
    c = _ceremony(ceremony)
    by_org = _by_org(c, contributions)
    return _build(
        c,
        {
            o: _Part(p.ca_pem, p.admins, p.members, tuple(v.node_id for v in p.validators))
            for o, p in by_org.items()
        },
    )


def ceremony_problem(genesis: bytes, ceremony: Ceremony | bytes) -> str | None:
    """Why `genesis` is not a genesis of `ceremony` whatever the organisations contributed,
    or None: rebuilt from the ceremony and the organisations' parts as the genesis lists them,
    it must come out byte for byte (chain id, consensus, parameters, time, organisations)."""
    c = _ceremony(ceremony)
    g = _genesis(genesis)
    if [o.name for o in g.organizations] != list(c.organizations):
        return "the genesis has other organisations than the ceremony"
    parts = {
        o.name: _Part(
            o.ca_cert_pem,
            o.admins,
            o.members,
            tuple(v.node_id for v in g.validators if v.organization == o.name),
        )
        for o in g.organizations
    }
    try:
        rebuilt = _build(c, parts)
    except CeremonyError as e:
        return str(e)
    if rebuilt != genesis:
        return "the genesis is not this ceremony's chain (chain id, consensus, parameters or time)"
    return None


def peers(contributions: Sequence[bytes | Contribution]) -> dict[bytes, tuple[str, str]]:
    """node id -> (organisation, address) of every validator the contributions list: where a
    node dials its peers of other organisations."""
    out: dict[bytes, tuple[str, str]] = {}
    for x in contributions:
        p = x if isinstance(x, Contribution) else parse_contribution(x)
        for v in p.validators:
            out[v.node_id] = (p.organization, v.address)
    return out


# --------------------------------------------------------------------------- sign / verify


def _genesis(data: bytes) -> Genesis:
    try:
        g = Genesis.from_json(data)
    except DecodeError as e:
        raise CeremonyError(f"genesis: {e}") from None
    if g.canonical() != data:
        raise CeremonyError("genesis: not in canonical form (its hash would not be the chain's)")
    if not g.governed_by_organizations:
        raise CeremonyError("genesis: lists no organisation admins (not a federated genesis)")
    return g


def own_part_problem(genesis: bytes, contribution: bytes | Contribution) -> str | None:
    """Why organisation X's part of `genesis` is not exactly its contribution, or None: its
    CA bytes, admins, members and validator node ids, compared as the genesis encodes them."""
    g = _genesis(genesis)
    c = contribution if isinstance(contribution, Contribution) else parse_contribution(contribution)
    org = next((o for o in g.organizations if o.name == c.organization), None)
    if org is None:
        return f"genesis does not list organisation {c.organization}"
    if org.ca_cert_pem != c.ca_pem:
        return f"genesis has another CA certificate for {c.organization}"
    if sorted(org.admins) != sorted(c.admins):
        return f"genesis has other admin keys for {c.organization}"
    if sorted(org.members) != sorted(c.members):
        return f"genesis has other member keys for {c.organization}"
    mine = sorted(v.node_id for v in g.validators if v.organization == c.organization)
    if mine != sorted(v.node_id for v in c.validators):
        return f"genesis has other validators for {c.organization}"
    claimed = [v for v in g.validators if v.node_id in {x.node_id for x in c.validators}]
    if any(v.organization != c.organization for v in claimed):
        return f"genesis registers a validator of {c.organization} with another organisation"
    return None


def _sig_body(genesis_sha: str, organization: str) -> bytes:
    return canonical({"genesis": genesis_sha, "organization": organization})


def sign(
    genesis: bytes,
    organization: str,
    contribution: bytes | Contribution,
    signer: Signer,
    ceremony: Ceremony | bytes | None = None,
) -> bytes:
    """genesis-<org>.sig: after checking that organisation's part of the genesis byte for
    byte against its own contribution (and, with `ceremony`, the chain id, consensus and time
    against the ceremony), its admin `signer` signs the genesis hash."""
    c = (
        contribution
        if isinstance(contribution, Contribution)
        else parse_contribution(contribution, ceremony)
    )
    if c.organization != organization:
        raise CeremonyError(f"the contribution is {c.organization}'s, not {organization}'s")
    if (why := own_part_problem(genesis, c)) is not None:
        raise CeremonyError(f"refusing to sign: {why}")
    if ceremony is not None and (why := ceremony_problem(genesis, ceremony)) is not None:
        raise CeremonyError(f"refusing to sign: {why}")
    if signer.public not in c.admins:
        raise CeremonyError(f"the signing key is not an admin of {organization}")
    digest = sha256hex(genesis)
    sig = signer.sign(_sig_body(digest, organization))
    return canonical(
        {
            "genesis": digest,
            "organization": organization,
            "key": signer.public.hex(),
            "sig": sig.hex(),
        }
    )


@dataclass(frozen=True, slots=True)
class GenesisSignature:
    genesis: str
    organization: str
    key: bytes
    sig: bytes


def parse_signature(data: bytes) -> GenesisSignature:
    doc = _load(data, "genesis signature", None)
    if set(doc) != {"genesis", "organization", "key", "sig"}:
        raise CeremonyError("genesis signature must be {genesis, organization, key, sig}")
    org = doc["organization"]
    if not isinstance(org, str):
        raise CeremonyError("genesis signature: organization must be a name")
    digest = _hex(doc["genesis"], 32, f"genesis signature of {org}: genesis").hex()
    return GenesisSignature(
        digest,
        org,
        _hex(doc["key"], 32, f"genesis signature of {org}: key"),
        _hex(doc["sig"], 64, f"genesis signature of {org}: sig"),
    )


def verify(
    genesis: bytes, signatures: Sequence[bytes], expected_sha256: str | None = None
) -> Genesis:
    """The genesis, when its sha256 is `expected_sha256` (if given) and every organisation it
    lists has a valid signature by one of ITS admin keys in it; every signature given must be
    valid and by the organisation it names (a foreign or broken signature is refused, not
    skipped)."""
    digest = sha256hex(genesis)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise CeremonyError(
            f"genesis sha256 is {digest}, the configuration expects {expected_sha256}"
        )
    g = _genesis(genesis)
    admins = {o.name: set(o.admins) for o in g.organizations}
    signed: set[str] = set()
    for raw in signatures:
        s = parse_signature(raw)
        if s.genesis != digest:
            raise CeremonyError(f"the signature of {s.organization} is for another genesis")
        if s.organization not in admins:
            raise CeremonyError(f"a signature names {s.organization}, not in this genesis")
        if s.key not in admins[s.organization]:
            owner = next((o for o, keys in admins.items() if s.key in keys), None)
            by = f"an admin of {owner}" if owner else "a key that is no admin"
            raise CeremonyError(f"the signature for {s.organization} is by {by}")
        if not ed25519_verify(s.key, _sig_body(digest, s.organization), s.sig):
            raise CeremonyError(f"the signature of {s.organization} does not verify")
        signed.add(s.organization)
    missing = [o.name for o in g.organizations if o.name not in signed]
    if missing:
        raise CeremonyError(f"genesis not signed by {', '.join(missing)}")
    return g
