"""The clock the runtime reads: `SystemClock` in a running node, a fake in tests/sim and unit
tests. Injected into runtime/node.py `Node`; chain state itself never reads a clock (block
times come from here through the proposer and are checked only for monotonicity)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (batch windows, latency metrics)."""
        ...

    def wall_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (block header times)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)
