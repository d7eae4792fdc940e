"""One PySyncObj node of the peer benchmark, run as a process: `python -m bench.pso_node`.

It replicates a dict (`put(key, value)`, a `@replicated` method) with its journal file on
(`journalFile`: the log is written to a memory-mapped file before it is acknowledged; PySyncObj
0.3.x has no per-write fsync switch). When the cluster has a leader it writes `--ready`, waits
for `--go`, then issues its share of writes with at most `--window` outstanding; a write is
done when its callback fires, i.e. when the entry is committed and applied on this node. It
writes a JSON result (send/commit times in CLOCK_MONOTONIC ns, shared by all local processes)
to `--out`, then keeps serving until it is terminated (or `--linger` seconds pass)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

# imported dynamically: PySyncObj is untyped and only installed for the benchmarks
# (`make bench-deps`), so type-checking must not depend on its presence
_pso: Any = importlib.import_module("pysyncobj")
SyncObj, SyncObjConf, replicated = _pso.SyncObj, _pso.SyncObjConf, _pso.replicated


class KV(SyncObj):  # type: ignore[valid-type, misc]
    def __init__(self, me: str, partners: list[str], conf: Any) -> None:
        super().__init__(me, partners, conf)
        self.data: dict[str, bytes] = {}

    @replicated  # type: ignore[untyped-decorator]
    def put(self, key: str, value: bytes) -> int:
        self.data[key] = value
        return len(self.data)


def _wait_file(path: Path, deadline: float) -> bool:
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", dest="me", required=True)
    ap.add_argument("--partners", required=True)
    ap.add_argument("--journal", required=True)
    ap.add_argument("--writes", type=int, required=True)
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--go", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--linger", type=float, default=300.0)
    a = ap.parse_args()

    conf = SyncObjConf(
        journalFile=a.journal,
        fullDumpFile=a.journal + ".dump",
        dynamicMembershipChange=False,
        commandsQueueSize=max(100_000, a.window * 4),
    )
    kv = KV(a.me, a.partners.split(","), conf)
    deadline = time.monotonic() + a.timeout
    while not (kv.isReady() and kv._getLeader() is not None):
        if time.monotonic() > deadline:
            raise SystemExit("no leader within the timeout")
        time.sleep(0.05)
    Path(a.ready).write_text(str(kv._getLeader()))
    if not _wait_file(Path(a.go), deadline):
        raise SystemExit("no go signal within the timeout")

    value = os.urandom(a.size)
    window = threading.BoundedSemaphore(a.window)
    lock = threading.Lock()
    sent = [0] * a.writes
    done = [0] * a.writes
    errors: dict[str, int] = {}
    finished = threading.Event()
    remaining = [a.writes]

    def callback_for(i: int) -> Any:
        def cb(_result: Any, error: Any) -> None:
            now = time.monotonic_ns()
            with lock:
                if error == 0:  # FAIL_REASON.SUCCESS
                    done[i] = now
                else:
                    errors[str(error)] = errors.get(str(error), 0) + 1
                remaining[0] -= 1
                if remaining[0] == 0:
                    finished.set()
            window.release()

        return cb

    prefix = a.me.replace(":", "_")
    for i in range(a.writes):
        if not window.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
        sent[i] = time.monotonic_ns()
        kv.put(f"{prefix}/{i:08d}", value, callback=callback_for(i))
    finished.wait(max(0.0, deadline - time.monotonic()))
    lat = sorted((d - s) / 1e6 for s, d in zip(sent, done, strict=True) if d and s)
    with lock:
        result = {
            "node": a.me,
            "writes": a.writes,
            "committed": len(lat),
            "errors": errors,
            "first_send_ns": min((s for s in sent if s), default=0),
            "last_commit_ns": max(done, default=0),
            "latencies_ms": lat,
        }
    tmp = Path(a.out + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.rename(a.out)
    time.sleep(a.linger)  # stay in the cluster until the parent stops us


if __name__ == "__main__":
    main()
