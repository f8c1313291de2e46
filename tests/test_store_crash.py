"""SIGKILL a writing process at random moments: nothing reported stored may be lost."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path

from tests.crash_writer import spawn

KILLS = 20


def _run_and_kill(db: Path, delay: float) -> list[int]:
    proc = spawn(db)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    # the last line may be cut by the kill: only whole lines count as reported
    lines = out.split(b"\n")[:-1]
    return [int(x.split()[1]) for x in lines if x.startswith(b"stored ")]


def test_sigkill_never_loses_a_reported_reading(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    rng = random.Random(20261129)
    reported: list[int] = []
    for round_ in range(KILLS):
        seqs = _run_and_kill(db, rng.uniform(0.05, 0.6))
        # sequence numbers keep increasing across crashes, never reused
        if reported and seqs:
            assert seqs[0] > reported[-1], f"round {round_}: seq reused after crash"
        assert seqs == sorted(set(seqs))
        reported.extend(seqs)

        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {r[0] for r in con.execute("SELECT seq FROM outbox")}
        finally:
            con.close()
        missing = set(reported) - stored
        assert not missing, f"round {round_}: {len(missing)} reported readings lost"
    assert len(reported) > KILLS * 10, "the writer barely wrote: the test proved nothing"
