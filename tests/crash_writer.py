"""Subprocess for the crash test: writes readings forever, prints each committed seq.

A line ``stored <seq>`` is printed only from the store's commit listener, i.e. after the
transaction holding that reading has committed (synchronous=FULL): it is "reported stored".
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from gateway.config import StoreSection
from gateway.store import Commit, Store
from tests.helpers import event, reading

ROOT = Path(__file__).resolve().parent.parent


def spawn(db: Path) -> subprocess.Popen[bytes]:
    """Start this writer on ``db`` and wait for its ``ready`` line (killed if it never comes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(db)],
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


async def main(path: Path) -> None:
    store = await Store.open(path, StoreSection(batch_max_rows=50, batch_max_ms=5))
    out = sys.stdout

    def listener(commit: Commit) -> None:
        for seq in [*(r.seq for r in commit.readings), *(e.seq for e in commit.events)]:
            out.write(f"stored {seq}\n")
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
    asyncio.run(main(Path(sys.argv[1])))
