"""`python -m tests.integration.reconnect_timeline [RUNS]`: the measurement behind
test_peer_reconnect, with a timeline. A 4-validator BFT consortium under load; the largest id
is killed -9 for 8 s and restarted; the smallest id is killed the moment it serves. Prints,
per run: when the links were back, when the first block committed afterwards, and the
longest gap between commits in the next 5 s (seconds after the restarted node served), when
the restarted node had caught up to the stalled height (block sync), and the commit round of
the first block after the restart (rounds > 0 are BFT round changes: a timeout each)."""

from __future__ import annotations

import itertools
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import running
from .test_peer_reconnect import MANIFEST, Commits, _all_linked


def _heights(node: LocalNode, out: list[tuple[float, int]], stop: threading.Event) -> None:
    """Records (time, height) of `node` every 20 ms until `stop`."""
    while not stop.is_set():
        try:
            with Client(node.endpoint, 2.0, tls=node.tls) as c:
                while not stop.is_set():
                    out.append((time.monotonic(), int(c.status().height)))
                    stop.wait(0.02)
        except ClientError:
            stop.wait(0.02)


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
            stuck = len(commits.arrivals)  # blocks seen so far: the next one is the stalled one
            seen: list[tuple[float, int]] = []
            done = threading.Event()
            poller = threading.Thread(target=_heights, args=(victim, seen, done))
            poller.start()
            wait_for(lambda: _all_linked(live, 2), 15, "links back", every=0.02)
            links = time.monotonic() - t0
            time.sleep(5.0)  # the observation window
            done.set()
            poller.join(timeout=10)
            after = [a - t0 for a in commits.arrivals if a > t0]
            rounds = commits.rounds[stuck : stuck + 1]
            with Client(observer.endpoint, 5.0, tls=observer.tls) as c:
                head = int(c.status().height) - len(after)  # the height stalled at
    if not after:
        return f"links {links:.2f} s, no commit within 5 s"
    gaps = [b - a for a, b in itertools.pairwise([0.0, *after])]
    caught = next((t - t0 for t, h in seen if h >= head), None)
    return (
        f"links {links:.2f} s, restarted node at the head {caught or -1:.2f} s, first commit "
        f"{after[0]:.2f} s (round {rounds[0] if rounds else '?'}), longest gap {max(gaps):.2f} s"
    )


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            print(f"run {i + 1}: {run_once(Path(tmp) / 'net')}", flush=True)


if __name__ == "__main__":
    main()
