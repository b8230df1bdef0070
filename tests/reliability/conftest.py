"""The reliability suite: fuzzing samples, malicious files, interrupted writes, bad CLI invocations.

The fuzzing harness lives in plain modules of this folder (``fuzz_*.py``) so that
``benchmarks/bench_fuzz.py`` runs the very same targets; they are put on the path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
