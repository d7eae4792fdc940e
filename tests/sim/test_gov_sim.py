"""The governance workload of the whole-node simulator is not vacuous (tests/sim/govload.py):
over the first governance seeds of each consensus, organisation admins vote no as well as
yes, withdraw, and propose the seeds' validator changes; under raft their proposals reach
EXECUTED, EXPIRED and WITHDRAWN. (Under bft the chaos of most seeds leaves the chain a few
blocks during the chaos phase, when the admins act: proposals expire or stay pending there.)
test_node_sim.py checks every seed's invariants."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from .nodesim import NodeSim, Swarm

pytestmark = pytest.mark.sim

SEEDS = 8  # governance seeds per consensus (about half of all seeds draw governance)


@pytest.mark.parametrize("consensus", ["raft", "bft"])
def test_governance_workload_reaches_the_terminal_states(consensus: str) -> None:
    states: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    ran, seed = 0, 0
    while ran < SEEDS:
        swarm = Swarm.draw(random.Random(f"{consensus}:{seed}"), consensus, 600)
        if swarm.governance:
            print(f"{consensus} seed {seed}")  # replay: test_node_sim.py --seed N
            sim = NodeSim(seed, swarm)
            sim.run()
            assert sim.gov is not None
            states.update(
                {k.removeprefix("gov "): v for k, v in sim.stats.items() if k.startswith("gov ")}
            )
            sent.update(sim.gov.stats)
            ran += 1
        seed += 1
    reached = {"EXECUTED", "EXPIRED", "WITHDRAWN"} if consensus == "raft" else {"EXPIRED"}
    assert reached <= set(states), states
    assert sent["vote no"] > 0 and sent["vote yes"] > 0 and sent["withdraw"] > 0, sent
    assert sent["propose add validator"] + sent["propose remove validator"] > 0, sent
