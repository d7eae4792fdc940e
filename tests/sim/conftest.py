"""pytest wiring for the simulation suite: every test taking a `seed` argument is parametrised
with ids like `seed=17`, over `--sim-seeds N` seeds (default 200; from `--sim-first-seed`) or
just `--seed N` (replay).

The options themselves are registered in tests/conftest.py: pytest only honours
`pytest_addoption` in conftests it loads at start-up, and `pytest tests` does not load this one
early enough."""

from __future__ import annotations

import pytest

DEFAULT_SEEDS = 200


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" not in metafunc.fixturenames:
        return
    one = metafunc.config.getoption("--seed", default=None)
    if one is not None:
        seeds = [int(one)]
    else:
        n = metafunc.config.getoption("--sim-seeds", default=DEFAULT_SEEDS)
        first = int(metafunc.config.getoption("--sim-first-seed", default=0) or 0)
        seeds = list(range(first, DEFAULT_SEEDS if n is None else int(n)))
    metafunc.parametrize("seed", seeds, ids=[f"seed={s}" for s in seeds])


@pytest.fixture
def sim_ticks(request: pytest.FixtureRequest) -> int:
    """`--sim-ticks N`: chaos ticks per whole-node seed (0 = each test's default)."""
    return int(request.config.getoption("--sim-ticks", default=0) or 0)
