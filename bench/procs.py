"""Every process the benchmarks spawn goes through `Procs`: its own session (so a group
kill reaches its children), a log file, and a guaranteed kill on exit, on SIGTERM and on
Ctrl-C. CPU and memory figures come from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of /proc/PID/stat; the command name (field
    2) may hold spaces and parentheses, so fields are counted after its last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(rest[11]), int(rest[12])


def cpu_seconds(pids: Iterable[int]) -> float:
    """Summed user+system CPU seconds of the live processes in `pids` (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            u, s = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        total += u + s
    return total / CLK_TCK


def parse_status_kib(text: str, field: str) -> int:
    """A `Field:   N kB` value (KiB) from the text of /proc/PID/status; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int, peak: bool = False) -> float:
    """Resident memory (VmRSS, or VmHWM when `peak`) of one process in MiB; 0 when gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return parse_status_kib(text, "VmHWM" if peak else "VmRSS") / 1024


class Procs:
    """Spawned processes, killed (SIGTERM to the group, then SIGKILL) by `stop_all`."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def spawn(
        self,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        self._logs.append(out)
        p = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def stop(self, procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for p in procs:
            if p in self.procs:
                self.procs.remove(p)

    def stop_all(self) -> None:
        self.stop(list(reversed(self.procs)))
        for f in self._logs:
            f.close()
        self._logs.clear()
