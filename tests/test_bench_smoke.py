"""`make bench` keeps running: every bench module, in its quick form, ends without an error
and gives well-formed figures (a table, then one JSON line per figure).

No figure is judged here (speed is measured in bench/, never asserted in tests): this only
keeps the benches from rotting. One did: bench/automations.py raised the engine's rate
limit while the loop guard kept the old one, and `make bench` stopped with a TimeoutError.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import MODULES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)  # ~45 s here; the six benches in turn, on a loaded CI machine
def test_every_bench_runs_and_gives_well_formed_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    figures = [json.loads(line) for line in lines if line.startswith("{")]
    assert {f["bench"] for f in figures} == set(MODULES)
    for f in figures:
        assert isinstance(f["name"], str) and f["name"], f
        assert isinstance(f["value"], int | float) and math.isfinite(f["value"]), f
        assert isinstance(f.get("unit"), str), f
        assert f["quick"] is True
    # the table lists each figure once, before the JSON lines
    table = lines[: lines.index("")]
    assert table[0].split()[:2] == ["bench", "figure"]
    assert len(table) == 2 + len(figures)
