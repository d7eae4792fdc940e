"""Genesis from a spec: the one genesis builder (operator, `consortium up`, `consortium-node dev`).

Pure and deterministic: the same spec, member names, keys, CA certificates and time give
byte-identical canonical genesis JSON. It builds the node's own `Genesis` (so what any
executor writes is what `Genesis.from_json` loads) and validates it.

One behaviour for every executor (they used to differ):
- funded accounts are exactly `spec.genesis.accounts`, and vouched sender keys exactly
  `spec.genesis.members`: an executor that wants a funded client key (`consortium up`, `dev`)
  puts it into the spec first (`provision.local.with_client`), so the spec says it all;
- the admins are the executor's admin key plus `spec.genesis.admins`, each once;
- params carry `max_block_txs` and `max_tx_bytes` from the spec (spec.parameters where set);
- `time_ms` is the consortium's creation time in whole seconds (`creation_time_ms`): the
  operator passes the Consortium's creationTimestamp, `up`/`dev` the moment they initialise
  the data directory. Re-running the generation for the same consortium gives the same chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..ledger.contracts import CONTRACTS_ENGINE
from ..ledger.genesis import Account, Genesis, Organization
from ..ledger.state import Validator
from .spec import ConsortiumSpec

MemberName = Callable[[str, int], str]  # (organisation, ordinal) -> the member's name


def initial_members(spec: ConsortiumSpec, name: MemberName) -> list[tuple[str, str]]:
    """(member name, organisation) of every genesis validator: ordinals 0..validators-1 of
    each organisation, in spec order."""
    return [
        (name(org.name, i), org.name) for org in spec.organizations for i in range(org.validators)
    ]


def creation_time_ms(epoch_seconds: float) -> int:
    """The genesis time of a consortium created at `epoch_seconds`: whole seconds, in ms (a
    Kubernetes creationTimestamp has second precision; `up` truncates its clock to match)."""
    return int(epoch_seconds) * 1000


@dataclass(frozen=True, slots=True)
class GenesisKeys:
    """The public keys an executor generated for a new chain."""

    validators: Mapping[str, bytes]  # member name -> node public key; covers initial_members
    admin: bytes  # the executor's governance admin key
    ca_certs: Mapping[str, bytes] = field(default_factory=dict)  # organisation -> CA PEM
    # organisation -> its admin keys: governance by organisations (ledger/governance.py);
    # then `admin` and spec.genesis.admins are not genesis admins (the modes are exclusive)
    org_admins: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    # organisation -> member (sender) keys the executor generated for it, vouched for in
    # genesis besides spec.genesis.members (the operator's memberKey)
    org_members: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)


def build(spec: ConsortiumSpec, name: MemberName, keys: GenesisKeys, time_ms: int) -> Genesis:
    """The genesis of a new chain. Raises KeyError naming a genesis validator without a key.
    Every organisation is listed with its CA certificate (absent: none, a plaintext chain)
    and the sender keys spec.genesis.members vouches for; spec.genesis.membership decides
    permissioned mode."""
    validators = []
    for member, org in initial_members(spec, name):
        if member not in keys.validators:
            raise KeyError(f"no key for genesis validator {member}")
        validators.append(Validator(keys.validators[member], org))
    admins = (keys.admin, *(bytes.fromhex(a) for a in spec.genesis.admins))
    if keys.org_admins:
        admins = ()
    g = Genesis(
        chain_id=spec.chain_id,
        time_ms=time_ms,
        validators=tuple(validators),
        admins=tuple(dict.fromkeys(admins)),
        accounts=tuple(
            Account(a.asset, bytes.fromhex(a.account), a.amount) for a in spec.genesis.accounts
        ),
        kv=tuple((e.key.encode(), e.value.encode()) for e in spec.genesis.kv),
        params=spec.genesis_params(),
        consensus=spec.consensus.type,
        organizations=tuple(
            Organization(
                o.name,
                keys.ca_certs.get(o.name, b""),
                tuple(
                    dict.fromkeys(
                        (
                            *(
                                bytes.fromhex(m.key)
                                for m in spec.genesis.members
                                if m.organization == o.name
                            ),
                            *keys.org_members.get(o.name, ()),
                        )
                    )
                ),
                tuple(keys.org_admins.get(o.name, ())),
            )
            for o in spec.organizations
        ),
        permissioned=spec.genesis.membership == "permissioned",
        contracts_engine=CONTRACTS_ENGINE,
    )
    g.validate()
    return g
