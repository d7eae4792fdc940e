"""`make bench` section "backup" (issue 17): export, deep verify and restore throughput of a
chain of >= 100k transactions, and whether the exporter's memory stays flat.

One Raft validator as a local `consortium-node` process (fsync on, the benchmark consensus
settings of bench/ours.py) is loaded with signed kv puts by `run_bench` in two stages: a
backup is exported after the first fifth of the txs (the "small" chain) and again after all
of them (the "large" chain), each while the node runs. Each operation runs in its own Python
process so its peak RSS (ru_maxrss, interpreter included) is its own: export (online, from
the node's data dir), `verify --replay` and restore into an empty data dir. Memory is flat
when the large chain's export RSS is about the small chain's although the chain is 5x
longer (figures from /proc/self/status: VmHWM, RssAnon). MiB = backup bytes; blocks/s and tx/s over the operation's wall time (export's time
minus its wait for the certifying block H+1, reported apart)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from consortium_node.config import NodeConfig

from .ours import Load, local_net, measure

# Peak and final memory of THIS process from /proc (ru_maxrss would not do: Linux keeps the
# forking parent's high-water mark across exec). VmHWM counts LMDB's mapped file pages too
# (page cache, reclaimable); RssAnon is the process's own heap at the end of the step.
_MEM = """
def mem():
    f = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    return {k: int(f[k].split()[0]) for k in ("VmHWM", "RssAnon", "RssFile")}
"""
_EXPORT = """
import json, sys, time
from pathlib import Path
{MEM}from consortium_node.backup.export import export_backup
r = export_backup(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps({"height": r.manifest.height, "bytes": r.bytes, "seconds": r.seconds,
  "waited_s": r.waited, **mem()}))
"""
_VERIFY = """
import json, sys, time
from pathlib import Path
{MEM}from consortium_node.backup.archive import verify_backup
t0 = time.monotonic()
verify_backup(Path(sys.argv[1]), deep=True)
print(json.dumps({"seconds": time.monotonic() - t0, **mem()}))
"""
_RESTORE = """
import json, sys, time
from pathlib import Path
{MEM}from consortium_node.backup.restore import restore_backup
t0 = time.monotonic()
restore_backup(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps({"seconds": time.monotonic() - t0, **mem()}))
"""


def _py(code: str, *args: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", code.replace("{MEM}", _MEM), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"backup bench step failed: {out.stderr.strip()[-500:]}")
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return doc


def _rates(step: dict[str, Any], size: int, blocks: int, txs: int, secs: float) -> dict[str, Any]:
    secs = max(secs, 1e-9)
    return {
        "seconds": round(secs, 2),
        "mib_per_s": round(size / 2**20 / secs, 1),
        "blocks_per_s": round(blocks / secs, 0),
        "tx_per_s": round(txs / secs, 0),
        "peak_rss_mib": round(step["VmHWM"] / 1024, 1),  # incl. mapped LMDB pages
        "anon_rss_mib": round(step["RssAnon"] / 1024, 1),  # own heap, at the end
    }


def bench_backup(txs: int, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"txs": txs, "how": __doc__.split("\n\n")[0] if __doc__ else ""}
    with local_net("raft", 1, work / "backup-net") as net:
        cfg = NodeConfig.load(net.nodes[0].directory / "config.yaml")
        stages = (("small", txs // 5), ("large", txs - txs // 5))
        committed = 0
        for name, n in stages:
            load = measure(net, Load(txs=n, streams=4, batch=128, size=100))
            committed += int(load["committed"])
            dest = work / f"backup-{name}"
            exp = _py(_EXPORT, cfg.data_dir, cfg.genesis_file, dest)
            size, blocks = int(exp["bytes"]), int(exp["height"])
            stage: dict[str, Any] = {
                "committed_txs": committed,
                "blocks": blocks,
                "backup_mib": round(size / 2**20, 1),
                "export": {
                    **_rates(exp, size, blocks, committed, exp["seconds"] - exp["waited_s"]),
                    "certifier_wait_s": round(exp["waited_s"], 2),
                },
            }
            ver = _py(_VERIFY, dest)
            stage["verify_replay"] = _rates(ver, size, blocks, committed, ver["seconds"])
            res = _py(_RESTORE, dest, work / f"restored-{name}", cfg.genesis_file)
            stage["restore"] = _rates(res, size, blocks, committed, res["seconds"])
            out[name] = stage
    small, large = out["small"]["export"], out["large"]["export"]
    for k in ("peak_rss_mib", "anon_rss_mib"):
        out[f"export_{k}_growth"] = round(large[k] / max(small[k], 1e-9), 2)
    return out
