"""Store figures: durable batched ingest vs one commit per reading, bytes per reading, and
the peak RSS of the demo service."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.config import StoreSection
from gateway.model import Reading, Stamp
from gateway.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _readings(n: int, mono_step: float = 0.0) -> list[Reading]:
    """``n`` readings of 50 sensors; all stamped with the monotonic time 1.0 (the figure
    this bench has always measured: SQLite stores that integral REAL in no bytes) unless
    ``mono_step`` gives each its own, as real stamps have."""
    now = time.time()
    return [
        Reading(
            device_id=f"ble-a4c1380000{i % 50:02d}",
            metric=("temperature", "humidity", "battery")[i % 3],
            value=20.0 + (i % 100) / 10,
            unit="°C",
            stamp=Stamp(wall=now, mono=1.0 + i * mono_step, boot="bench", synced=True),
            source="bench",
        )
        for i in range(n)
    ]


def _written_bytes() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


async def _ingest(store: Store, readings: list[Reading]) -> None:
    """Ingest as fast as the store commits, until everything is committed."""
    for i, r in enumerate(readings):
        store.add_reading(r)
        if i % 250 == 0:
            # a radio delivers in bursts between loop turns; keep the queue bounded
            await asyncio.sleep(0)
            while store.pending() > 5000:
                await asyncio.sleep(0.001)
    await store.flush()


async def _batched(path: Path, readings: list[Reading]) -> tuple[float, int]:
    store = await Store.open(path)
    try:
        io0 = _written_bytes()
        t0 = time.perf_counter()
        await _ingest(store, readings)
        dt = time.perf_counter() - t0
    finally:
        await store.close()
    # after the close: its final checkpoint copies the WAL into the database file
    return len(readings) / dt, _written_bytes() - io0


#: This bench's figure with schema 3 (200,000 readings, final checkpoint included),
#: measured at commit a2827da on the 2-core x86 development machine (schema 1, 495e46b: 503.2).
PREVIOUS_BYTES_PER_READING = 163.5
#: The store CPU figures (demo shape) before the issue-18 store pass, at da520bc (best of 6
#: runs interleaved with the new code on the 2-core x86 development machine).
LOOP_US_BEFORE = 23.8
CPU_US_BEFORE = 40.7
#: The backlog's peak RSS above the open store at 61feca2 (where that figure was added).
BACKLOG_MB_BEFORE = 9.8
#: The API queries' figures (ms, median) before the page caches were made 256 KiB, at
#: da520bc (the mean of 3 runs interleaved with the new setting).
QUERY_MS_BEFORE = {
    "history, a device's last 1,000": 9.9,
    "history, its last 100 of a metric": 2.05,
    "state of a device": 0.10,
}


async def _breakdown(path: Path, readings: list[Reading]) -> dict[str, float]:
    """Where the bytes go: the WAL (every dirty page of every commit) vs the checkpoints
    (each page once per checkpoint), and the tables' content, per reading."""
    store = await Store.open(path)
    try:
        # no automatic checkpoint during the run: what the WAL receives is measured alone
        await store._db.execute("PRAGMA wal_autocheckpoint=0")
        io0 = _written_bytes()
        await _ingest(store, readings)
        io1 = _written_bytes()
        await store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        io2 = _written_bytes()
    finally:
        await store.close()
    n = len(readings)
    out = {"WAL": (io1 - io0) / n, "checkpoint": (io2 - io1) / n}
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        for name, size in rows:
            if size / n >= 1:
                out[f"table {name}"] = size / n
    except sqlite3.Error:
        pass  # an SQLite built without dbstat
    finally:
        con.close()
    return out


#: The demo's shape: 1,000 sensors, ~700 readings/s, a commit every ~100 ms (70 readings).
DEMO_SENSORS = 1000
DEMO_BATCH = 70


def _demo_readings(n: int) -> list[Reading]:
    """``n`` readings of the demo's 1,000 sensors, each with its own stamps."""
    now = time.time()
    return [
        Reading(
            device_id=f"ble-a4c13800{i % DEMO_SENSORS:04d}",
            metric=("temperature", "humidity", "battery")[i // DEMO_SENSORS % 3],
            value=20.0 + (i % 100) / 10 if i // DEMO_SENSORS % 3 != 2 else 90 + i % 10,
            unit=("°C", "%", "%")[i // DEMO_SENSORS % 3],
            stamp=Stamp(wall=now + i / 700, mono=100.0 + i / 700, boot="bench", synced=True),
            source="bench",
        )
        for i in range(n)
    ]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _demo_shaped(path: Path, readings: list[Reading]) -> tuple[float, float]:
    """(µs of the event loop's thread, µs of the process) per reading, for the store alone
    in the demo's shape: commits of DEMO_BATCH readings, no uplink (the outbox is kept at
    its newest items at each commit). A batch's readings arrive one per turn of the event
    loop (as adverts do), then it is committed (flush)."""
    store = await Store.open(path, StoreSection(batch_max_rows=DEMO_BATCH), uplink=lambda: False)
    try:
        warm = 20 * DEMO_BATCH
        for r in readings[:warm]:
            store.add_reading(r)
        await store.flush()
        loop0, cpu0 = time.thread_time(), _cpu()
        for i in range(warm, len(readings), DEMO_BATCH):
            for r in readings[i : i + DEMO_BATCH]:
                store.add_reading(r)
                await asyncio.sleep(0)
            await store.flush()
        loop1, cpu1 = time.thread_time(), _cpu()
    finally:
        await store.close()
    n = len(readings) - warm
    return 1e6 * (loop1 - loop0) / n, 1e6 * (cpu1 - cpu0) / n


async def _queries(path: Path) -> dict[str, float]:
    """Median ms of the API's queries on the service's read connection (its page cache as
    configured), over a store the run filled: a device's last 1,000 readings, its last 100
    of one metric, its latest values."""
    store = await Store.open(path)
    try:
        out: dict[str, float] = {}
        for name, query in (
            ("history, a device's last 1,000", lambda d: store.history(d, limit=1000)),
            (
                "history, its last 100 of a metric",
                lambda d: store.history(d, "humidity", limit=100),
            ),
            ("state of a device", store.state),
        ):
            times = []
            for i in range(30):
                t0 = time.perf_counter()
                await query(f"ble-a4c1380000{i % 50:02d}")
                times.append(time.perf_counter() - t0)
            out[name] = 1000 * sorted(times)[len(times) // 2]
        return out
    finally:
        await store.close()


def _naive(path: Path, readings: list[Reading]) -> float:
    """The common hobby-gateway way: one INSERT + COMMIT (synchronous=FULL) per reading."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute(
        "CREATE TABLE r (seq INTEGER PRIMARY KEY, dev TEXT, metric TEXT, value REAL, ts REAL)"
    )
    t0 = time.perf_counter()
    for r in readings:
        con.execute("BEGIN")
        con.execute(
            "INSERT INTO r (dev, metric, value, ts) VALUES (?,?,?,?)",
            (r.device_id, r.metric, r.value, r.stamp.wall),
        )
        con.execute("COMMIT")
    dt = time.perf_counter() - t0
    con.close()
    return len(readings) / dt


def _demo_peak_rss(seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "--state-dir",
                tmp,
                "--api-port",
                "0",
                "run",
                "--demo",
                "--log-level",
                "WARNING",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        peak = 0
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end and proc.poll() is None:
                try:
                    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]))
                except OSError:
                    break
                time.sleep(0.25)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    return peak / 1024


def run(quick: bool) -> list[dict[str, Any]]:
    n = 20_000 if quick else 200_000
    n_naive = 500 if quick else 3_000
    readings = _readings(n)
    with tempfile.TemporaryDirectory() as tmp:
        rate, written = asyncio.run(_batched(Path(tmp) / "a.db", readings))
        naive = _naive(Path(tmp) / "b.db", readings[:n_naive])
    with tempfile.TemporaryDirectory() as tmp:
        loop_us, cpu_us = asyncio.run(
            _demo_shaped(Path(tmp) / "e.db", _demo_readings(21_000 if quick else 70_000))
        )
    os.sched_yield()
    figures: list[dict[str, Any]] = [
        {
            "name": "store ingest, durable batched commits (1 core)",
            "value": rate,
            "unit": "readings/s",
            "peer": "one commit per reading",
            "peer_value": naive,
            "ratio": rate / naive,
        },
        {
            "name": f"store CPU per reading, demo shape ({DEMO_BATCH}/commit, no uplink), loop",
            "value": loop_us,
            "unit": "µs/reading",
            "peer": "before (da520bc)",
            "peer_value": LOOP_US_BEFORE,
            "ratio": loop_us / LOOP_US_BEFORE,
        },
        {
            "name": "  the same, whole process (SQLite's thread included)",
            "value": cpu_us,
            "unit": "µs/reading",
            "peer": "before (da520bc)",
            "peer_value": CPU_US_BEFORE,
            "ratio": cpu_us / CPU_US_BEFORE,
        },
    ]
    if written >= 0:
        figures.append(
            {
                "name": "disk bytes written per reading (db+wal+checkpoints)",
                "value": written / n,
                "unit": "B/reading",
                "peer": "previous (schema 3, a2827da)",
                "peer_value": PREVIOUS_BYTES_PER_READING,
                "ratio": written / n / PREVIOUS_BYTES_PER_READING,
                "target": "<= 100",
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            parts = asyncio.run(_breakdown(Path(tmp) / "c.db", readings[: min(n, 60_000)]))
        for part, value in parts.items():
            figures.append({"name": f"  of which {part}", "value": value, "unit": "B/reading"})
        n_real = min(n, 60_000)
        with tempfile.TemporaryDirectory() as tmp:
            _, real = asyncio.run(_batched(Path(tmp) / "d.db", _readings(n_real, 0.0123)))
            queries = asyncio.run(_queries(Path(tmp) / "d.db"))
        figures.append(
            {
                "name": "  same, each reading with its own monotonic time (as real stamps)",
                "value": real / n_real,
                "unit": "B/reading",
                "target": "<= 100",
            }
        )
        for name, ms in queries.items():
            figures.append(
                {
                    "name": f"API query on {n_real:,} readings of 50 sensors: {name}",
                    "value": ms,
                    "unit": "ms (median)",
                    "peer": "before (da520bc: SQLite's default 2 MB page cache)",
                    "peer_value": QUERY_MS_BEFORE[name],
                }
            )
    rss, opened, dropped = _backlog_peak_rss(100_000 if quick else 400_000)
    figures.append(
        {
            "name": f"store peak RSS, commits failing, {dropped} of the readings dropped",
            "value": rss,
            "unit": "MB",
            "peer": "the same process once the store was open",
            "peer_value": opened,
        }
    )
    figures.append(
        {
            # the figure above moves with what importing the store loads (33-36 MB at
            # 61feca2, 45 MB since gateway.config loads drivers.ble and cryptography)
            "name": "  of which the pending items (peak above the open store)",
            "value": rss - opened,
            "unit": "MB",
            "peer": "at 61feca2 (35.6 - 25.8 MB)",
            "peer_value": BACKLOG_MB_BEFORE,
            "target": "bounded (pending <= 25,000 items, ~8 MB)",
        }
    )
    figures.append(
        {
            "name": "demo service peak RSS",
            "value": _demo_peak_rss(6 if quick else 20),
            "unit": "MB",
            "target": "< 64",
        }
    )
    return figures


_BACKLOG_SCRIPT = """
import asyncio, sys, time
from pathlib import Path
from gateway.config import StoreSection
from gateway.model import Reading, Stamp
from gateway.store import Store

def rss(key):
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith(key)).split()[1]) / 1024

async def main(path, n):
    store = await Store.open(Path(path))
    opened = rss("VmHWM:")  # the interpreter, the modules the store imports, the open store
    await store._db.execute("PRAGMA query_only=ON")  # every commit fails, as on a full disk
    now = time.time()
    for i in range(n):
        store.add_reading(Reading(f"ble-a4c13800{i % 1000:04d}", "temperature", 20.0 + i % 100 / 10,
                                  "°C", Stamp(now, 1.0, "bench", True), "bench"))
        if i % 1000 == 0:
            await asyncio.sleep(0)
    await store._db.execute("PRAGMA query_only=OFF")
    await store.close()
    print(rss("VmHWM:"), opened, store.counters.dropped_backpressure)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _backlog_peak_rss(n: int) -> tuple[float, float, int]:
    """Peak RSS of a process whose commits all fail while ``n`` readings arrive, its peak
    once the store was open (before any reading), and how many readings were dropped."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", _BACKLOG_SCRIPT, str(Path(tmp) / "s.db"), str(n)],
            cwd=ROOT,
            capture_output=True,
            check=True,
            text=True,
            timeout=300,
        ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])
