"""The replicated state machine (ledger/state.py) executed against a plain dict.

Every block goes through `Chain.run`, which applies the block's writes to the dict and checks
that the incremental state root equals an LtHash recomputed from scratch over the whole final
state — so every scenario below also tests the state-root bookkeeping."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from consortium_node.ledger.errors import DecodeError, Reject, TxRejected
from consortium_node.ledger.genesis import Account, Genesis
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    ADMINS_KEY,
    INSUFFICIENT_BALANCE,
    INVALID,
    NOT_FOUND,
    OK,
    PARAMS,
    UNAUTHORIZED,
    VALIDATOR_CHANGE_DELAY,
    VSET_LATEST_KEY,
    BlockResult,
    Overlay,
    Validator,
    balance_key,
    check_nonces,
    decode_validators,
    encode_validators,
    execute_block,
    issuer_key,
    kv_key,
    latest_validators,
    nonce_key,
    pack_u64,
    param,
    preflight,
    u64,
    validators_hash,
    vset_key,
)
from consortium_node.ledger.tx import (
    MAX_AMOUNT,
    AddValidator,
    AssetIssue,
    AssetTransfer,
    KvDelete,
    KvPut,
    Payload,
    RemoveValidator,
    SetParam,
    Tx,
)

pytestmark = pytest.mark.unit

CHAIN = "state-test"
ADMIN = b"\xad" * 32
ALICE, BOB, CAROL, DAVE = (bytes([c]) * 32 for c in b"ABCD")
V1, V2, V3 = (bytes([0x10 + i]) * 32 for i in range(3))


def make_tx(sender: bytes, nonce: int, payload: Payload) -> Tx:
    body = repr((CHAIN, sender, nonce, payload)).encode()
    return Tx(sha256(body), body, body, bytes(64), CHAIN, sender, nonce, payload)


def from_scratch(state: dict[bytes, bytes]) -> LtHash:
    h = LtHash()
    for k, v in state.items():
        h.add(k, v)
    return h


class Chain:
    """A dict-backed chain: executes blocks and checks the state root after each."""

    def __init__(self, genesis: Genesis) -> None:
        w = genesis.writes()
        self.state: dict[bytes, bytes] = {k: v for k, v in w.items() if v is not None}
        self.acc = genesis.lthash()
        assert self.acc.digest() == from_scratch(self.state).digest()
        self.height = 0
        self._nonces: dict[bytes, int] = {}

    def tx(self, sender: bytes, payload: Payload) -> Tx:
        n = self._nonces.get(sender, u64(self.state.get(nonce_key(sender))))
        self._nonces[sender] = n + 1
        return make_tx(sender, n, payload)

    def run(self, *txs: Tx) -> BlockResult:
        assert check_nonces(self.state, txs) is None
        self.height += 1
        before = dict(self.state)
        r = execute_block(self.state, self.acc, self.height, txs)
        assert self.state == before, "execute_block must not write to its reader"
        for k, v in r.writes.items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        ref = from_scratch(self.state)
        assert r.lthash == ref.lanes()
        assert r.state_root == ref.digest()
        assert [x.index for x in r.receipts] == list(range(len(txs)))
        assert all(
            x.height == self.height and x.tx_id == t.id
            for x, t in zip(r.receipts, txs, strict=True)
        )
        self.acc = LtHash(r.lthash)
        return r

    def codes(self, *txs: Tx) -> list[int]:
        return [r.code for r in self.run(*txs).receipts]

    def balance(self, asset: str, account: bytes) -> int:
        return u64(self.state.get(balance_key(asset, account)))

    def nonce(self, sender: bytes) -> int:
        return u64(self.state.get(nonce_key(sender)))


def genesis(validators: Sequence[bytes] = (V1,), consensus: str = "solo", **kw: object) -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        time_ms=1,
        validators=tuple(Validator(v, f"org{i}") for i, v in enumerate(validators)),
        admins=(ADMIN,),
        consensus=consensus,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def chain() -> Chain:
    return Chain(genesis())


# -- key/value --------------------------------------------------------------------------------


def test_kv_put_overwrite_delete(chain: Chain) -> None:
    assert chain.codes(chain.tx(ALICE, KvPut(b"k", b"v1"))) == [OK]
    assert chain.state[kv_key(b"k")] == b"v1"
    assert chain.codes(chain.tx(BOB, KvPut(b"k", b"v2")), chain.tx(ALICE, KvPut(b"j", b""))) == [
        OK,
        OK,
    ]
    assert chain.state[kv_key(b"k")] == b"v2"
    assert chain.state[kv_key(b"j")] == b""  # an empty value is a value, not a deletion
    assert chain.codes(chain.tx(ALICE, KvDelete(b"k"))) == [OK]
    assert kv_key(b"k") not in chain.state
    assert chain.nonce(ALICE) == 3 and chain.nonce(BOB) == 1


def test_delete_of_missing_key_is_not_found_and_consumes_the_nonce(chain: Chain) -> None:
    before = dict(chain.state)
    r = chain.run(chain.tx(ALICE, KvDelete(b"nope")))
    assert [x.code for x in r.receipts] == [NOT_FOUND]
    assert r.receipts[0].message
    assert r.writes == {nonce_key(ALICE): pack_u64(1)}
    assert chain.state == {**before, nonce_key(ALICE): pack_u64(1)}
    # the nonce is consumed: the next tx must use nonce 1
    assert check_nonces(chain.state, [make_tx(ALICE, 0, KvPut(b"a", b"b"))]) is not None
    assert check_nonces(chain.state, [make_tx(ALICE, 1, KvPut(b"a", b"b"))]) is None


def test_put_then_delete_in_one_block(chain: Chain) -> None:
    r = chain.run(chain.tx(ALICE, KvPut(b"t", b"x")), chain.tx(BOB, KvDelete(b"t")))
    assert [x.code for x in r.receipts] == [OK, OK]
    assert r.writes[kv_key(b"t")] is None
    assert kv_key(b"t") not in chain.state
    # delete then put again in the next block; delete again twice: second is NOT_FOUND
    assert chain.codes(
        chain.tx(ALICE, KvPut(b"t", b"y")),
        chain.tx(ALICE, KvDelete(b"t")),
        chain.tx(ALICE, KvDelete(b"t")),
    ) == [OK, OK, NOT_FOUND]


def test_kv_keys_cannot_reach_other_namespaces(chain: Chain) -> None:
    # a user key that spells another namespace's key lands under k/ and changes nothing else
    chain.run(chain.tx(ALICE, KvPut(b"g/admins", b"\x00" * 32)))
    assert chain.state[ADMINS_KEY] == ADMIN
    assert chain.state[kv_key(b"g/admins")] == b"\x00" * 32


def test_empty_block(chain: Chain) -> None:
    r = chain.run()
    assert r.writes == {} and r.receipts == ()
    assert r.state_root == chain.acc.digest()


# -- assets -------------------------------------------------------------------------------------


def test_first_issuer_claims_the_asset(chain: Chain) -> None:
    assert chain.codes(chain.tx(ALICE, AssetIssue("GOLD", BOB, 100))) == [OK]
    assert chain.state[issuer_key("GOLD")] == ALICE
    assert chain.balance("GOLD", BOB) == 100
    r = chain.run(chain.tx(CAROL, AssetIssue("GOLD", CAROL, 5)))
    assert [x.code for x in r.receipts] == [UNAUTHORIZED]
    assert "issuer" in r.receipts[0].message
    assert chain.balance("GOLD", CAROL) == 0
    assert chain.state[issuer_key("GOLD")] == ALICE
    assert r.writes == {nonce_key(CAROL): pack_u64(1)}
    # the issuer may issue again, to itself too
    assert chain.codes(chain.tx(ALICE, AssetIssue("GOLD", ALICE, 7))) == [OK]
    assert chain.balance("GOLD", ALICE) == 7
    # two claims in one block: the first wins
    assert chain.codes(
        chain.tx(CAROL, AssetIssue("SILVER", CAROL, 1)),
        chain.tx(DAVE, AssetIssue("SILVER", DAVE, 1)),
    ) == [OK, UNAUTHORIZED]


def test_genesis_minted_assets_cannot_be_issued() -> None:
    c = Chain(genesis(accounts=(Account("USD", ALICE, 50),)))
    assert c.balance("USD", ALICE) == 50
    assert c.codes(c.tx(ALICE, AssetIssue("USD", ALICE, 1))) == [UNAUTHORIZED]
    assert c.codes(c.tx(ADMIN, AssetIssue("USD", ADMIN, 1))) == [UNAUTHORIZED]


def test_issue_overflow_is_invalid(chain: Chain) -> None:
    assert chain.codes(chain.tx(ALICE, AssetIssue("X", BOB, MAX_AMOUNT))) == [OK]
    assert chain.codes(chain.tx(ALICE, AssetIssue("X", BOB, 1))) == [INVALID]
    assert chain.balance("X", BOB) == MAX_AMOUNT


def test_transfer(chain: Chain) -> None:
    chain.run(chain.tx(ALICE, AssetIssue("GOLD", BOB, 100)))
    assert chain.codes(chain.tx(BOB, AssetTransfer("GOLD", CAROL, 30))) == [OK]
    assert (chain.balance("GOLD", BOB), chain.balance("GOLD", CAROL)) == (70, 30)
    r = chain.run(chain.tx(CAROL, AssetTransfer("GOLD", DAVE, 31)))
    assert [x.code for x in r.receipts] == [INSUFFICIENT_BALANCE]
    assert "30" in r.receipts[0].message and "31" in r.receipts[0].message
    assert r.writes == {nonce_key(CAROL): pack_u64(1)}
    # exactly the whole balance leaves zero, then nothing more can move
    assert chain.codes(
        chain.tx(CAROL, AssetTransfer("GOLD", DAVE, 30)),
        chain.tx(CAROL, AssetTransfer("GOLD", DAVE, 1)),
    ) == [OK, INSUFFICIENT_BALANCE]
    assert chain.balance("GOLD", CAROL) == 0 and chain.balance("GOLD", DAVE) == 30
    # an account that never held the asset, and an asset that does not exist
    assert chain.codes(
        chain.tx(DAVE, AssetTransfer("NOPE", ALICE, 1)),
        chain.tx(ALICE, AssetTransfer("GOLD", BOB, 1)),
    ) == [INSUFFICIENT_BALANCE, INSUFFICIENT_BALANCE]


def test_transfer_to_self_is_invalid(chain: Chain) -> None:
    chain.run(chain.tx(ALICE, AssetIssue("GOLD", BOB, 10)))
    r = chain.run(chain.tx(BOB, AssetTransfer("GOLD", BOB, 5)))
    assert [x.code for x in r.receipts] == [INVALID]
    assert "self" in r.receipts[0].message
    assert chain.balance("GOLD", BOB) == 10


def test_transfer_in_block_sees_earlier_txs(chain: Chain) -> None:
    assert chain.codes(
        chain.tx(ALICE, AssetIssue("G", BOB, 5)),
        chain.tx(BOB, AssetTransfer("G", CAROL, 5)),
        chain.tx(CAROL, AssetTransfer("G", DAVE, 5)),
        chain.tx(DAVE, AssetTransfer("G", BOB, 6)),
    ) == [OK, OK, OK, INSUFFICIENT_BALANCE]
    assert chain.balance("G", DAVE) == 5


def test_transfer_must_not_overflow_the_recipient(chain: Chain) -> None:
    """BUG: issuance caps each account at MAX_AMOUNT, but the total supply is unbounded, so
    transfers can concentrate more than 2**64 - 1 in one account; `pack_u64` then raises
    struct.error out of execute_block (every node crashes on the same committed block).
    Expected: a failing receipt (INVALID) and unchanged balances."""
    chain.run(
        chain.tx(ALICE, AssetIssue("X", ALICE, MAX_AMOUNT)),
        chain.tx(ALICE, AssetIssue("X", BOB, MAX_AMOUNT)),
        chain.tx(ALICE, AssetIssue("X", CAROL, MAX_AMOUNT)),
    )
    codes = chain.codes(
        chain.tx(ALICE, AssetTransfer("X", BOB, MAX_AMOUNT)),
        chain.tx(CAROL, AssetTransfer("X", BOB, MAX_AMOUNT)),
    )
    assert codes[1] != OK
    assert chain.balance("X", BOB) <= MAX_AMOUNT * 2
    assert chain.balance("X", CAROL) == MAX_AMOUNT


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed={s}")
def test_random_transfers_conserve_supply_and_never_go_negative(seed: int) -> None:
    rng = random.Random(seed)
    c = Chain(genesis())
    people = [ALICE, BOB, CAROL, DAVE]
    model = {p: 0 for p in people}
    c.run(*(c.tx(ADMIN, AssetIssue("COIN", p, 50)) for p in people))
    for p in people:
        model[p] = 50
    for _ in range(12):
        txs, expect = [], []
        for _ in range(rng.randrange(0, 8)):
            src, dst = rng.choice(people), rng.choice(people)
            amount = rng.randrange(1, 80)
            txs.append(c.tx(src, AssetTransfer("COIN", dst, amount)))
            if model[src] < amount:
                expect.append(INSUFFICIENT_BALANCE)
            elif src == dst:
                expect.append(INVALID)
            else:
                expect.append(OK)
                model[src] -= amount
                model[dst] += amount
        assert c.codes(*txs) == expect
        assert {p: c.balance("COIN", p) for p in people} == model
        assert sum(model.values()) == 200


# -- governance ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [AddValidator(V2, "org"), RemoveValidator(V1), SetParam("max_block_txs", "10")],
    ids=["add", "remove", "set_param"],
)
def test_governance_is_admin_only(chain: Chain, payload: Payload) -> None:
    r = chain.run(chain.tx(ALICE, payload))
    assert [x.code for x in r.receipts] == [UNAUTHORIZED]
    assert r.writes == {nonce_key(ALICE): pack_u64(1)}
    with pytest.raises(TxRejected) as e:
        preflight(chain.state, make_tx(ALICE, 1, payload))
    assert e.value.reason is Reject.UNAUTHORIZED


def test_no_admins_means_no_governance() -> None:
    g = Genesis(CHAIN, 1, (Validator(V1, "o"),))
    c = Chain(g)
    assert ADMINS_KEY not in c.state
    assert c.codes(c.tx(ADMIN, SetParam("max_block_txs", "10"))) == [UNAUTHORIZED]


def test_add_validator_takes_effect_at_height_plus_two(chain: Chain) -> None:
    chain.run()  # height 1
    r = chain.run(chain.tx(ADMIN, AddValidator(V2, "org-b")))  # height 2
    assert [x.code for x in r.receipts] == [OK]
    eff = 2 + VALIDATOR_CHANGE_DELAY
    assert eff == 4
    assert u64(chain.state[VSET_LATEST_KEY]) == eff
    assert decode_validators(chain.state[vset_key(1)]) == (Validator(V1, "org0"),)
    assert vset_key(3) not in chain.state
    new = decode_validators(chain.state[vset_key(eff)])
    assert set(new) == {Validator(V1, "org0"), Validator(V2, "org-b")}
    assert latest_validators(chain.state) == (eff, new)


def test_one_validator_change_at_a_time(chain: Chain) -> None:
    chain.run()  # 1
    # two changes in one block: the second is pending-rejected
    r = chain.run(
        chain.tx(ADMIN, AddValidator(V2, "b")), chain.tx(ADMIN, AddValidator(V3, "c"))
    )  # 2
    assert [x.code for x in r.receipts] == [OK, INVALID]
    assert "pending" in r.receipts[1].message
    # the next block is still before the effective height 4
    assert chain.codes(chain.tx(ADMIN, AddValidator(V3, "c"))) == [INVALID]  # 3
    # parameter changes are not validator changes
    assert chain.codes(chain.tx(ADMIN, SetParam("max_block_txs", "7"))) == [OK]  # 4
    assert chain.codes(chain.tx(ADMIN, AddValidator(V3, "c"))) == [OK]  # 5 (effective at 7)
    _, vals = latest_validators(chain.state)
    assert {v.node_id for v in vals} == {V1, V2, V3}
    # history is kept: every effective height still decodes
    assert decode_validators(chain.state[vset_key(4)]) != decode_validators(
        chain.state[vset_key(7)]
    )


def test_remove_validator_rules() -> None:
    c = Chain(genesis((V1, V2), consensus="raft"))
    assert c.codes(c.tx(ADMIN, RemoveValidator(V3))) == [INVALID]  # not a validator
    c.run(), c.run()
    assert c.codes(c.tx(ADMIN, AddValidator(V2, "dup"))) == [INVALID]  # already one
    assert c.codes(c.tx(ADMIN, RemoveValidator(V2))) == [OK]  # height 5 -> effective 7
    c.run()
    c.run()
    _, vals = latest_validators(c.state)
    assert vals == (Validator(V1, "org0"),)
    r = c.run(c.tx(ADMIN, RemoveValidator(V1)))
    assert [x.code for x in r.receipts] == [INVALID]
    assert "last validator" in r.receipts[0].message


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_set_param_bounds(name: str) -> None:
    c = Chain(genesis())
    default, lo, hi = PARAMS[name]
    assert param(c.state, name) == default
    bad = [str(lo - 1), str(hi + 1), "", "-1", " 5", "5 ", "1e3", "0x10", "abc", "+5", "1.0"]
    codes = c.codes(*(c.tx(ADMIN, SetParam(name, v)) for v in bad))
    assert codes == [INVALID] * len(bad)
    assert param(c.state, name) == default
    assert c.codes(c.tx(ADMIN, SetParam(name, str(lo)))) == [OK]
    assert param(c.state, name) == lo
    assert c.codes(c.tx(ADMIN, SetParam(name, str(hi)))) == [OK]
    assert param(c.state, name) == hi


def test_unknown_param_is_invalid(chain: Chain) -> None:
    r = chain.run(chain.tx(ADMIN, SetParam("no_such_param", "1")))
    assert [x.code for x in r.receipts] == [INVALID]
    assert "max_block_txs" in r.receipts[0].message  # names the known ones


@pytest.mark.parametrize(
    "value", ["\u00b2", "\uff11\uff12", "\u0663"], ids=["superscript", "fullwidth", "arabic"]
)
def test_set_param_non_ascii_digits_are_invalid_not_a_crash(chain: Chain, value: str) -> None:
    """BUG: `str.isdigit()` accepts Unicode digits; int('²') raises ValueError out of
    execute_block and preflight, and others (fullwidth '12') are stored as non-ASCII parameter values.
    Expected: an INVALID receipt and a TxRejected(INVALID) at admission."""
    tx = make_tx(ADMIN, 0, SetParam("max_block_txs", value))
    with pytest.raises(TxRejected) as e:
        preflight(chain.state, tx)
    assert e.value.reason is Reject.INVALID
    assert chain.codes(chain.tx(ADMIN, SetParam("max_block_txs", value))) == [INVALID]


def test_add_validator_with_long_organization_does_not_crash(chain: Chain) -> None:
    """BUG: the validator-set encoding stores the organization length in one byte, but neither
    check_stateless nor the state machine bounds it: an AddValidator whose organization is
    longer than 255 bytes raises ValueError out of execute_block. Expected: INVALID receipt."""
    codes = chain.codes(chain.tx(ADMIN, AddValidator(V2, "o" * 256)))
    assert codes == [INVALID]


# -- admission and block validity ---------------------------------------------------------------


def test_preflight_reasons(chain: Chain) -> None:
    chain.run(chain.tx(ALICE, AssetIssue("G", BOB, 10)))
    st = chain.state
    preflight(st, make_tx(ALICE, 9, KvPut(b"k", b"v")))  # no exception; nonces are not checked
    preflight(st, make_tx(BOB, 0, AssetTransfer("G", CAROL, 10)))
    preflight(st, make_tx(ADMIN, 0, SetParam("max_block_txs", "5")))
    cases: list[tuple[Tx, Reject]] = [
        (make_tx(BOB, 0, AssetTransfer("G", CAROL, 11)), Reject.INSUFFICIENT_BALANCE),
        (make_tx(CAROL, 0, AssetIssue("G", CAROL, 1)), Reject.UNAUTHORIZED),
        (make_tx(BOB, 0, AssetTransfer("G", BOB, 1)), Reject.INVALID),
        (make_tx(ADMIN, 0, SetParam("max_block_txs", "0")), Reject.INVALID),
        (make_tx(ADMIN, 0, RemoveValidator(V1)), Reject.INVALID),
    ]
    for tx, reason in cases:
        with pytest.raises(TxRejected) as e:
            preflight(st, tx)
        assert e.value.reason is reason, tx.payload
        assert e.value.message


def test_check_nonces(chain: Chain) -> None:
    chain.run(chain.tx(ALICE, KvPut(b"a", b"1")), chain.tx(ALICE, KvPut(b"a", b"2")))
    st = chain.state
    assert check_nonces(st, []) is None
    ok = [
        make_tx(ALICE, 2, KvPut(b"x", b"")),
        make_tx(BOB, 0, KvPut(b"x", b"")),
        make_tx(ALICE, 3, KvPut(b"y", b"")),
    ]
    assert check_nonces(st, ok) is None
    replay = make_tx(ALICE, 1, KvPut(b"x", b""))
    msg = check_nonces(st, [replay])
    assert msg is not None and "expected 2" in msg and replay.id.hex()[:16] in msg
    gap = check_nonces(st, [make_tx(ALICE, 3, KvPut(b"x", b""))])
    assert gap is not None and "expected 2" in gap
    dup = check_nonces(st, [make_tx(BOB, 0, KvPut(b"x", b"")), make_tx(BOB, 0, KvPut(b"y", b""))])
    assert dup is not None and "expected 1" in dup
    swapped = check_nonces(
        st, [make_tx(BOB, 1, KvPut(b"x", b"")), make_tx(BOB, 0, KvPut(b"y", b""))]
    )
    assert swapped is not None and "expected 0" in swapped


def test_failing_txs_consume_nonces_in_sequence(chain: Chain) -> None:
    r = chain.run(
        chain.tx(ALICE, AssetTransfer("G", BOB, 1)),  # insufficient
        chain.tx(ALICE, KvDelete(b"missing")),  # not found
        chain.tx(ALICE, SetParam("max_block_txs", "5")),  # unauthorized
        chain.tx(ALICE, KvPut(b"k", b"v")),
    )
    assert [x.code for x in r.receipts] == [INSUFFICIENT_BALANCE, NOT_FOUND, UNAUTHORIZED, OK]
    assert chain.nonce(ALICE) == 4


# -- state root ---------------------------------------------------------------------------------


def random_payload(rng: random.Random, sender: bytes) -> Payload:
    people = [ALICE, BOB, CAROL, DAVE]
    k = rng.randrange(6)
    key = b"key%d" % rng.randrange(8)
    if k == 0:
        return KvPut(key, rng.randbytes(rng.randrange(0, 10)))
    if k == 1:
        return KvDelete(key)
    if k == 2:
        return AssetIssue(rng.choice(["A", "B"]), rng.choice(people), rng.randrange(1, 100))
    if k == 3:
        return AssetTransfer(rng.choice(["A", "B"]), rng.choice(people), rng.randrange(1, 60))
    if k == 4 and sender == ADMIN:
        return SetParam("max_block_txs", str(rng.randrange(0, 10)))
    return KvPut(b"s/" + sender[:1], b"%d" % rng.randrange(1000))


@pytest.mark.parametrize("seed", range(10), ids=lambda s: f"seed={s}")
def test_incremental_root_equals_from_scratch(seed: int) -> None:
    """Random blocks of every tx kind; `Chain.run` checks each root against a full recompute,
    and a replay of the same blocks from genesis reaches the same root."""
    rng = random.Random(seed)
    senders = [ALICE, BOB, CAROL, DAVE, ADMIN]
    c = Chain(genesis(accounts=(Account("A", ALICE, 40),)))
    blocks = []
    for _ in range(10):
        txs = []
        for _ in range(rng.randrange(0, 10)):
            s = rng.choice(senders)
            txs.append(c.tx(s, random_payload(rng, s)))
        c.run(*txs)
        blocks.append(txs)
    replay = Chain(genesis(accounts=(Account("A", ALICE, 40),)))
    for txs in blocks:
        replay.run(*txs)
    assert replay.state == c.state
    assert replay.acc.digest() == c.acc.digest()


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed={s}")
def test_commuting_txs_in_different_orders_reach_equal_roots(seed: int) -> None:
    """Txs of distinct senders touching disjoint keys (plus transfers into a common recipient,
    which add) commute: any order gives the same state root, though the receipts' order differs."""
    rng = random.Random(seed)
    people = [ALICE, BOB, CAROL, DAVE]
    base = Chain(genesis())
    base.run(*(base.tx(ADMIN, AssetIssue("C", p, 100)) for p in people))
    txs = [make_tx(p, 0, KvPut(b"own/" + p[:1], rng.randbytes(4))) for p in people]
    txs += [make_tx(p, 1, AssetTransfer("C", ADMIN, rng.randrange(1, 50))) for p in people]
    roots = set()
    for _ in range(4):
        c = Chain(genesis())
        c.run(*(c.tx(ADMIN, AssetIssue("C", p, 100)) for p in people))
        # shuffle across senders, keeping each sender's nonce order (a valid block)
        first, second = txs[:4], txs[4:]
        rng.shuffle(first)
        rng.shuffle(second)
        block = first + second
        r = c.run(*block)
        assert all(x.code == OK for x in r.receipts)
        roots.add(r.state_root)
    assert len(roots) == 1


def test_root_differs_when_state_differs() -> None:
    a = Chain(genesis())
    b = Chain(genesis())
    ra = a.run(a.tx(ALICE, KvPut(b"k", b"1")))
    rb = b.run(b.tx(ALICE, KvPut(b"k", b"2")))
    assert ra.state_root != rb.state_root
    # undoing the difference converges
    ra2 = a.run(a.tx(ALICE, KvPut(b"k", b"3")))
    rb2 = b.run(b.tx(ALICE, KvPut(b"k", b"3")))
    assert ra2.state_root == rb2.state_root


def test_execute_block_does_not_mutate_the_accumulator(chain: Chain) -> None:
    before = chain.acc.lanes()
    execute_block(chain.state, chain.acc, 1, [make_tx(ALICE, 0, KvPut(b"k", b"v"))])
    assert chain.acc.lanes() == before


# -- helpers ------------------------------------------------------------------------------------


def test_overlay_reads_its_writes() -> None:
    base = {b"a": b"1", b"b": b"2"}
    o = Overlay(base)
    o.put(b"a", b"x")
    o.delete(b"b")
    o.put(b"c", b"3")
    assert (o.get(b"a"), o.get(b"b"), o.get(b"c"), o.get(b"d")) == (b"x", None, b"3", None)
    assert base == {b"a": b"1", b"b": b"2"}


def test_validator_encoding() -> None:
    vals = [Validator(V3, "c"), Validator(V1, ""), Validator(V2, "ünïcode")]
    enc = encode_validators(vals)
    assert decode_validators(enc) == tuple(sorted(vals, key=lambda v: v.node_id))
    assert validators_hash(vals) == validators_hash(reversed(vals)) == sha256(enc)
    assert decode_validators(b"") == ()
    for cut in range(1, len(enc)):
        try:
            got = decode_validators(enc[:cut])
        except DecodeError:
            continue
        # a prefix that decodes must be a whole-record prefix
        assert encode_validators(got) == enc[:cut]


def test_u64_helpers() -> None:
    assert u64(None) == 0
    assert u64(pack_u64(2**64 - 1)) == 2**64 - 1
    assert pack_u64(1) == b"\x00" * 7 + b"\x01"
