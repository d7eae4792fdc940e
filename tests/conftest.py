"""Root pytest configuration shared by every tier: command-line options for the seeded
simulation suites (`--sim-seeds N`, `--seed N`)."""

from __future__ import annotations

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
