"""The gateway SIGKILLed at random moments while ingesting and syncing: afterwards the broker
has seen every sequence number the store accepted (duplicates are counted, not failures)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.broker import Collector, Mosquitto

ROOT = Path(__file__).resolve().parent.parent
KILLS = 12
TELEMETRY = "migw/testgw/telemetry"


async def _spawn(state: Path, url: str, *extra: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sync_gateway_proc",
        str(state),
        url,
        *extra,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready", line


@pytest.mark.slow
async def test_sigkill_while_syncing_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, record_property: Callable[[str, object], None]
) -> None:
    rng = random.Random(5)
    state = tmp_path / "state"
    status = "migw/testgw/status"
    async with Collector(mosquitto.port, [TELEMETRY, status]) as col:
        for i in range(KILLS):
            proc = await _spawn(state, mosquitto.url)
            try:
                await _ready(proc)
                if i == 0:
                    await col.wait_for(lambda: col.on(status))
                await asyncio.sleep(rng.uniform(0.2, 1.2))
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            if i == 0:
                # the broker publishes the Last Will: retained "offline"
                await col.wait_for(
                    lambda: [m.payload for m in col.on(status)][-2:] == [b"online", b"offline"]
                )
        proc = await _spawn(state, mosquitto.url, "--drain")
        await _ready(proc)
        assert await asyncio.wait_for(proc.wait(), 90) == 0
        db = sqlite3.connect(state / "state.db")
        try:
            accepted = {r[0] for r in db.execute("SELECT seq FROM history")}
            left = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        finally:
            db.close()
        assert left == 0
        assert len(accepted) > KILLS * 50
        await col.wait_for(lambda: accepted <= set(col.seqs(TELEMETRY)), 30)
        received = col.seqs(TELEMETRY)
        missing = accepted - set(received)
        assert not missing
        dups = len(received) - len(set(received))
        record_property("accepted", len(accepted))
        record_property("duplicates", dups)
        print(
            f"{KILLS} SIGKILLs: {len(accepted)} readings accepted, all delivered, {dups} duplicates"
        )
