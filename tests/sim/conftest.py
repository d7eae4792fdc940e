"""pytest wiring for the simulation suite: `--sim-seeds N` (how many seeds per engine, default
200) and `--seed N` (replay one seed). Every test taking a `seed` argument is parametrised with
ids like `seed=17`.

pytest only calls `pytest_addoption` for conftests it loads at start-up (the rootdir's and the
command-line directories'), so `pytest tests` needs these options registered from
tests/conftest.py as well: `add_sim_options` is written to be called from there too and
tolerates double registration."""

from __future__ import annotations

import pytest

DEFAULT_SEEDS = 200


def add_sim_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "consensus simulation")
    try:
        group.addoption(
            "--sim-seeds",
            type=int,
            default=DEFAULT_SEEDS,
            help="number of seeds per simulation test (default 200)",
        )
        group.addoption("--seed", type=int, default=None, help="replay a single simulation seed")
    except ValueError:
        pass  # already registered by a parent conftest


def pytest_addoption(parser: pytest.Parser) -> None:
    add_sim_options(parser)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" not in metafunc.fixturenames:
        return
    one = metafunc.config.getoption("--seed", default=None)
    seeds = [int(one)] if one is not None else list(range(sim_seeds(metafunc.config)))
    metafunc.parametrize("seed", seeds, ids=[f"seed={s}" for s in seeds])


def sim_seeds(config: pytest.Config) -> int:
    n = config.getoption("--sim-seeds", default=DEFAULT_SEEDS)
    return DEFAULT_SEEDS if n is None else int(n)
