"""The golden consensus tests share the simulator's fakes (`tests.sim.fakes`). `python -m pytest`
(the Makefile's way) has the repository root on sys.path already; this makes a bare `pytest`
work too. (`pythonpath = ["."]` in [tool.pytest.ini_options] would make this file unnecessary.)"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
