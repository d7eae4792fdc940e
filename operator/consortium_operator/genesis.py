"""The chain's genesis as the operator makes it: the provisioning core's one builder
(consortium_node.provision.genesis) with the operator's naming (pods) and time (the
Consortium's creationTimestamp, so re-running the generation for the same object cannot
produce a different chain). The operator writes the result into an immutable ConfigMap and
never regenerates it: a chain's genesis is forever. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consortium_node.ledger.genesis import Genesis
from consortium_node.provision import genesis as core

from .model import ConsortiumSpec, Names


def initial_members(spec: ConsortiumSpec, names: Names) -> list[tuple[str, str]]:
    """(pod name, organisation) of every genesis validator, in spec order."""
    return core.initial_members(spec, names.pod)


def build(
    spec: ConsortiumSpec,
    names: Names,
    node_keys: Mapping[str, bytes],
    admin_public: bytes,
    time_ms: int,
    ca_certs: Mapping[str, bytes] | None = None,
) -> Genesis:
    """The genesis of a legacy single-admin chain (`admin_public` the one admin); `node_keys`
    maps pod name -> public key and must cover `initial_members` (KeyError naming the pod
    otherwise)."""
    keys = core.GenesisKeys(dict(node_keys), admin_public, dict(ca_certs or {}))
    return core.build(spec, names.pod, keys, time_ms)


@dataclass(frozen=True, slots=True)
class OrgKeys:
    """Per organisation: its own admin key and (memberKey) its member key."""

    admins: Mapping[str, bytes]
    members: Mapping[str, bytes] = field(default_factory=dict)


def build_governed(
    spec: ConsortiumSpec,
    names: Names,
    node_keys: Mapping[str, bytes],
    org_keys: OrgKeys,
    time_ms: int,
    ca_certs: Mapping[str, bytes] | None = None,
) -> Genesis:
    """The genesis of a chain governed by its organisations (what the operator makes): each
    organisation lists its own admin key and there is no consortium admin; an organisation's
    member key is vouched for from the first block. `node_keys` as for `build`."""
    keys = core.GenesisKeys(
        dict(node_keys),
        b"",
        dict(ca_certs or {}),
        {o: (k,) for o, k in org_keys.admins.items()},
        {o: (k,) for o, k in org_keys.members.items()},
    )
    return core.build(spec, names.pod, keys, time_ms)


def canonical_json(g: Genesis) -> str:
    return g.canonical().decode()
