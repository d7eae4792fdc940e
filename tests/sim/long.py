"""The long simulation run behind `make test-sim-long`: whole-node swarm seeds with many chaos
ticks each (default 10,000), raft and bft in turn, until a time budget is spent (default one
hour). Stops at the first failing seed and prints its one-line replay command and trace
(tests/sim/harness.py `run_or_explain`). Seeds start at `--first` so successive runs can cover
new ground; the seeds `tests/sim/test_node_sim.py` runs in CI are 0..SIM_SEEDS-1."""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time

from .harness import run_or_explain
from .nodesim import NodeSim, Swarm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3600.0, help="time budget")
    ap.add_argument("--ticks", type=int, default=10_000, help="chaos ticks per seed")
    ap.add_argument("--first", type=int, default=0, help="first seed")
    args = ap.parse_args()
    t0 = time.monotonic()
    seed, runs = args.first, 0
    while time.monotonic() - t0 < args.seconds:
        for consensus in ("raft", "bft"):
            swarm = Swarm.draw(random.Random(f"{consensus}:{seed}"), consensus, args.ticks)
            test = f"tests/sim/test_node_sim.py::test_{consensus}_node_sim[seed={seed}]"
            try:
                sim = run_or_explain(
                    functools.partial(NodeSim, seed, swarm),
                    seed,
                    test,
                    f" --sim-ticks {args.ticks}",
                )
            except AssertionError as e:
                print(e, file=sys.stderr)
                return 1
            runs += 1
            print(
                f"seed {seed} {consensus}: ok, {sim.now} ticks, {sim.stats}, "
                f"{time.monotonic() - t0:.0f} s",
                flush=True,
            )
        seed += 1
    print(f"{runs} runs of {args.ticks} chaos ticks, no failure, {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
