"""The specs the local executors run: `consortium up` / `consortium demo` (a manifest plus a
generated, funded client key) and `consortium-node dev` (a one-organisation solo chain).

Both express their conveniences *in the spec* (a funded account, a vouched member), so the one
genesis builder (provision.genesis) needs no executor-specific branch: a Consortium resource
with the same accounts and members gives the operator a byte-identical genesis. Pure."""

from __future__ import annotations

import dataclasses

from .spec import (
    ConsensusSpec,
    ConsortiumSpec,
    GenesisAccount,
    GenesisMember,
    GenesisSpec,
    OrganizationSpec,
    SecuritySpec,
)

CLIENT_ASSET = "coin"
CLIENT_FUNDS = 1_000_000_000  # units of `coin` genesis gives the generated client key
DEV_ORG = "dev"
DEV_NODE = "dev-node"


def with_client(spec: ConsortiumSpec, client: bytes) -> ConsortiumSpec:
    """`spec` plus the generated client key: funded with CLIENT_FUNDS `coin` (listed first)
    and vouched for by the first organisation (so it may transact on a permissioned chain).
    Raises SpecError if the spec already vouches for that key."""
    g = spec.genesis
    out = dataclasses.replace(
        spec,
        genesis=dataclasses.replace(
            g,
            accounts=(GenesisAccount(CLIENT_ASSET, client.hex(), CLIENT_FUNDS), *g.accounts),
            members=(GenesisMember(spec.organizations[0].name, client.hex()), *g.members),
        ),
    )
    out.validate()
    return out


def dev_spec(chain_id: str, client: bytes) -> ConsortiumSpec:
    """`consortium-node dev`: organisation `dev` with one solo validator, plaintext, open
    membership, the client key funded (`with_client`)."""
    spec = ConsortiumSpec(
        chain_id=chain_id,
        organizations=(OrganizationSpec(DEV_ORG, 1),),
        consensus=ConsensusSpec(type="solo"),
        genesis=GenesisSpec(membership="open"),
        security=SecuritySpec(tls=False),
    )
    g = spec.genesis
    spec = dataclasses.replace(
        spec,
        genesis=dataclasses.replace(
            g,
            accounts=(GenesisAccount(CLIENT_ASSET, client.hex(), CLIENT_FUNDS),),
            members=(GenesisMember(DEV_ORG, client.hex()),),
        ),
    )
    spec.validate(allow_solo=True)
    return spec
