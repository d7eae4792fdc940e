"""Mutation check of the simulator: plants one classic consensus/durability bug at a time in a
temporary copy of `consortium_node` and runs the whole-node simulation until a seed fails.

Run by `make sim-mutants` (or `.venv/bin/python -m tests.sim.mutants --seeds 200`). The tree is
never modified: each mutant is a text patch applied to a copy under a temporary directory that
is put first on PYTHONPATH for one pytest subprocess (the patch must match exactly once, or the
script stops: a mutant that no longer applies is reported, not silently skipped). A seed
counts as a catch only if the unmutated code passes it. Prints a table: mutant, first failing
seed, seeds run, seconds; exits 1 if any mutant survives."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "node" / "consortium_node"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to node/consortium_node
    old: str
    new: str
    test: str  # pytest node id (parametrised over --sim-seeds)
    # False: reported, but its survival does not fail the run (see the mutant's comment)
    required: bool = True


MUTANTS = (
    Mutant(
        "raft-figure8-commit",  # commit an old-term entry by counting replicas (§5.4.2)
        "consensus/raft/engine.py",
        "if n > self.commit and self.log.term(n) == self.term:",
        "if n > self.commit:",
        "tests/sim/test_node_sim.py::test_raft_node_sim",
    ),
    Mutant(
        "raft-vote-for-stale-log",  # grant RequestVote to a less up-to-date candidate (§5.4.1)
        "consensus/raft/engine.py",
        "if can and up_to_date:",
        "if can:",
        "tests/sim/test_node_sim.py::test_raft_node_sim",
    ),
    Mutant(
        "bft-lock-violation",  # prevote a new proposal although locked on another (Alg. 1 L22)
        "consensus/bft/engine.py",
        "ok = self._is_valid(v) and (self.locked_round == -1 or self.locked_hash == v.hash)",
        "ok = self._is_valid(v)",
        "tests/sim/test_node_sim.py::test_bft_node_sim",
    ),
    Mutant(
        # the consensus log's save returns before its fsync: a vote (hard state) is sent while
        # only in the page cache, and a crash forgets it. Planted in the in-memory adapter the
        # simulator runs, at the spot that stands for ConsensusWal._append's fdatasync.
        "raft-skip-fsync-before-vote",
        "storage/memory.py",
        "sync=self._fsync and sync and i == len(recs) - 1",
        "sync=False",
        "tests/sim/test_node_sim.py::test_raft_node_sim",
    ),
    Mutant(
        # The same bug under BFT. Not required: BFT tolerates one amnesiac validator by design,
        # so a fork needs more than f of them (or one and the Twin) voting differently in the
        # same round; 200 seeds did not get there (issue 13 asks for the raft variant above).
        "bft-skip-fsync-before-vote",
        "storage/memory.py",
        "sync=self._fsync and sync and i == len(recs) - 1",
        "sync=False",
        "tests/sim/test_node_sim.py::test_bft_node_sim",
        required=False,
    ),
    Mutant(
        # governance: MAJORITY reached by half of the member organisations (2 of 4) instead of
        # strictly more than half. Deterministic, so every node agrees on the wrong state: the
        # governance workload's independent policy check (tests/sim/govload.py) catches it.
        "gov-majority-half",
        "ledger/governance.py",
        "return members // 2 + 1  # strictly more than half",
        "return (members + 1) // 2",
        "tests/sim/test_node_sim.py::test_raft_node_sim",
    ),
)

_FAILED = re.compile(r"simulation failed: seed=(\d+)")
# a KNOWN (xfail) seed that passes under the mutant: not a catch; the clean run confirms that
_KNOWN_PASSES = re.compile(r"FAILED \S+\[seed=(\d+)\] - Failed: known failure no longer fails")


def plant(m: Mutant, into: Path) -> None:
    """Copies the package to `into`/consortium_node and applies the patch (exactly once)."""
    dst = into / "consortium_node"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__"))
    f = dst / m.path
    text = f.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutant {m.name}: {m.path} holds {text.count(m.old)} copies of the patch")
    f.write_text(text.replace(m.old, m.new))


def _pytest(env: dict[str, str], test: str, *seed_args: str) -> tuple[int | None, bool]:
    """Runs one simulation test (stopping at the first failure); returns the failing seed and
    whether it was a simulation failure (False: a KNOWN seed that passed)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *seed_args]
    out = subprocess.run([*cmd, test], env=env, cwd=ROOT, capture_output=True, text=True)
    hit = _FAILED.search(out.stdout)
    known = _KNOWN_PASSES.search(out.stdout)
    if hit is None and known is not None:
        return int(known.group(1)), False
    if hit is None and out.returncode not in (0, 5):  # 5: no test ran (empty seed range)
        print(out.stdout[-3000:], out.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"{test}: pytest failed without a simulation failure")
    return (int(hit.group(1)) if hit else None), True


def run(m: Mutant, seeds: int) -> tuple[int | None, list[int], float]:
    """The first seed < `seeds` the mutant fails that the unmutated code passes (a seed that
    fails either way is a defect of today's code, not a catch: listed, then skipped); the
    seeds skipped that way; seconds spent."""
    clean_env = dict(os.environ, PYTHONPATH=str(ROOT))
    skipped: list[int] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-") as tmp:
        plant(m, Path(tmp))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tmp, str(ROOT)]))
        probe = subprocess.run(
            [sys.executable, "-c", "import consortium_node; print(consortium_node.__file__)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        if not probe.stdout.strip().startswith(tmp):
            raise SystemExit(
                f"mutant {m.name}: the copy is not what gets imported ({probe.stdout})"
            )
        first = 0
        while first < seeds:
            seed, real = _pytest(
                env, m.test, "--sim-seeds", str(seeds), "--sim-first-seed", str(first)
            )
            if seed is None:
                return None, skipped, time.monotonic() - t0
            if real and _pytest(clean_env, m.test, "--seed", str(seed))[0] is None:
                return seed, skipped, time.monotonic() - t0
            skipped.append(seed)
            first = seed + 1
    return None, skipped, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=200, help="seeds per mutant (the CI count)")
    ap.add_argument("--only", default=None, help="run only the mutant with this name")
    args = ap.parse_args()
    rows = []
    for m in MUTANTS:
        if args.only and m.name != args.only:
            continue
        seed, skipped, took = run(m, args.seeds)
        ran = (seed + 1) if seed is not None else args.seeds
        rows.append((m, "-" if seed is None else str(seed), ran, took))
        status = "caught" if seed is not None else "SURVIVED"
        if not m.required:
            status += " (not required)"
        note = f"; failing on clean code too, skipped: {skipped}" if skipped else ""
        print(f"{m.name}: {status} (seed {seed}, {ran} seeds, {took:.1f} s{note})", flush=True)
    print("\n| mutant | caught by seed | seeds run | time (s) |\n|---|---|---|---|")
    for m, seed_s, ran, took in rows:
        name = m.name if m.required else f"{m.name} (not required)"
        print(f"| {name} | {seed_s} | {ran} | {took:.1f} |")
    return 0 if all(r[1] != "-" for r in rows if r[0].required) else 1


if __name__ == "__main__":
    sys.exit(main())
