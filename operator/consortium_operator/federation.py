"""Federation in the operator, pure: what a Consortium with `localOrganizations` publishes to
the genesis ceremony, and whether a genesis applied by reference (`spec.genesisFrom`) may be
adopted. The ceremony's files and checks are the provisioning core's
(consortium_node.provision.ceremony); this module only maps them onto the operator's world.

Who calls it: plan.next_step (genesis phase of a federated consortium: `adopt`), status.build
(`contributions`, published in status.contributions for `consortium ceremony contribute
--from-cluster`). Pure: no I/O — reconcile reads the ConfigMaps into `Observed.ceremony` /
`Observed.genesis_source`.

Invariants:
- A genesis is adopted (written into the operator's own genesis ConfigMap, which the nodes
  mount) only when it hashes to spec.genesisFrom.sha256, every organisation it lists signed
  its hash with one of ITS admin keys (ceremony.verify), it is this spec's chain (chain id,
  consensus; every organisation it lists is in the spec), every local organisation's part is
  exactly what this cluster holds (its CA certificate, its admin key, its validators' node
  ids) and every remote organisation's part is what the spec describes (CA, admins,
  validators). Anything else is a reason on the Consortium (GenesisMismatch, BadSignature,
  ForeignCertificate) and no node starts: there is nothing to crash-loop on.
- Organisations of the spec that the genesis does not list joined (remote) or join (local)
  the running chain later: a local one is *joining* (`joining`): its nodes start as
  non-validators on this genesis, trusting its own CA besides the chain's (render), and wait
  until a member organisation's AddOrganization admits it (plan: WaitingForAdmission).
- A contribution lists only keys and certificates this cluster holds for its own
  organisations; it is published unsigned (the signature is made by the organisation's admin
  with `consortium ceremony contribute --from-cluster`, reading that admin key in this
  cluster only)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from consortium_node.ledger.genesis import Genesis
from consortium_node.provision import ceremony

from .model import PEER_PORT, ConsortiumSpec, Names, Observed, OrganizationSpec


@dataclass(frozen=True, slots=True)
class Adopt:
    """The verified genesis bytes (canonical; their sha256 is the pinned one)."""

    genesis: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    """Why the genesis is not adopted: `reason` GenesisMismatch | BadSignature |
    ForeignCertificate | WaitingForGenesis (a ConfigMap is not there yet)."""

    reason: str
    message: str


def joining(spec: ConsortiumSpec, observed: Observed) -> frozenset[str]:
    """Local organisations of a federated chain that its genesis does not list: they join
    the running chain (admitted by the members' AddOrganization, then their validators are
    added). Empty before the genesis is adopted and for a chain this operator wrote."""
    if spec.genesis_from is None or not observed.has_genesis:
        return frozenset()
    listed = set(observed.genesis_organizations)
    return frozenset(o.name for o in spec.local if o.name not in listed)


def validator_pods(org: OrganizationSpec, names: Names) -> list[str]:
    """The pods that are an organisation's genesis validators (ordinals 0..validators-1)."""
    return [names.pod(org.name, i) for i in range(org.validators)]


def address(spec: ConsortiumSpec, names: Names, namespace: str, pod: str, org: str) -> str:
    """Where other organisations dial `pod`: its external address when its organisation is
    exposed, else its in-cluster peer address (reachable only from this cluster)."""
    o = spec.org(org)
    ordinal = int(pod.rsplit("-", 1)[1])
    if o is not None and o.expose is not None:
        return o.expose.endpoint(ordinal)
    return f"{pod}.{names.peers_service}.{namespace}.svc:{PEER_PORT}"


def contributions(
    spec: ConsortiumSpec, observed: Observed, names: Names, namespace: str
) -> list[dict[str, Any]]:
    """status.contributions: for each local organisation whose keys (admin, member with
    memberKey, every genesis validator's node key) and (with TLS) CA exist, the body of its
    contribution to the ceremony — the fields of `consortium ceremony contribute`, unsigned."""
    cid = observed.ceremony.id if observed.ceremony is not None else ""
    if spec.ceremony is None or not cid:
        return []
    out = []
    for org in spec.local:
        admin = observed.org_admins.get(org.name)
        pods = validator_pods(org, names)
        ca = observed.ca_certs.get(org.name, b"")
        if admin is None or any(p not in observed.node_keys for p in pods):
            continue
        if (spec.security.tls and not ca) or (
            org.member_key and org.name not in observed.member_keys
        ):
            continue
        member = observed.member_keys.get(org.name)
        out.append(
            {
                "ceremony": cid,
                "organization": org.name,
                "ca": ca.decode("ascii"),
                "admins": [admin.hex()],
                "members": [member.hex()] if member is not None else [],
                "validators": [
                    {
                        "name": p,
                        "nodeId": observed.node_keys[p].hex(),
                        "address": address(spec, names, namespace, p, org.name),
                    }
                    for p in pods
                ],
            }
        )
    return out


def adopt(spec: ConsortiumSpec, observed: Observed, names: Names) -> Adopt | Refuse:
    """Whether the genesis of spec.genesisFrom may become this chain's (module docstring)."""
    pinned = spec.genesis_from
    assert pinned is not None, "only for a spec with genesisFrom"
    if pinned.config_map == names.genesis_configmap:
        return Refuse(
            "GenesisMismatch",
            f"spec.genesisFrom.configMap must not be {names.genesis_configmap}: that is the "
            "operator's own genesis ConfigMap, written only after the genesis verified",
        )
    src = observed.genesis_source
    if src is None or src.problem:
        why = src.problem if src is not None else "not read yet"
        return Refuse("WaitingForGenesis", f"waiting for the genesis: {why}")
    digest = hashlib.sha256(src.genesis).hexdigest()
    if digest != pinned.sha256:
        return Refuse(
            "GenesisMismatch",
            f"genesis.json in ConfigMap {pinned.config_map} has sha256 {digest[:16]}…, "
            f"spec.genesisFrom.sha256 is {pinned.sha256[:16]}…: not starting any node",
        )
    try:
        g = ceremony.verify(src.genesis, [raw for _, raw in src.signatures], pinned.sha256)
    except ceremony.CeremonyError as e:
        return Refuse("BadSignature", f"genesis {digest[:16]}… not accepted: {e}")
    problem = _chain_problem(spec, g) or _local_problem(spec, observed, names, g)
    return problem or _remote_problem(spec, g) or Adopt(src.genesis)


def _chain_problem(spec: ConsortiumSpec, g: Genesis) -> Refuse | None:
    if g.chain_id != spec.chain_id or g.consensus != spec.consensus.type:
        return Refuse(
            "GenesisMismatch",
            f"the genesis is chain {g.chain_id!r} ({g.consensus}), the spec asks for "
            f"{spec.chain_id!r} ({spec.consensus.type})",
        )
    listed, declared = {o.name for o in g.organizations}, {o.name for o in spec.organizations}
    if not listed <= declared:
        # (the spec may name more: organisations admitted after genesis, or joining now)
        return Refuse(
            "GenesisMismatch",
            f"the genesis lists organisations {', '.join(sorted(listed - declared))} that the "
            f"spec does not describe (spec: {', '.join(sorted(declared))})",
        )
    return None


def _local_problem(
    spec: ConsortiumSpec, observed: Observed, names: Names, g: Genesis
) -> Refuse | None:
    """Each local organisation's part of the genesis is what this cluster holds."""
    by_name = {o.name: o for o in g.organizations}
    for org in spec.local:
        part = by_name.get(org.name)
        if part is None:
            continue  # joining the running chain: nothing of it is in the genesis
        ca = observed.ca_certs.get(org.name, b"")
        if spec.security.tls and part.ca_cert_pem != ca:
            return Refuse(
                "ForeignCertificate",
                f"the genesis lists another CA for {org.name} than Secret "
                f"{names.ca_secret(org.name)} holds: its nodes' certificates would not be trusted",
            )
        admin = observed.org_admins.get(org.name)
        if admin is None or admin not in part.admins:
            return Refuse(
                "GenesisMismatch",
                f"the genesis does not list the admin key of {org.name} (Secret "
                f"{names.org_admin_secret(org.name)})",
            )
        listed = sorted(v.node_id for v in g.validators if v.organization == org.name)
        held = sorted(
            observed.node_keys[p] for p in validator_pods(org, names) if p in observed.node_keys
        )
        if listed != held:
            return Refuse(
                "GenesisMismatch",
                f"the genesis lists {len(listed)} validator(s) of {org.name} that are not the "
                f"node keys of Secret {names.keys_secret(org.name)} ({len(held)})",
            )
    return None


def _remote_problem(spec: ConsortiumSpec, g: Genesis) -> Refuse | None:
    """Each remote organisation's part of the genesis is what the spec describes of it (so
    the peers our nodes dial are the validators the chain lists)."""
    by_name = {o.name: o for o in g.organizations}
    for org in spec.remote:
        r = org.remote
        assert r is not None, "spec validation: a remote organisation is described with genesisFrom"
        part = by_name.get(org.name)
        if part is None:
            continue  # admitted after genesis: the chain, not the genesis, lists it
        if spec.security.tls and part.ca_cert_pem != r.ca_cert.encode():
            return Refuse(
                "ForeignCertificate",
                f"the genesis lists another CA for {org.name} than "
                f"spec.organizations[{org.name}].remote.caCert",
            )
        if sorted(part.admins) != sorted(bytes.fromhex(k) for k in r.admins):
            return Refuse(
                "GenesisMismatch",
                f"the genesis lists other admin keys for {org.name} than its remote.admins",
            )
        listed = sorted(v.node_id for v in g.validators if v.organization == org.name)
        if listed != sorted(bytes.fromhex(v.node_id) for v in r.validators):
            return Refuse(
                "GenesisMismatch",
                f"the genesis lists other validators for {org.name} than its remote.validators",
            )
    return None
