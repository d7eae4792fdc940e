"""The operator caps glibc's malloc arenas at start (consortium_operator.__main__
limit_malloc_arenas): threads that allocate then share MALLOC_ARENAS arenas instead of one
each. Counted with glibc's malloc_info in a fresh interpreter per case."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest
from consortium_operator.__main__ import MALLOC_ARENAS

pytestmark = pytest.mark.unit

# 12 threads allocate (and hold) blocks above pymalloc's 512 B limit, so each goes to malloc
# from its thread's arena; then malloc_info's <heap nr=...> elements are counted.
PROBE = """
import ctypes, sys, tempfile, threading
from consortium_operator.__main__ import limit_malloc_arenas
limited = limit_malloc_arenas() if sys.argv[1] == "limit" else False
held, barrier = [], threading.Barrier(12)
def work():
    mine = [bytes(4096 + i) for i in range(200)]
    barrier.wait()  # every thread allocates while the others are alive too
    held.append(mine)
threads = [threading.Thread(target=work) for _ in range(12)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(limited, open(f.name).read().count("<heap nr="))
"""


def _arenas(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "gnu_get_libc_version"), reason="arenas are glibc's"
)
def test_threads_share_at_most_the_capped_arenas() -> None:
    limited, capped = _arenas("limit")
    assert limited == "True"
    assert capped <= MALLOC_ARENAS
    _, default = _arenas("default")
    assert default > MALLOC_ARENAS, "the probe must make glibc create more arenas by default"


def test_an_explicit_malloc_arena_max_is_left_to_glibc() -> None:
    limited, _ = _arenas("limit", env={**os.environ, "MALLOC_ARENA_MAX": "4"})
    assert limited == "False"
