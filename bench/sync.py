"""Sync agent figures against a real Mosquitto on loopback.

* backlog drain, batched: readings/s from a backlog of 1,000,000 readings (quick: 100,000)
  in the outbox to PUBACKed-and-deleted, with the default batch size;
* the naive peer: one MQTT message per reading, from the same outbox (rows read 500 at a
  time, each published as its own QoS 1 message with up to 20 in flight, rows deleted
  after their PUBACKs), measured on a smaller backlog of the same readings;
* drain rate while live ingest continues (the tests' synthetic driver, ``tests/synth.py``,
  at LIVE_RATE readings/s over 20 devices);
* RSS of a service whose broker is away while its outbox grows (disk-backed, not in RAM).

A ``mosquitto_sub`` consumer subscribes to the telemetry at QoS 1 in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.config import ApiSection, Config, GatewaySection, HomeAssistantSection, UpstreamSection
from gateway.driver import Driver
from gateway.model import Reading, Stamp
from gateway.service import Service
from gateway.store import OutboxRow, Store
from gateway.sync import SyncAgent
from gateway.sync.mqtt import BrokerSettings, open_link
from gateway.sync.outbox import Outbox
from gateway.sync.payload import ClockFix, encode_batch
from tests.synth import SynthDriver

ROOT = Path(__file__).resolve().parent.parent
LIVE_RATE = 2000.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _mosquitto(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _port()
    conf = directory / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "max_queued_messages 0",
        "max_inflight_messages 0",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def _consumer(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            shutil.which("mosquitto_sub") or "mosquitto_sub",
            "-p",
            str(port),
            "-q",
            "1",
            "-t",
            "migw/+/telemetry",
            "-i",
            f"bench-consumer-{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _config(state: Path, url: str, **upstream: Any) -> Config:
    up: dict[str, Any] = {"url": url, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5}
    up.update(upstream)
    return Config(
        gateway=GatewaySection(id="bench", state_dir=state),
        api=ApiSection(enabled=False),
        upstream=UpstreamSection(**up),
        homeassistant=HomeAssistantSection(enabled=False),
    )


async def _fill(path: Path, n: int) -> None:
    """A backlog of ``n`` readings in the outbox (what an outage leaves behind)."""
    store = await Store.open(path)
    try:
        now = time.time()
        for i in range(n):
            store.add_reading(
                Reading(
                    device_id=f"ble-a4c1380000{i % 50:02d}",
                    metric=("temperature", "humidity", "battery")[i % 3],
                    value=20.0 + (i % 100) / 10,
                    unit=("°C", "%", "%")[i % 3],
                    stamp=Stamp(
                        wall=now + i * 1e-3, mono=1.0 + i * 1e-3, boot="bench", synced=True
                    ),
                    source="bench",
                )
            )
            if i % 500 == 0:
                await asyncio.sleep(0)
                while store.pending() > 20_000:
                    await asyncio.sleep(0.002)
        await store.flush()
    finally:
        await store.close()


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


async def _drain(state: Path, url: str, n: int, live: float = 0.0, **upstream: Any) -> float:
    """Seconds from start until the ``n`` backlog readings are acknowledged and deleted."""
    drivers: list[Driver] = [SynthDriver(devices=20, rate=live)] if live else []
    cfg = _config(state, url, drain_rate=10_000_000, **upstream)
    async with Service(cfg, drivers=drivers) as svc:
        store = svc.store
        assert store is not None
        outbox = Outbox(store)
        t0 = time.perf_counter()
        async with asyncio.timeout(900):
            while True:
                await asyncio.sleep(0.02)
                oldest, _ = await outbox.oldest()
                if oldest is None or oldest > n:
                    break
        return time.perf_counter() - t0


async def _naive(state: Path, url: str, n: int) -> float:
    """Seconds to drain ``n`` readings as one QoS 1 message per reading."""
    store = await Store.open(state / "state.db")
    try:
        outbox = Outbox(store)
        settings = BrokerSettings(url=url, client_id="bench-naive")
        link = await open_link(settings, will_topic="migw/bench/status", timeout_s=10)
        fix = ClockFix("bench", None)
        async with link:
            t0 = time.perf_counter()
            slots = asyncio.Semaphore(20)
            batch = 0

            async def one(row: OutboxRow) -> None:
                nonlocal batch
                await slots.acquire()
                try:
                    batch += 1
                    enc = encode_batch("bench", batch, [row], fix)
                    fut = link.send("migw/bench/telemetry", enc.payload, qos=1)
                    await link.wait_ack(fut, 30)
                finally:
                    slots.release()

            cursor = 0
            while True:
                rows = await outbox.fetch(cursor, 500)
                if not rows:
                    break
                cursor = rows[-1].seq
                async with asyncio.TaskGroup() as tg:
                    for row in rows:
                        tg.create_task(one(row))
                await outbox.ack([(rows[0].seq, rows[-1].seq)])
            return time.perf_counter() - t0
    finally:
        await store.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _rss_figures(tmp: Path, target: int) -> list[dict[str, Any]]:
    """RSS of a service (child process) ingesting with its broker away, at 10% and 100% of
    a ``target``-row outbox."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.sync", "--rss-child", str(tmp / "rss"), str(_port())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    samples: list[tuple[int, int]] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 600
        for raw in child.stdout:
            rows = int(raw.split()[0])
            samples.append((rows, _rss_kib(child.pid)))
            if rows >= target or time.monotonic() > deadline:
                break
    finally:
        child.kill()
        child.wait()
    early = next((kib for rows, kib in samples if rows >= target // 10), samples[0][1])
    late = samples[-1][1]
    return [
        {"name": "RSS at 10% of the offline backlog", "value": early / 1024, "unit": "MiB"},
        {
            "name": f"RSS at {samples[-1][0]:,} rows offline backlog",
            "value": late / 1024,
            "unit": "MiB",
            "peer": "RSS at 10%",
            "peer_value": early / 1024,
            "ratio": late / early if early else 0.0,
            "target": "flat (ratio ~1)",
        },
    ]


async def _rss_child(state: Path, dead_port: int) -> None:
    live = SynthDriver(devices=20, rate=20_000)
    cfg = _config(state, f"mqtt://127.0.0.1:{dead_port}")
    async with Service(cfg, drivers=[live]) as svc:
        agent = _agent(svc)
        while True:
            await asyncio.sleep(0.5)
            print(agent.stats()["outbox"]["rows"], flush=True)


def run(quick: bool) -> list[dict[str, Any]]:
    backlog = 100_000 if quick else 1_000_000
    naive_n = 10_000 if quick else 30_000
    live_backlog = backlog // 5
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="migw-bench-sync-") as d:
        tmp = Path(d)
        broker, port = _mosquitto(tmp)
        consumer = _consumer(port)
        url = f"mqtt://127.0.0.1:{port}"
        try:
            time.sleep(0.3)
            batched_state = tmp / "batched"
            asyncio.run(_fill(batched_state / "state.db", backlog))
            secs = asyncio.run(_drain(batched_state, url, backlog))
            batched = backlog / secs
            naive_state = tmp / "naive"
            asyncio.run(_fill(naive_state / "state.db", naive_n))
            naive = naive_n / asyncio.run(_naive(naive_state, url, naive_n))
            out.append(
                {
                    "name": f"backlog drain, {backlog:,} readings, batched",
                    "value": batched,
                    "unit": "readings/s",
                    "peer": "one message per reading",
                    "peer_value": naive,
                    "ratio": batched / naive,
                    "target": ">= 20x",
                }
            )
            live_state = tmp / "live"
            asyncio.run(_fill(live_state / "state.db", live_backlog))
            secs = asyncio.run(_drain(live_state, url, live_backlog, live=LIVE_RATE))
            out.append(
                {
                    "name": f"backlog drain while {LIVE_RATE:,.0f} live readings/s flow",
                    "value": live_backlog / secs,
                    "unit": "readings/s",
                }
            )
        finally:
            consumer.terminate()
            broker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.wait(5)
        out += _rss_figures(tmp, 200_000 if quick else 1_000_000)
    return out


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rss-child":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_rss_child(Path(sys.argv[2]), int(sys.argv[3])))
    else:
        import json

        for fig in run("--quick" in sys.argv):
            print(json.dumps(fig, ensure_ascii=False))
