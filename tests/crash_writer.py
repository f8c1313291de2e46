"""Subprocess for the crash test: writes readings forever, prints each committed seq.

A line ``stored <seq> <device> <r|e>`` (a reading or an event) is printed only from the
store's commit listener, i.e. after the transaction holding that item has committed
(synchronous=FULL): it is "reported stored". With ``no-uplink`` the store runs as without
an uplink (the outbox trimmed to its newest rows at each commit) with a short history
(:data:`HISTORY` readings, pruned every ``StoreLimits.prune_every`` commits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from gateway.config import StoreSection
from gateway.store import Commit, Store
from tests.helpers import event, reading

ROOT = Path(__file__).resolve().parent.parent


#: Readings kept in the history with ``no-uplink``.
HISTORY = 2000


def spawn(db: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start this writer on ``db`` and wait for its ``ready`` line (killed if it never comes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"ready\n":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError((line, err))
    return proc


async def main(path: Path, uplink: bool) -> None:
    config = StoreSection(batch_max_rows=50, batch_max_ms=5)
    if not uplink:
        config = dataclasses.replace(config, history_max_rows=HISTORY)
    store = await Store.open(path, config, uplink=lambda: uplink)
    out = sys.stdout

    def listener(commit: Commit) -> None:
        for r in commit.readings:
            out.write(f"stored {r.seq} {r.device_id} r\n")
        for e in commit.events:
            out.write(f"stored {e.seq} {e.device_id} e\n")
        out.flush()

    store.subscribe(listener)
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        store.add_reading(reading(f"gpio-{i % 7}", "temperature", float(i)))
        if i % 13 == 0:
            store.add_event(event(f"gpio-{i % 5}"))
        if i % 20 == 0:
            await asyncio.sleep(0.001)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), uplink="no-uplink" not in sys.argv[2:]))
