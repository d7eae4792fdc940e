"""model: parsing, defaults, validation messages, naming, fingerprints; genesis and pki
determinism."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from consortium_node.ledger.genesis import Genesis
from consortium_operator import genesis, pki
from consortium_operator.model import ConsortiumSpec, Names, SpecError
from consortium_operator.settings import Settings

pytestmark = pytest.mark.unit


def base(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "chainId": "chain-1",
        "organizations": [{"name": "acme", "validators": 2}, {"name": "beta", "validators": 2}],
    }
    d.update(over)
    return d


def test_defaults() -> None:
    s = ConsortiumSpec.parse(base())
    assert s.consensus.type == "bft" and s.consensus.max_block_txs == 2000
    assert s.consensus.election_ticks == 50 and s.consensus.heartbeat_ticks == 5
    assert s.image is None and s.image_pull_policy == "IfNotPresent"
    assert s.deletion_policy == "Retain" and s.genesis.max_tx_bytes == 131072
    assert (
        s.organizations[0].storage.size == "1Gi" and s.organizations[0].storage.class_name is None
    )
    assert s.total_validators == 4


def test_full_spec_parses() -> None:
    s = ConsortiumSpec.parse(
        base(
            consensus={
                "type": "raft",
                "tickMs": 5,
                "electionTimeoutMs": 1000,
                "heartbeatIntervalMs": 100,
            },
            organizations=[
                {
                    "name": "acme",
                    "validators": 3,
                    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
                    "storage": {"size": "5Gi", "className": "fast"},
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                }
            ],
            image="consortium/node:v2",
            genesis={
                "accounts": [{"asset": "coin", "account": "ab" * 32, "amount": 5}],
                "kv": [{"key": "k", "value": "v"}],
                "admins": ["cd" * 32],
            },
            deletionPolicy="Delete",
        )
    )
    org = s.organizations[0]
    assert org.storage.class_name == "fast" and org.node_selector == {"disk": "ssd"}
    assert org.tolerations[0].operator == "Exists"
    assert s.consensus.election_ticks == 200 and s.consensus.heartbeat_ticks == 20


BAD = [
    (base(chainId="Bad Chain"), "chainId"),
    (base(chainId="-x"), "chainId"),
    (
        base(organizations=[{"name": "a", "validators": 1}, {"name": "a", "validators": 3}]),
        "unique",
    ),
    (base(organizations=[{"name": "a", "validators": 3}]), "at least 4 validators"),
    (
        base(organizations=[{"name": "a", "validators": 0}], consensus={"type": "raft"}),
        "at least one validator",
    ),
    (base(organizations=[{"name": "Acme", "validators": 4}]), "organizations[0].name"),
    (
        base(genesis={"accounts": [{"asset": "coin", "account": "ab" * 32, "amount": -1}]}),
        "negative",
    ),
    (base(genesis={"accounts": [{"asset": "coin", "account": "xyz", "amount": 1}]}), "account"),
    (base(genesis={"admins": ["nothex"]}), "admins[0]"),
    (base(consensus={"type": "pbft"}), "spec.consensus.type"),
    (base(consensus={"heartbeatIntervalMs": 400}), "electionTimeoutMs"),
    (base(imagePullPolicy="Sometimes"), "imagePullPolicy"),
    (base(deletionPolicy="Keep"), "deletionPolicy"),
    (base(organizations=[{"name": "a", "validators": "4"}]), "must be an integer"),
    (base(organizations=[{"name": "a"}]), "validators is required"),
    (base(surprise=1), "unknown fields: surprise"),
    ({"organizations": [{"name": "a", "validators": 4}]}, "spec.chainId is required"),
]


@pytest.mark.parametrize(("raw", "needle"), BAD, ids=[b[1] for b in BAD])
def test_invalid_specs_name_the_problem(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=None) as e:
        ConsortiumSpec.parse(raw)
    assert needle in str(e.value)


def test_fingerprint_tracks_the_pod_template_only() -> None:
    a = ConsortiumSpec.parse(base())
    org = a.organizations[0]
    fp = a.pod_fingerprint(org, "img:1")
    assert fp == ConsortiumSpec.parse(base()).pod_fingerprint(org, "img:1")
    assert fp != a.pod_fingerprint(org, "img:2")  # default image changed
    b = ConsortiumSpec.parse(base(image="img:3"))
    assert b.pod_fingerprint(b.organizations[0], "img:1") != fp
    # scaling does not change the template
    c = ConsortiumSpec.parse(
        base(organizations=[{"name": "acme", "validators": 5}, {"name": "beta", "validators": 2}])
    )
    assert c.pod_fingerprint(c.organizations[0], "img:1") == fp


def test_names() -> None:
    n = Names("demo")
    assert n.pod("acme", 3) == "demo-acme-3" and n.statefulset("acme") == "demo-acme"
    assert n.parse_pod("demo-acme-3", ("acme", "acme-x")) == ("acme", 3)
    assert n.parse_pod("demo-acme-x-1", ("acme", "acme-x")) == ("acme-x", 1)
    assert n.parse_pod("other-acme-1", ("acme",)) is None
    labels = n.labels("validator", "acme")
    assert labels["app.kubernetes.io/instance"] == "demo"
    assert set(n.selector().items()) <= set(labels.items())


def test_settings_from_env() -> None:
    s = Settings.from_env({"CONSORTIUM_NODE_IMAGE": "x:1", "CONSORTIUM_MAX_LAG": "5"})
    assert s.node_image == "x:1" and s.max_lag == 5
    with pytest.raises(ValueError, match="CONSORTIUM_NODE_ADDRESS"):
        Settings.from_env({"CONSORTIUM_NODE_ADDRESS": "magic"})


# --------------------------------------------------------------------------- pki + genesis


def seeded(seed: int) -> pki.Entropy:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def test_keys_are_deterministic_given_entropy_and_round_trip() -> None:
    a, b = pki.new_key(seeded(1)), pki.new_key(seeded(1))
    assert a.public == b.public and pki.new_key(seeded(2)).public != a.public
    text = pki.key_file(a)
    assert set(json.loads(text)) == {"public_key", "private_key"}
    assert pki.public_key_of(text, "t") == a.public
    assert pki.public_key_hint(text) == a.public.hex()[:16]


def test_bad_key_file_message_has_no_key_material() -> None:
    text = json.dumps({"public_key": "00" * 32, "private_key": "11" * 32})
    with pytest.raises(pki.KeyError_) as e:
        pki.public_key_of(text, "Secret x")
    assert "11" * 8 not in str(e.value)


def _genesis(spec: ConsortiumSpec, seed: int = 3) -> Genesis:
    ent = seeded(seed)
    n = Names("demo")
    keys = {pod: pki.new_key(ent).public for pod, _ in genesis.initial_members(spec, n)}
    return genesis.build(spec, n, keys, pki.new_key(ent).public, 1_700_000_000_000)


def test_genesis_is_deterministic_and_loads_in_the_node() -> None:
    spec = ConsortiumSpec.parse(
        base(
            genesis={
                "accounts": [{"asset": "coin", "account": "ab" * 32, "amount": 7}],
                "kv": [{"key": "name", "value": "Demo"}],
                "admins": ["cd" * 32],
            }
        )
    )
    g1, g2 = _genesis(spec), _genesis(spec)
    assert g1.canonical() == g2.canonical() and g1.hash == g2.hash
    assert _genesis(spec, seed=4).hash != g1.hash
    loaded = Genesis.from_json(genesis.canonical_json(g1))
    assert loaded.hash == g1.hash
    assert loaded.consensus == "bft" and len(loaded.validators) == 4
    assert [v.organization for v in g1.validators] == ["acme", "acme", "beta", "beta"]
    assert loaded.params == {"max_block_txs": 2000, "max_tx_bytes": 131072}
    assert loaded.kv == ((b"name", b"Demo"),)
    assert bytes.fromhex("cd" * 32) in loaded.admins and len(loaded.admins) == 2


def test_genesis_needs_every_initial_key() -> None:
    spec = ConsortiumSpec.parse(base())
    with pytest.raises(KeyError, match="demo-acme-1"):
        genesis.build(spec, Names("demo"), {"demo-acme-0": b"\x01" * 32}, b"\x02" * 32, 0)
