"""The one bounded wait of the tests and benchmarks: poll observable state until it holds.

`wait_for(cond, within, what)` calls `cond` every `every` seconds until it returns a truthy
value, and returns that value; after `within` seconds it raises `WaitTimeout` naming `what`,
the last error `cond` raised (only the types in `retry_on` are retried, anything else
propagates at once), and `diagnostics()` when given. It never sleeps past the deadline by
more than one interval and always probes at least once.

A wait stands for synchronisation on something we cannot be told about (a process's ready
file, a node's height, an object in the API server); it is never a fixed sleep.

Used by tests/integration (localnets, nodeproc, the node tests), tests/e2e, the kube-apiserver
harness (`apiserver.py`) and bench/."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out (a failed expectation in a test; benchmarks catch it)."""


def wait_for(
    cond: Callable[[], T | None],
    within: float,
    what: str,
    every: float = 0.05,
    *,
    retry_on: tuple[type[BaseException], ...] = (),
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Polls `cond` until it returns a truthy value (returned); WaitTimeout after `within`
    seconds (see the module docstring)."""
    deadline = time.monotonic() + within
    last_error = ""
    while True:
        try:
            value = cond()
        except retry_on as e:
            last_error = " ".join(f"{type(e).__name__}: {e}".split())[:2000]
        else:
            if value:
                return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            extra = diagnostics() if diagnostics is not None else ""
            raise WaitTimeout(
                f"timed out after {within:g}s waiting for {what}"
                + (f"\nlast error: {last_error}" if last_error else "")
                + (f"\n{extra}" if extra else "")
            )
        time.sleep(min(every, remaining))
