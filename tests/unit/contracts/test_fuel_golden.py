"""Golden fuel: the exact fuel each example call uses. A dependency bump (wasmtime, the
AssemblyScript compiler via a rebuild) or a change of the host-call schedule that changes
fuel fails here — fuel is consensus-relevant (receipts carry it and out-of-fuel decides a
call's fate), so a change must be deliberate: re-measure, update GOLDEN, say why.

Measured through the ledger's call path on the node's engine (tests/support/
contract_harness.py) at the default chain parameters (contract_host_call_fuel 1000,
contract_host_byte_fuel 1) with wasmtime 50.0.1 over the committed
examples/contracts/wasm/*.wasm. On a mismatch the assertion prints the measured table.
"""

from __future__ import annotations

import importlib.metadata
import struct
from collections.abc import Callable

from tests.support.contract_harness import Harness, example

ALICE, BOB, CAROL = b"A" * 32, b"B" * 32, b"C" * 32


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


# (step, method, input, caller, height, ok)
Step = tuple[str, str, bytes, bytes, int, bool]

SCENARIOS: dict[str, list[Step]] = {
    "token": [
        ("init", "init", u64(1_000_000), ALICE, 1, True),
        ("transfer", "transfer", BOB + u64(250), ALICE, 2, True),
        ("transfer over balance", "transfer", ALICE + u64(251), BOB, 2, False),
        ("approve", "approve", BOB + u64(100), ALICE, 3, True),
        ("transfer_from", "transfer_from", ALICE + CAROL + u64(40), BOB, 4, True),
        ("balance_of", "balance_of", CAROL, CAROL, 4, True),
        ("allowance", "allowance", ALICE + BOB, CAROL, 4, True),
        ("total_supply", "total_supply", b"", CAROL, 4, True),
    ],
    "escrow": [
        ("init", "init", ALICE + u64(1000) + BOB + u64(10), CAROL, 1, True),
        ("open", "open", u64(1) + BOB + u64(600) + u64(100), ALICE, 2, True),
        ("approve by payee", "approve", u64(1), BOB, 3, True),
        ("approve by payer (release)", "approve", u64(1), ALICE, 4, True),
        ("open again", "open", u64(2) + BOB + u64(400) + u64(10), ALICE, 5, True),
        ("refund too early", "refund", u64(2), ALICE, 9, False),
        ("refund", "refund", u64(2), ALICE, 10, True),
        ("escrow", "escrow", u64(1), CAROL, 11, True),
        ("balance_of", "balance_of", BOB, CAROL, 11, True),
    ],
    "counter": [
        ("init", "init", b"", ALICE, 1, True),
        ("increment", "increment", b"", ALICE, 2, True),
        ("increment by", "increment", u64(5), BOB, 3, True),
        ("value", "value", b"", CAROL, 3, True),
    ],
}

GOLDEN: dict[str, dict[str, int]] = {
    "token": {
        "init": 11207,
        "transfer": 15384,
        "transfer over balance": 9776,
        "approve": 10043,
        "transfer_from": 20859,
        "balance_of": 6485,
        "allowance": 8317,
        "total_supply": 3957,
    },
    "escrow": {
        "init": 12408,
        "open": 20533,
        "approve by payee": 14407,
        "approve by payer (release)": 21922,
        "open again": 20344,
        "refund too early": 11143,
        "refund": 17723,
        "escrow": 6644,
        "balance_of": 6488,
    },
    "counter": {"init": 2035, "increment": 5121, "increment by": 6136, "value": 2050},
}


def measure(name: str, make: Callable[[], Harness] | None = None) -> dict[str, int]:
    h = make() if make else Harness(example(name))
    used = {}
    for step, method, data, caller, height, ok in SCENARIOS[name]:
        out = h.call(method, data, caller=caller, height=height)
        assert out.ok == ok, f"{name} {step}: {out.reason}"
        used[step] = out.fuel_used
    return used


def test_the_engine_is_the_measured_one() -> None:
    assert importlib.metadata.version("wasmtime") == "50.0.1"


def test_fuel_is_exactly_the_golden_figures() -> None:
    measured = {name: measure(name) for name in SCENARIOS}
    assert measured == GOLDEN, f"fuel changed; measured:\n{measured!r}"


def test_the_golden_fuel_is_exactly_enough() -> None:
    # fuel used is exact: the golden figure runs the transfer, one unit less is out of fuel
    need = GOLDEN["token"]["transfer"]
    for fuel, ok in ((need, True), (need - 1, False)):
        t = Harness(example("token"))
        assert t.call("init", u64(1_000_000), caller=ALICE).ok
        out = t.call("transfer", BOB + u64(250), caller=ALICE, height=2, fuel=fuel)
        assert (out.ok, out.reason, out.fuel_used) == (ok, "" if ok else "out of fuel", fuel)


def test_fuel_is_the_same_on_a_second_engine() -> None:
    # a fresh engine (another node): the same calls use the same fuel
    assert measure("token") == measure("token")
