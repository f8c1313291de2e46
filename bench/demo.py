"""Whole-service figures of the demo (issue 18), each run in a fresh child process:

* start to READY: from spawning ``python`` (imports included, what systemd waits for) to the
  service's READY, and from entering ``Service`` to READY;
* the 1,000-sensor demo (``migw run --demo`` with 1,000 simulated BLE sensors at 1 advert/s
  plus the Zigbee and GPIO demo, no uplink): CPU share of one core, CPU per committed
  reading (the whole path: advert -> decode -> dedup -> ingest -> commit), and peak RSS;
* the top costs of that run by own CPU time of the event-loop thread (cProfile on
  ``time.thread_time``, in a separate run: profiling slows it; SQLite's thread is not in it).

CPU is the child's user+system time (``resource.getrusage``) over a steady window after a
warm-up; readings are the store's sequence numbers committed in that window. Nothing here
reaches into the store: it reads ``Store.last_seq`` and the service's READY event.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SENSORS = 1000
RATE = 1.0  # adverts per second per sensor
#: The goals and the figures before (issue 18's table), shown beside each figure.
CPU_GOAL = "<= 5 % of one core"
CPU_BEFORE = 15.0
RSS_GOAL = "<= 64 MB"
RSS_BEFORE = 75.0
READY_GOAL = "<= 1 s"
TOP = 6


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _child(state: Path, warmup: float, window: float, sensors: int, profile: bool) -> None:
    t_enter = time.perf_counter()
    from gateway.adapters import DemoOptions
    from gateway.config import Config
    from gateway.demo import demo_config
    from gateway.service import Service

    cfg = demo_config(Config(), state, _port())
    options = DemoOptions(ble_devices=sensors, ble_rate=RATE, zigbee=True)
    t_service = time.perf_counter()
    async with Service(cfg, demo=options) as svc:
        await svc.ready.wait()
        t_ready = time.perf_counter()
        print(json.dumps({"ready": True}), flush=True)
        await asyncio.sleep(warmup)
        store = svc.store
        assert store is not None
        seq0, cpu0, t0 = store.last_seq, _cpu(), time.perf_counter()
        # the event loop thread's own CPU time (aiosqlite's thread is not profiled)
        prof = cProfile.Profile(time.thread_time) if profile else None
        if prof is not None:
            prof.enable()
        await asyncio.sleep(window)
        if prof is not None:
            prof.disable()
        seq1, cpu1, t1 = store.last_seq, _cpu(), time.perf_counter()
    result: dict[str, Any] = {
        "imports_s": t_service - t_enter,
        "service_to_ready_s": t_ready - t_service,
        "cpu_s": cpu1 - cpu0,
        "wall_s": t1 - t0,
        "readings": seq1 - seq0,
        "peak_rss_mb": _peak_rss_mb(),
    }
    if prof is not None:
        stats = pstats.Stats(prof)
        total = sum(v[2] for v in stats.stats.values()) or 1.0
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)
        result["top"] = [
            (f"{Path(f).name}:{line} {name}", 100 * v[2] / total)
            for (f, line, name), v in rows[:TOP]
        ]
    print(json.dumps(result), flush=True)


def _spawn(
    warmup: float, window: float, sensors: int, profile: bool
) -> tuple[float, dict[str, Any]]:
    """(seconds from spawn to READY, the child's result)."""
    with tempfile.TemporaryDirectory(prefix="migw-bench-demo-") as d:
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'hw-mocks'}")
        args = [str(warmup), str(window), str(sensors), "1" if profile else "0"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.demo", "--child", d, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        ready_after = float("nan")
        result: dict[str, Any] = {}
        for line in proc.stdout:
            got = json.loads(line)
            if got.get("ready"):
                ready_after = time.perf_counter() - t0
            else:
                result = got
        if proc.wait(60) != 0 or not result:
            raise RuntimeError(f"the demo child failed (exit {proc.returncode})")
        return ready_after, result


def run(quick: bool) -> list[dict[str, Any]]:
    warmup, window = (3.0, 5.0) if quick else (5.0, 20.0)
    ready_after, r = _spawn(warmup, window, SENSORS, profile=False)
    cpu_pct = 100 * r["cpu_s"] / r["wall_s"]
    per_reading = 1e6 * r["cpu_s"] / r["readings"] if r["readings"] else float("nan")
    out: list[dict[str, Any]] = [
        {
            "name": "start to READY (demo, process spawn, imports included)",
            "value": ready_after,
            "unit": "s",
            "peer": "Service() to READY",
            "peer_value": r["service_to_ready_s"],
            "target": READY_GOAL,
        },
        {
            "name": f"CPU, demo with {SENSORS:,} BLE sensors at {RATE:g}/s + Zigbee, no uplink",
            "value": cpu_pct,
            "unit": "% of one core",
            "peer": "before (issue 18)",
            "peer_value": CPU_BEFORE,
            "ratio": cpu_pct / CPU_BEFORE,
            "target": CPU_GOAL,
        },
        {
            "name": "CPU per committed reading, whole path (advert to commit)",
            "value": per_reading,
            "unit": "µs/reading",
            "peer": "readings/s in the run",
            "peer_value": r["readings"] / r["wall_s"],
        },
        {
            "name": f"peak RSS, demo with {SENSORS:,} BLE sensors",
            "value": r["peak_rss_mb"],
            "unit": "MB",
            "peer": "before (issue 18)",
            "peer_value": RSS_BEFORE,
            "ratio": r["peak_rss_mb"] / RSS_BEFORE,
            "target": RSS_GOAL,
        },
    ]
    if not quick:
        _, p = _spawn(warmup, window / 2, SENSORS, profile=True)
        for i, (where, share) in enumerate(p.get("top", []), 1):
            out.append({"name": f"top cost {i}: {where}", "value": share, "unit": "% loop CPU"})
    return out


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        w, win, n, prof = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        asyncio.run(_child(Path(sys.argv[2]), w, win, n, prof == "1"))
    else:
        for fig in run("--quick" in sys.argv):
            print(json.dumps(fig, ensure_ascii=False))
