"""`python -m tests.integration.reconnect_timeline [RUNS]`: the measurement behind
test_peer_reconnect, with a timeline. A 4-validator BFT consortium under load; the largest id
is killed -9 for 8 s and restarted; the smallest id is killed the moment it serves. Prints,
per run: when the links were back, when the first block committed afterwards, and the
longest gap between commits in the next 5 s (seconds after the restarted node served)."""

from __future__ import annotations

import itertools
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from consortium_node.localnet import init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import running
from .test_peer_reconnect import MANIFEST, Commits, _all_linked


def run_once(d: Path) -> str:
    shutil.rmtree(d, ignore_errors=True)
    init_data_dir(parse_manifest(MANIFEST), d, fsync=False)
    with running(d) as net:
        nodes = net.nodes
        wait_for(lambda: _all_linked(nodes, 3), 30, "all links up")
        by_id = sorted(nodes, key=lambda n: n.node_id)
        victim, second, observer = by_id[-1], by_id[0], by_id[1]
        live = [n for n in nodes if n is not second]
        with Commits(net, observer) as commits:
            wait_for(lambda: len(commits.arrivals) >= 3, 20, "commits under load")
            victim.stop(signal.SIGKILL)
            time.sleep(8.0)  # down long enough for the old back-off to reach its cap
            victim.start()
            wait_for((victim.directory / "ready.json").exists, 30, "serving", every=0.01)
            t0 = time.monotonic()
            second.stop(signal.SIGKILL)
            wait_for(lambda: _all_linked(live, 2), 15, "links back", every=0.02)
            links = time.monotonic() - t0
            time.sleep(5.0)  # the observation window
            after = [a - t0 for a in commits.arrivals if a > t0]
    if not after:
        return f"links {links:.2f} s, no commit within 5 s"
    gaps = [b - a for a, b in itertools.pairwise([0.0, *after])]
    return f"links {links:.2f} s, first commit {after[0]:.2f} s, longest gap {max(gaps):.2f} s"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            print(f"run {i + 1}: {run_once(Path(tmp) / 'net')}", flush=True)


if __name__ == "__main__":
    main()
