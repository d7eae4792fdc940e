"""Root pytest configuration shared by every tier: command-line options for the seeded
simulation suites (`--sim-seeds N`, `--seed N`)."""

from __future__ import annotations

import consortium_node  # noqa: F401  -- first: gRPC fork support off before any test imports grpc
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("consortium")
    group.addoption(
        "--sim-seeds",
        type=int,
        default=200,
        help="how many seeds each simulation scenario runs (make test: 200, test-sim-long: 2000)",
    )
    group.addoption(
        "--seed",
        type=int,
        default=None,
        help="replay exactly one simulation seed",
    )
    group.addoption(
        "--sim-ticks",
        type=int,
        default=0,
        help="chaos ticks per whole-node simulation seed (0: the test's default; "
        "make test-sim-long: 10000)",
    )
    group.addoption(
        "--sim-first-seed",
        type=int,
        default=0,
        help="first seed of the --sim-seeds range (tests/sim/mutants.py resumes a search)",
    )
