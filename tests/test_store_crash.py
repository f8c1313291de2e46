"""SIGKILL a writing process at random moments: nothing reported stored may be lost, and
the state read afterwards is each device's newest reading. With an uplink every reported
item stays in the outbox; without one the outbox is trimmed to its newest rows and the
history pruned at commits, and the kills land in those too."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.store import open_readonly
from gateway.store.limits import StoreLimits
from tests.crash_writer import HISTORY, spawn

KILLS = 20
#: The writer's devices: reading i is gpio-(i % 7)'s, of value i.
DEVICES = 7


def _run_and_kill(db: Path, delay: float, *args: str) -> list[tuple[int, str, str]]:
    """(seq, device, "r" or "e") of the items the writer reported stored before the kill."""
    proc = spawn(db, *args)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    # the last line may be cut by the kill: only whole lines count as reported
    lines = out.split(b"\n")[:-1]
    items = [x.decode().split()[1:] for x in lines if x.startswith(b"stored ")]
    return [(int(seq), device, kind) for seq, device, kind in items]


async def _states(db: Path) -> dict[str, tuple[float, int]]:
    """Each device's temperature (value, seq) as the read-only view (the CLI) reads it."""
    ro = await open_readonly(db)
    try:
        out = {}
        for n in range(DEVICES):
            value, _unit, _ts, seq = (await ro.state(f"gpio-{n}"))["temperature"]
            assert isinstance(value, float)
            out[f"gpio-{n}"] = (value, seq)
        return out
    finally:
        await ro.close()


@pytest.mark.parametrize("uplink", [True, False], ids=["uplink", "no-uplink"])
def test_sigkill_never_loses_a_reported_reading(tmp_path: Path, uplink: bool) -> None:
    db = tmp_path / "state.db"
    rng = random.Random(20261129)
    keep = StoreLimits().no_uplink_max_rows
    reported: list[tuple[int, str, str]] = []
    for round_ in range(KILLS):
        got = _run_and_kill(db, rng.uniform(0.05, 0.6), *(() if uplink else ("no-uplink",)))
        seqs = [seq for seq, _, _ in got]
        # sequence numbers keep increasing across crashes, never reused
        if reported and seqs:
            assert seqs[0] > reported[-1][0], f"round {round_}: seq reused after crash"
        assert seqs == sorted(set(seqs))
        reported.extend(got)

        con = sqlite3.connect(db)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            outbox = [r[0] for r in con.execute("SELECT seq FROM outbox ORDER BY seq")]
            history = {r[0] for r in con.execute("SELECT seq FROM history")}
            newest_of = dict(
                con.execute("SELECT device_id, max(seq) FROM history GROUP BY device_id")
            )
        finally:
            con.close()
        everything = [seq for seq, _, _ in reported]
        if uplink:
            missing = set(everything) - set(outbox)
        else:
            # trimmed to the newest rows committed (a kill may leave some unreported)
            assert min(keep, len(everything)) <= len(outbox) <= keep, f"round {round_}"
            missing = {s for s in everything if s >= outbox[0]} - set(outbox)
        assert not missing, f"round {round_}: {len(missing)} reported items lost"
        readings = [seq for seq, _, kind in reported if kind == "r"]
        # pruned every few commits to its newest HISTORY readings (some maybe unreported)
        newest = readings if uplink else readings[-(HISTORY - 200) :]
        assert not set(newest) - history, f"round {round_}: reported readings lost"

        states = asyncio.run(_states(db))
        for device, (value, seq) in states.items():
            mine = [s for s, d, kind in reported if d == device and kind == "r"]
            # its newest reading committed (reported, or committed just before the kill)
            assert seq == newest_of[device] >= max(mine), f"round {round_}: {device}"
            assert f"gpio-{int(value) % DEVICES}" == device
    assert len(reported) > KILLS * 10, "the writer barely wrote: the test proved nothing"
    # without an uplink: kills after the outbox was trimmed and the history pruned
    assert uplink or len(readings) > 2 * HISTORY, len(readings)
