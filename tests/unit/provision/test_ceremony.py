"""provision/ceremony.py: the federation genesis ceremony's files — determinism of assemble
over every order of contributions (a seeded shuffle; hypothesis is not a dependency) and one
test per refusal (issue 15)."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from consortium_node import pki
from consortium_node.crypto import Ed25519Key
from consortium_node.ledger.genesis import Genesis
from consortium_node.provision import ceremony as cer

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ORGS = ("alpha", "beta", "gamma")
SEED = 15


def _key(rng: random.Random) -> Ed25519Key:
    return Ed25519Key(rng.randbytes(32))


class Org:
    def __init__(self, name: str, rng: random.Random, validators: int = 1) -> None:
        self.name = name
        self.admin = _key(rng)
        self.member = _key(rng)
        self.ca = pki.new_ca(name, NOW, pki.new_private_key(), rng.getrandbits(64) + 1).cert_pem
        self.validators = [
            cer.Validator(f"{name}-{i}", _key(rng).public, f"127.0.0.1:{7000 + i}")
            for i in range(validators)
        ]

    def contribution(self, c: bytes, **over: object) -> bytes:
        args: dict[str, object] = {
            "ca_pem": self.ca,
            "admins": [self.admin.public],
            "members": [self.member.public],
            "validators": self.validators,
            "signer": self.admin,
        }
        args.update(over)
        return cer.contribute(c, self.name, **args)  # type: ignore[arg-type]


World = tuple[bytes, dict[str, Org], dict[str, bytes]]


@pytest.fixture(scope="module")
def world() -> World:
    rng = random.Random(SEED)
    c = cer.init("fed-chain", ORGS, {"type": "raft"}, {"maxTxBytes": 65536}, 1_767_225_600)
    orgs = {n: Org(n, rng, validators=1 + i) for i, n in enumerate(ORGS)}
    contribs = {n: o.contribution(c) for n, o in orgs.items()}
    return c, orgs, contribs


def _resign(doc: dict[str, object], key: Ed25519Key) -> bytes:
    body = {k: v for k, v in doc.items() if k != "signature"}
    sig = key.sign(cer.canonical(body))
    return cer.canonical({**body, "signature": {"key": key.public.hex(), "sig": sig.hex()}})


def test_contributions_in_any_order_give_the_same_genesis_bytes(world: World) -> None:
    c, _orgs, contribs = world
    reference = cer.assemble(c, [contribs[o] for o in ORGS])
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    items = list(contribs.values())
    orders = set()
    for _ in range(200):
        rng.shuffle(items)
        orders.add(tuple(items))
        assert cer.assemble(c, list(items)) == reference
    assert len(orders) == 6  # every permutation of three was tried
    g = Genesis.from_json(reference)
    assert g.canonical() == reference
    assert [o.name for o in g.organizations] == list(ORGS)
    assert len(g.validators) == 1 + 2 + 3 and g.consensus == "raft"
    assert g.params["max_tx_bytes"] == 65536 and g.time_ms == 1_767_225_600_000


def test_genesis_lists_each_organisation_as_it_contributed(world: World) -> None:
    c, orgs, contribs = world
    g = Genesis.from_json(cer.assemble(c, list(contribs.values())))
    for o in g.organizations:
        assert o.admins == (orgs[o.name].admin.public,)
        assert o.members == (orgs[o.name].member.public,)
        assert o.ca_cert_pem == orgs[o.name].ca
        mine = {v.node_id for v in g.validators if v.organization == o.name}
        assert mine == {v.node_id for v in orgs[o.name].validators}
    assert g.governed_by_organizations and not g.admins


def test_sign_and_verify_round_trip(world: World) -> None:
    c, orgs, contribs = world
    g = cer.assemble(c, list(contribs.values()))
    sigs = [cer.sign(g, n, contribs[n], orgs[n].admin, ceremony=c) for n in ORGS]
    assert cer.verify(g, sigs, expected_sha256=cer.sha256hex(g)).chain_id == "fed-chain"
    assert json.loads(sigs[0])["genesis"] == cer.sha256hex(g)


# --------------------------------------------------------------------------- refusals


def test_refuses_a_contribution_with_a_bad_signature(world: World) -> None:
    c, _orgs, contribs = world
    doc = json.loads(contribs["beta"])
    doc["members"] = []  # changed after signing
    with pytest.raises(cer.CeremonyError, match="bad signature"):
        cer.assemble(c, [contribs["alpha"], cer.canonical(doc), contribs["gamma"]])


def test_refuses_a_contribution_signed_by_a_key_that_is_not_its_admin(world: World) -> None:
    c, orgs, contribs = world
    doc = json.loads(contribs["beta"])
    forged = _resign(doc, orgs["alpha"].admin)  # alpha's admin signs beta's contribution
    with pytest.raises(cer.CeremonyError, match="not one of its admins"):
        cer.parse_contribution(forged, c)
    with pytest.raises(cer.CeremonyError, match="not one of its admins"):
        orgs["beta"].contribution(c, signer=orgs["alpha"].admin)


def test_refuses_a_contribution_for_another_ceremony(world: World) -> None:
    c, orgs, contribs = world
    other = cer.init("other-chain", ORGS, {"type": "raft"}, {}, 0)
    foreign = orgs["beta"].contribution(other)
    with pytest.raises(cer.CeremonyError, match="another ceremony"):
        cer.assemble(c, [contribs["alpha"], foreign, contribs["gamma"]])


def test_refuses_an_organisation_missing_or_twice_or_unknown(world: World) -> None:
    c, _orgs, contribs = world
    with pytest.raises(cer.CeremonyError, match="no contribution from gamma"):
        cer.assemble(c, [contribs["alpha"], contribs["beta"]])
    with pytest.raises(cer.CeremonyError, match="beta contributed twice"):
        cer.assemble(c, [contribs["alpha"], contribs["beta"], contribs["beta"], contribs["gamma"]])
    stranger = Org("delta", random.Random(SEED + 1))
    with pytest.raises(cer.CeremonyError, match="delta is not an organisation"):
        stranger.contribution(c)


def test_an_organisation_joining_later_contributes_for_the_chain_but_never_to_its_genesis(
    world: World,
) -> None:
    c, orgs, contribs = world
    joiner = Org("delta", random.Random(SEED + 1))
    joined = joiner.contribution(c, joining=True)
    got = cer.parse_contribution(joined, c, joining=True)  # what the members admit it with
    assert got.organization == "delta" and got.admins == (joiner.admin.public,)
    assert got.ceremony == cer.parse_ceremony(c).id
    with pytest.raises(cer.CeremonyError, match="delta is not an organisation"):
        cer.parse_contribution(joined, c)
    with pytest.raises(cer.CeremonyError, match="delta is not an organisation"):
        cer.assemble(c, [*contribs.values(), joined])
    # a ceremony organisation contributes to the genesis; it does not "join"
    with pytest.raises(cer.CeremonyError, match="contributes to the genesis instead"):
        orgs["alpha"].contribution(c, joining=True)


def test_refuses_a_node_id_twice(world: World) -> None:
    c, orgs, contribs = world
    stolen = orgs["alpha"].validators[0]
    twice = orgs["beta"].contribution(
        c, validators=[*orgs["beta"].validators, cer.Validator("beta-x", stolen.node_id, "h:1")]
    )
    with pytest.raises(cer.CeremonyError, match="listed by alpha and beta"):
        cer.assemble(c, [contribs["alpha"], twice, contribs["gamma"]])
    with pytest.raises(cer.CeremonyError, match="listed twice"):
        orgs["beta"].contribution(c, validators=[stolen, cer.Validator("b", stolen.node_id, "h:2")])


def test_refuses_an_invalid_consortium(world: World) -> None:
    _c, orgs, _contribs = world
    bft = cer.init("fed-chain", ORGS, {"type": "bft"}, {}, 0)
    few = [o.contribution(bft, validators=o.validators[:1]) for o in orgs.values()]
    with pytest.raises(cer.CeremonyError, match="bft consensus needs at least 4"):
        cer.assemble(bft, few)
    with pytest.raises(cer.CeremonyError, match=r"consensus\.type"):
        cer.init("fed-chain", ORGS, {"type": "pow"}, {}, 0)
    with pytest.raises(cer.CeremonyError, match="admins and members come from"):
        cer.init("fed-chain", ORGS, {}, {"admins": []}, 0)


def test_refuses_a_ceremony_file_edited_by_hand(world: World) -> None:
    c, _orgs, _contribs = world
    with pytest.raises(cer.CeremonyError, match="canonical"):
        cer.parse_ceremony(json.dumps(json.loads(c), indent=1).encode())


def test_sign_refuses_a_genesis_that_changed_the_organisations_part(world: World) -> None:
    c, orgs, contribs = world
    intruder = _key(random.Random(SEED + 2))
    # the assembler swaps beta's member key for its own: beta's own check finds it
    swapped = orgs["beta"].contribution(c, members=[intruder.public])
    g = cer.assemble(c, [contribs["alpha"], swapped, contribs["gamma"]])
    with pytest.raises(cer.CeremonyError, match="other member keys for beta"):
        cer.sign(g, "beta", contribs["beta"], orgs["beta"].admin)
    assert cer.sign(g, "alpha", contribs["alpha"], orgs["alpha"].admin)  # alpha's part is fine
    # another validator set for gamma
    fewer = orgs["gamma"].contribution(c, validators=orgs["gamma"].validators[:2])
    g2 = cer.assemble(c, [contribs["alpha"], contribs["beta"], fewer])
    with pytest.raises(cer.CeremonyError, match="other validators for gamma"):
        cer.sign(g2, "gamma", contribs["gamma"], orgs["gamma"].admin)
    with pytest.raises(cer.CeremonyError, match="not an admin of alpha"):
        cer.sign(g, "alpha", contribs["alpha"], orgs["beta"].admin)
    other = cer.init("fed-chain", ORGS, {"type": "raft"}, {}, 99)
    with pytest.raises(cer.CeremonyError, match="made for another ceremony"):
        cer.sign(g, "alpha", contribs["alpha"], orgs["alpha"].admin, ceremony=other)


def test_verify_refuses_a_genesis_hash_mismatch(world: World) -> None:
    c, orgs, contribs = world
    g = cer.assemble(c, list(contribs.values()))
    sigs = [cer.sign(g, n, contribs[n], orgs[n].admin) for n in ORGS]
    with pytest.raises(cer.CeremonyError, match="the configuration expects"):
        cer.verify(g, sigs, expected_sha256="00" * 32)
    tampered = Genesis.from_json(g)
    doc = tampered.to_dict()
    doc["time_ms"] += 1000
    t = Genesis.from_dict(doc).canonical()
    with pytest.raises(cer.CeremonyError, match="for another genesis"):
        cer.verify(t, sigs)
    with pytest.raises(cer.CeremonyError, match="canonical"):
        cer.verify(json.dumps(json.loads(g), indent=1).encode(), sigs)


def test_verify_refuses_a_missing_foreign_or_broken_signature(world: World) -> None:
    c, orgs, contribs = world
    g = cer.assemble(c, list(contribs.values()))
    sigs = {n: cer.sign(g, n, contribs[n], orgs[n].admin) for n in ORGS}
    with pytest.raises(cer.CeremonyError, match="not signed by gamma"):
        cer.verify(g, [sigs["alpha"], sigs["beta"]])
    # beta's admin signs in gamma's name: an organisation signs only for itself
    digest = cer.sha256hex(g)
    body = cer.canonical({"genesis": digest, "organization": "gamma"})
    forged = cer.canonical(
        {
            "genesis": digest,
            "organization": "gamma",
            "key": orgs["beta"].admin.public.hex(),
            "sig": orgs["beta"].admin.sign(body).hex(),
        }
    )
    with pytest.raises(cer.CeremonyError, match="for gamma is by an admin of beta"):
        cer.verify(g, [sigs["alpha"], sigs["beta"], forged])
    stranger = _key(random.Random(SEED + 3))
    foreign = cer.canonical(
        {
            "genesis": digest,
            "organization": "gamma",
            "key": stranger.public.hex(),
            "sig": stranger.sign(body).hex(),
        }
    )
    with pytest.raises(cer.CeremonyError, match="a key that is no admin"):
        cer.verify(g, [sigs["alpha"], sigs["beta"], foreign])
    unknown = cer.canonical({**json.loads(sigs["gamma"]), "organization": "delta"})
    with pytest.raises(cer.CeremonyError, match="delta, not in this genesis"):
        cer.verify(g, [*sigs.values(), unknown])
    broken = json.loads(sigs["gamma"])
    broken["sig"] = ("0" if broken["sig"][0] != "0" else "1") + broken["sig"][1:]
    with pytest.raises(cer.CeremonyError, match="gamma does not verify"):
        cer.verify(g, [sigs["alpha"], sigs["beta"], cer.canonical(broken)])


def test_sign_with_the_ceremony_refuses_a_genesis_edited_beyond_the_parts(world: World) -> None:
    c, orgs, contribs = world
    g = cer.assemble(c, list(contribs.values()))
    doc = Genesis.from_json(g).to_dict()
    thief = _key(random.Random(SEED + 4)).public.hex()
    doc["accounts"] = [{"asset": "coin", "account": thief, "amount": 10**9}]
    edited = Genesis.from_dict(doc).canonical()
    # every organisation's own part is untouched, so the part check alone signs it ...
    assert cer.own_part_problem(edited, contribs["alpha"]) is None
    # ... but against the ceremony it is another chain
    with pytest.raises(cer.CeremonyError, match="not this ceremony's chain"):
        cer.sign(edited, "alpha", contribs["alpha"], orgs["alpha"].admin, ceremony=c)
    assert cer.ceremony_problem(g, c) is None
    later = cer.init("fed-chain", ORGS, {"type": "raft"}, {"maxTxBytes": 65536}, 1_767_225_601)
    assert "not this ceremony's chain" in str(cer.ceremony_problem(g, later))
