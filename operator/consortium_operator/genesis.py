"""The chain's genesis, generated once per consortium from the spec and the node keys.

Pure and deterministic: the same spec, keys, admin key and time give byte-identical canonical
genesis JSON (it reuses the node's own `Genesis` class, so what the operator writes is what
`Genesis.from_json` loads). The time is the Consortium's creationTimestamp, so re-running the
generation for the same object cannot produce a different chain. The operator writes the result
into an immutable ConfigMap and never regenerates it: a chain's genesis is forever."""

from __future__ import annotations

from collections.abc import Mapping

from consortium_node.ledger.genesis import Account, Genesis, Organization
from consortium_node.ledger.state import Validator

from .model import ConsortiumSpec, Names


def initial_members(spec: ConsortiumSpec, names: Names) -> list[tuple[str, str]]:
    """(pod name, organisation) of every genesis validator: ordinals 0..validators-1 of each
    organisation, in spec order."""
    return [
        (names.pod(org.name, i), org.name)
        for org in spec.organizations
        for i in range(org.validators)
    ]


def build(
    spec: ConsortiumSpec,
    names: Names,
    node_keys: Mapping[str, bytes],
    admin_public: bytes,
    time_ms: int,
    ca_certs: Mapping[str, bytes] | None = None,
) -> Genesis:
    """The genesis of a new chain. `node_keys` maps pod name -> public key and must cover
    `initial_members`; raises KeyError naming the pod otherwise. Every organisation is listed
    with its CA certificate (`ca_certs`, PEM; absent: none yet) and the sender keys
    spec.genesis.members vouches for; spec.genesis.membership decides permissioned mode."""
    validators = []
    for pod, org in initial_members(spec, names):
        if pod not in node_keys:
            raise KeyError(f"no key for genesis validator {pod}")
        validators.append(Validator(node_keys[pod], org))
    admins = (admin_public, *(bytes.fromhex(a) for a in spec.genesis.admins))
    g = Genesis(
        chain_id=spec.chain_id,
        time_ms=time_ms,
        validators=tuple(validators),
        admins=tuple(dict.fromkeys(admins)),
        accounts=tuple(
            Account(a.asset, bytes.fromhex(a.account), a.amount) for a in spec.genesis.accounts
        ),
        kv=tuple((e.key.encode(), e.value.encode()) for e in spec.genesis.kv),
        params={
            "max_block_txs": spec.consensus.max_block_txs,
            "max_tx_bytes": spec.genesis.max_tx_bytes,
        },
        consensus=spec.consensus.type,
        organizations=tuple(
            Organization(
                o.name,
                (ca_certs or {}).get(o.name, b""),
                tuple(
                    bytes.fromhex(m.key) for m in spec.genesis.members if m.organization == o.name
                ),
            )
            for o in spec.organizations
        ),
        permissioned=spec.genesis.membership == "permissioned",
    )
    g.validate()
    return g


def canonical_json(g: Genesis) -> str:
    return g.canonical().decode()
