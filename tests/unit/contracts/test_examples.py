"""The example contracts of examples/contracts/ behave as their headers say: the token's
mint, transfers, allowances and events; the escrow's release on both approvals, refund from
the deadline height, and its refusals; the WAT counter. Run through the ledger's call
path on the node's engine (tests/support/contract_harness.py) over the committed builds; a
contract's abort shows as the reason "aborted: <its message>"."""

from __future__ import annotations

import struct

from tests.support.contract_harness import Harness, example

ALICE, BOB, CAROL = b"A" * 32, b"B" * 32, b"C" * 32
ZERO = bytes(32)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def balance(t: Harness, who: bytes) -> int:
    out = t.call("balance_of", who)
    assert out.ok, out.reason
    return int(struct.unpack("<Q", out.result)[0])


def token(supply: int = 1000) -> Harness:
    t = Harness(example("token"))
    out = t.call("init", u64(supply), caller=ALICE)
    assert out.ok, out.reason
    assert out.events == ((b"transfer", ZERO + ALICE + u64(supply)),)
    return t


def test_token_init_mints_to_the_deployer_or_a_named_holder() -> None:
    t = token(1000)
    assert balance(t, ALICE) == 1000 and balance(t, BOB) == 0
    assert t.call("total_supply").result == u64(1000)
    named = Harness(example("token"))
    assert named.call("init", BOB + u64(7), caller=ALICE).ok
    assert balance(named, BOB) == 7 and balance(named, ALICE) == 0
    bad = Harness(example("token")).call("init", b"\x01\x02")
    assert not bad.ok and bad.reason == "aborted: init: expected supply:u64 or holder:32 supply:u64"


def test_token_transfer_moves_balance_and_emits() -> None:
    t = token(1000)
    out = t.call("transfer", BOB + u64(300), caller=ALICE)
    assert out.ok and out.events == ((b"transfer", ALICE + BOB + u64(300)),)
    assert (balance(t, ALICE), balance(t, BOB)) == (700, 300)
    # to oneself: unchanged
    assert t.call("transfer", ALICE + u64(700), caller=ALICE).ok
    assert balance(t, ALICE) == 700


def test_token_transfer_over_balance_fails_and_keeps_nothing() -> None:
    t = token(10)
    before = dict(t.state)
    out = t.call("transfer", BOB + u64(11), caller=ALICE)
    assert (out.ok, out.reason, out.events) == (False, "aborted: insufficient balance", ())
    assert t.state == before
    short = t.call("transfer", BOB, caller=ALICE)
    assert short.reason == "aborted: transfer: expected to:32 amount:u64"


def test_token_allowances() -> None:
    t = token(1000)
    out = t.call("approve", BOB + u64(50), caller=ALICE)
    assert out.ok and out.events == ((b"approval", ALICE + BOB + u64(50)),)
    assert t.call("allowance", ALICE + BOB).result == u64(50)
    over = t.call("transfer_from", ALICE + CAROL + u64(51), caller=BOB)
    assert (over.ok, over.reason) == (False, "aborted: allowance exceeded")
    # a spender without allowance, even the owner's own other key, cannot move funds
    assert (
        t.call("transfer_from", ALICE + CAROL + u64(1), caller=CAROL).reason
        == "aborted: allowance exceeded"
    )
    moved = t.call("transfer_from", ALICE + CAROL + u64(20), caller=BOB)
    assert moved.ok and moved.events == ((b"transfer", ALICE + CAROL + u64(20)),)
    assert t.call("allowance", ALICE + BOB).result == u64(30)
    assert (balance(t, ALICE), balance(t, CAROL)) == (980, 20)
    # approve replaces; zero removes the key from state
    assert t.call("approve", BOB + u64(0), caller=ALICE).ok
    assert t.call("allowance", ALICE + BOB).result == u64(0)
    assert not any(k.startswith(b"a") for k in t.state)


def escrow(**balances: int) -> Harness:
    accounts = {"payer": ALICE, "payee": BOB}
    e = Harness(example("escrow"))
    init = b"".join(accounts[name] + u64(v) for name, v in balances.items())
    out = e.call("init", init, caller=CAROL)
    assert out.ok, out.reason
    return e


def open_args(id_: int, payee: bytes, amount: int, deadline: int) -> bytes:
    return u64(id_) + payee + u64(amount) + u64(deadline)


def test_escrow_releases_once_both_parties_approved() -> None:
    e = escrow(payer=500)
    out = e.call("open", open_args(1, BOB, 200, 50), caller=ALICE, height=10)
    assert out.ok, out.reason
    assert out.events == ((b"opened", u64(1) + ALICE + BOB + u64(200) + u64(50)),)
    assert balance(e, ALICE) == 300
    first = e.call("approve", u64(1), caller=BOB, height=11)
    assert first.ok and first.events == ((b"approved", u64(1) + BOB),)
    assert balance(e, BOB) == 0
    assert e.call("approve", u64(1), caller=BOB, height=12).reason == "aborted: already approved"
    assert e.call("approve", u64(1), caller=CAROL, height=12).reason == (
        "aborted: only the payer or the payee may approve"
    )
    second = e.call("approve", u64(1), caller=ALICE, height=13)
    assert second.ok
    assert second.events == (
        (b"approved", u64(1) + ALICE),
        (b"released", u64(1) + BOB + u64(200)),
    )
    assert (balance(e, ALICE), balance(e, BOB)) == (300, 200)
    record = e.call("escrow", u64(1)).result
    assert record == ALICE + BOB + u64(200) + u64(50) + bytes([1, 3])
    assert e.call("refund", u64(1), height=60).reason == "aborted: escrow 1 is already settled"


def test_escrow_refunds_the_payer_from_the_deadline_height() -> None:
    e = escrow(payer=100)
    assert e.call("open", open_args(7, BOB, 100, 20), caller=ALICE, height=5).ok
    assert e.call("approve", u64(7), caller=BOB, height=6).ok
    early = e.call("refund", u64(7), caller=ALICE, height=19)
    assert early.reason == "aborted: refund: the deadline (height 20) is not reached"
    late = e.call("approve", u64(7), caller=ALICE, height=20)
    assert late.reason == "aborted: deadline passed: the escrow can only be refunded"
    out = e.call("refund", u64(7), caller=CAROL, height=20)
    assert out.ok and out.events == ((b"refunded", u64(7) + ALICE + u64(100)),)
    assert (balance(e, ALICE), balance(e, BOB)) == (100, 0)


def test_escrow_refusals_keep_state() -> None:
    e = escrow(payer=100, payee=5)
    before = dict(e.state)
    for args, caller, height, reason in [
        (open_args(1, BOB, 101, 20), ALICE, 5, "insufficient balance"),
        (open_args(1, BOB, 0, 20), ALICE, 5, "amount must be positive"),
        (open_args(1, BOB, 10, 5), ALICE, 5, "deadline must be above the current height"),
        (open_args(1, ALICE, 10, 20), ALICE, 5, "payer and payee must differ"),
        (b"short", ALICE, 5, "open: expected id:u64 payee:32 amount:u64 deadline:u64"),
    ]:
        out = e.call("open", args, caller=caller, height=height)
        assert (out.ok, out.reason) == (False, "aborted: " + reason)
        assert e.state == before
    assert e.call("open", open_args(1, BOB, 10, 20), caller=ALICE, height=5).ok
    again = e.call("open", open_args(1, BOB, 10, 20), caller=ALICE, height=5)
    assert again.reason == "aborted: escrow 1 exists"
    assert e.call("approve", u64(9), caller=ALICE).reason == "aborted: unknown escrow 9"


def test_counter_in_wat() -> None:
    c = Harness(example("counter"))
    assert c.call("init", u64(41)).ok
    out = c.call("increment")
    assert out.ok and out.result == u64(42) and out.events == ((b"incremented", u64(42)),)
    assert c.call("value").result == u64(42)
    assert c.call("increment", b"x").reason == "aborted: input: expected nothing or a u64"
    assert c.call("increment", u64(2**64 - 1)).reason == "aborted: counter overflow"
    assert c.call("value").result == u64(42)
