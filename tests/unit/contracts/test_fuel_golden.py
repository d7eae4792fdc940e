"""Golden fuel: the exact fuel each example call uses. A dependency bump (wasmtime, the
AssemblyScript compiler via a rebuild) or a change of the host-call schedule that changes
fuel fails here — fuel is consensus-relevant (receipts carry it and out-of-fuel decides a
call's fate), so a change must be deliberate: re-measure, update GOLDEN, say why.

Measured on the test harness (tests/support/contract_harness.py, HOST_BASE=100 and
HOST_PER_BYTE=1) with wasmtime 50.0.1 over the committed examples/contracts/wasm/*.wasm.
On a mismatch the assertion prints the whole measured table to paste.
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
        "init": 5807,
        "transfer": 8184,
        "transfer over balance": 5276,
        "approve": 5543,
        "transfer_from": 11859,
        "balance_of": 2885,
        "allowance": 4717,
        "total_supply": 2157,
    },
    "escrow": {
        "init": 7008,
        "open": 12433,
        "approve by payee": 8107,
        "approve by payer (release)": 12922,
        "open again": 12244,
        "refund too early": 6643,
        "refund": 10523,
        "escrow": 3044,
        "balance_of": 2888,
    },
    "counter": {"init": 235, "increment": 621, "increment by": 736, "value": 250},
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


def test_fuel_is_the_same_on_a_second_engine() -> None:
    # a fresh engine (another node): the same calls use the same fuel
    assert measure("token") == measure("token")
