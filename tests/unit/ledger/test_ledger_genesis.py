"""Genesis (ledger/genesis.py): canonical JSON, hash stability, validation, initial state."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from consortium_node.ledger.errors import DecodeError
from consortium_node.ledger.genesis import Account, Genesis
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    ADMINS_KEY,
    VSET_LATEST_KEY,
    Validator,
    balance_key,
    decode_validators,
    issuer_key,
    kv_key,
    latest_validators,
    param,
    param_key,
    u64,
    vset_key,
)
from consortium_node.ledger.tx import MAX_AMOUNT

pytestmark = pytest.mark.unit

V = [bytes([0x20 + i]) * 32 for i in range(6)]
A1, A2 = b"\xa1" * 32, b"\xa2" * 32


def sample(**kw: Any) -> Genesis:
    base: dict[str, Any] = {
        "chain_id": "golden-chain",
        "time_ms": 1_700_000_000_000,
        "validators": (
            Validator(V[2], "org-c"),
            Validator(V[0], "org-a"),
            Validator(V[1], "org-b"),
            Validator(V[3], "org-d"),
        ),
        "admins": (A2, A1),
        "accounts": (Account("USD", A1, 1000), Account("EUR", A2, 5), Account("USD", A1, 1)),
        "kv": ((b"hello", b"world"), (b"\x00bin", b"\xff")),
        "params": {"max_tx_bytes": 4096, "max_block_txs": 10},
        "consensus": "bft",
    }
    base.update(kw)
    return Genesis(**base)


def base_dict(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "chain_id": "c",
        "validators": [{"node_id": V[0].hex(), "organization": "o"}],
    }
    d.update(kw)
    return d


# -- canonical form and hash ----------------------------------------------------------------


def test_canonical_json_shape() -> None:
    g = sample()
    c = g.canonical()
    d = json.loads(c)
    assert c == json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in c.replace(b'"org-', b"")  # compact separators
    assert [v["node_id"] for v in d["validators"]] == sorted(v.hex() for v in V[:4])
    assert d["admins"] == [A1.hex(), A2.hex()]
    assert list(d["params"]) == ["max_block_txs", "max_tx_bytes"]
    assert d["consensus"] == "bft" and d["chain_id"] == "golden-chain"
    assert g.hash == hashlib.sha256(c).digest()


def test_round_trip_through_json() -> None:
    g = sample()
    back = Genesis.from_json(g.canonical())
    assert back.canonical() == g.canonical()
    assert back.hash == g.hash
    assert back.writes() == g.writes()
    assert Genesis.from_json(g.canonical().decode()).hash == g.hash  # str input too
    assert Genesis.from_dict(g.to_dict()).hash == g.hash
    # a re-canonicalised genesis is a fixed point
    assert Genesis.from_json(back.canonical()) == back


def test_hash_is_pinned() -> None:
    """The genesis hash is block 1's prev_hash: a change of the canonical form forks every
    chain. This golden value must only change together with a deliberate format version bump."""
    assert sample().hash.hex() == GOLDEN_HASH


# Changed deliberately (issue 7): the canonical form gained `organizations` (each with its CA
# certificate and vouched member keys) and `permissioned`. Chains created before cannot be
# loaded by this version (pre-release format; no migration).
GOLDEN_HASH = "e285518601dff9e1204f3174a232579035f42399ff9349b824abc8366ffb1329"


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed={s}")
def test_hash_ignores_input_order_of_sets(seed: int) -> None:
    rng = random.Random(seed)
    g = sample()
    vals, admins = list(g.validators), list(g.admins)
    rng.shuffle(vals)
    rng.shuffle(admins)
    params = list(g.params.items())
    rng.shuffle(params)
    h = sample(validators=tuple(vals), admins=tuple(admins), params=dict(params))
    assert h.hash == g.hash


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": "other"},
        {"time_ms": 1},
        {"consensus": "raft"},
        {"admins": (A1,)},
        {"accounts": ()},
        {"kv": ()},
        {"params": {}},
        {
            "validators": (
                Validator(V[0], "x"),
                Validator(V[1], "b"),
                Validator(V[2], "c"),
                Validator(V[3], "d"),
            )
        },
    ],
    ids=lambda c: next(iter(c)),
)
def test_hash_covers_every_field(change: dict[str, Any]) -> None:
    assert sample(**change).hash != sample().hash


# -- validation -------------------------------------------------------------------------------


def vals(n: int) -> tuple[Validator, ...]:
    return tuple(Validator(V[i], f"o{i}") for i in range(n))


@pytest.mark.parametrize(
    ("consensus", "n", "ok"),
    [
        ("solo", 1, True),
        ("solo", 2, False),
        ("raft", 1, True),
        ("raft", 3, True),
        ("bft", 1, False),
        ("bft", 3, False),
        ("bft", 4, True),
        ("bft", 6, True),
    ],
)
def test_validator_count_per_consensus(consensus: str, n: int, ok: bool) -> None:
    g = Genesis("c", 0, vals(n), consensus=consensus)
    if ok:
        g.validate()
        assert Genesis.from_json(g.canonical()).hash == g.hash
    else:
        with pytest.raises(DecodeError, match=r"solo|bft"):
            g.validate()
        with pytest.raises(DecodeError):
            Genesis.from_json(g.canonical())


@pytest.mark.parametrize(
    ("genesis", "match"),
    [
        (Genesis("c", 0, ()), "at least one validator"),
        (
            Genesis("c", 0, (Validator(V[0], "a"), Validator(V[0], "b")), consensus="raft"),
            "distinct",
        ),
        (Genesis("c", 0, (Validator(b"short", "a"),)), "32-byte"),
        (Genesis("c", 0, vals(1), consensus="pbft"), "unknown consensus"),
        (Genesis("c", 0, vals(1), accounts=(Account("bad name", A1, 1),)), "account"),
        (Genesis("c", 0, vals(1), accounts=(Account("USD", b"x" * 31, 1),)), "account"),
        (Genesis("c", 0, vals(1), accounts=(Account("USD", A1, -1),)), "account"),
        (Genesis("c", 0, vals(1), accounts=(Account("USD", A1, MAX_AMOUNT + 1),)), "account"),
        (Genesis("c", 0, vals(1), params={"nope": 1}), "parameter"),
        (Genesis("c", 0, vals(1), params={"max_block_txs": 0}), "parameter"),
        (Genesis("c", 0, vals(1), params={"max_tx_bytes": 10**9}), "parameter"),
    ],
    ids=[
        "no-validators",
        "duplicate-ids",
        "short-id",
        "unknown-consensus",
        "asset-name",
        "short-account",
        "negative-amount",
        "huge-amount",
        "unknown-param",
        "param-low",
        "param-high",
    ],
)
def test_validate_errors(genesis: Genesis, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        genesis.validate()
    with pytest.raises(DecodeError):
        Genesis.from_dict(genesis.to_dict())


def test_zero_amount_and_bounds_are_valid() -> None:
    Genesis(
        "c", 0, vals(1), accounts=(Account("U", A1, 0), Account("U", A2, MAX_AMOUNT))
    ).validate()


@pytest.mark.parametrize(
    "text",
    [b"", b"not json", b"[1, 2]", b'"string"', b"null", b"{"],
    ids=["empty", "garbage", "list", "string", "null", "open"],
)
def test_from_json_rejects_non_objects(text: bytes) -> None:
    with pytest.raises(DecodeError):
        Genesis.from_json(text)


@pytest.mark.parametrize(
    "d",
    [
        {"validators": base_dict()["validators"]},
        {"chain_id": "c"},
        base_dict(validators=[{"node_id": "zz" * 32, "organization": "o"}]),
        base_dict(validators=[{"organization": "o"}]),
        base_dict(validators=5),
        base_dict(validators=["x"]),
        base_dict(admins=["nothex"]),
        base_dict(accounts=[{"asset": "U", "account": A1.hex()}]),
        base_dict(accounts=[{"asset": "U", "account": A1.hex(), "amount": "many"}]),
        base_dict(kv=[{"key": "00"}]),
        base_dict(time_ms="soon"),
        base_dict(params={"max_block_txs": "lots"}),
    ],
    ids=[
        "no-chain-id",
        "no-validators",
        "bad-hex-id",
        "no-node-id",
        "validators-int",
        "validators-str",
        "admin-hex",
        "account-no-amount",
        "account-amount-str",
        "kv-no-value",
        "time-str",
        "param-str",
    ],
)
def test_from_dict_errors_are_decode_errors(d: dict[str, Any]) -> None:
    with pytest.raises(DecodeError, match="genesis"):
        Genesis.from_dict(d)


@pytest.mark.parametrize("params", [[], None, "x", 5], ids=["list", "null", "str", "int"])
def test_non_object_params_are_decode_errors(params: object) -> None:
    """BUG: `d.get("params", {}).items()` raises AttributeError for a non-object `params`, which
    `from_dict` does not catch (it catches KeyError/TypeError/ValueError only)."""
    with pytest.raises(DecodeError):
        Genesis.from_dict(base_dict(params=params))


@pytest.mark.parametrize("case", ["account-sum", "long-organization"])
def test_validate_rejects_what_writes_cannot_encode(case: str) -> None:
    """BUG: validate() checks each account amount but not the per-(asset, account) sum that
    writes() stores (three MAX_AMOUNT entries overflow u64 -> struct.error; two exceed the
    MAX_AMOUNT balance cap), nor the organization length that encode_validators stores in one
    byte (> 255 bytes -> ValueError). A genesis that validates must produce its state."""
    if case == "account-sum":
        g = Genesis("c", 0, vals(1), accounts=(Account("U", A1, MAX_AMOUNT),) * 3)
    else:
        g = Genesis("c", 0, (Validator(V[0], "o" * 256),))
    try:
        g.validate()
    except DecodeError:
        return
    g.writes()  # must not raise if validate() accepted it


# -- initial state ------------------------------------------------------------------------------


def test_writes() -> None:
    g = sample()
    w = g.writes()
    assert all(v is not None for v in w.values())
    st = {k: v for k, v in w.items() if v is not None}
    assert decode_validators(st[vset_key(1)]) == tuple(
        sorted(g.validators, key=lambda v: v.node_id)
    )
    assert u64(st[VSET_LATEST_KEY]) == 1
    assert latest_validators(st) == (1, decode_validators(st[vset_key(1)]))
    assert st[ADMINS_KEY] == A1 + A2  # sorted, concatenated
    assert u64(st[balance_key("USD", A1)]) == 1001  # duplicate entries add up
    assert u64(st[balance_key("EUR", A2)]) == 5
    assert st[issuer_key("USD")] == bytes(32)  # genesis-minted: nobody can issue more
    assert st[kv_key(b"hello")] == b"world"
    assert st[kv_key(b"\x00bin")] == b"\xff"
    assert st[param_key("max_tx_bytes")] == b"4096"
    assert param(st, "max_block_txs") == 10


def test_minimal_writes_have_no_admins() -> None:
    g = Genesis("c", 0, vals(1))
    w = g.writes()
    assert ADMINS_KEY not in w
    assert set(w) == {vset_key(1), VSET_LATEST_KEY}


def test_lthash_is_the_hash_of_the_writes() -> None:
    g = sample()
    h = LtHash()
    for k, v in g.writes().items():
        assert v is not None
        h.add(k, v)
    assert g.lthash().digest() == h.digest()
    assert g.lthash().digest() != Genesis("c", 0, vals(1)).lthash().digest()
