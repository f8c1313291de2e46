"""The sync agent against a real Mosquitto: batches, seqs, status, commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.service import Service, ServiceTiming
from gateway.store import Store
from gateway.sync import SyncAgent, SyncTiming
from gateway.sync.send import INFLIGHT
from tests.broker import Collector, Mosquitto, faulty_proxy, gateway_config
from tests.synth import SynthDriver


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


async def _pause_and_collect(
    synth: SynthDriver, store: Store, col: Collector, topic: str, timeout: float
) -> int:
    """Stops the source, flushes the store and waits until every seq up to the last one
    handed out has reached the broker on ``topic``; returns that last seq."""
    synth.paused = True
    await store.flush()
    last = store.last_seq
    await col.wait_for(lambda: set(range(1, last + 1)) <= set(col.seqs(topic)), timeout)
    return last


async def test_batches_carry_every_seq_in_order(tmp_path: Path, mosquitto: Mosquitto) -> None:
    synth = SynthDriver(devices=3, rate=400)
    cfg = gateway_config(tmp_path / "state", mosquitto.url)
    async with Collector(mosquitto.port, ["migw/testgw/#"]) as col:
        async with Service(cfg, drivers=[synth]) as svc:
            store = svc.store
            assert store is not None
            await synth.running.wait()
            await col.wait_for(lambda: len(set(col.seqs("migw/testgw/telemetry"))) >= 300)
            await _pause_and_collect(synth, store, col, "migw/testgw/telemetry", 30.0)
            stats = _agent(svc).stats()
            assert stats["state"] == "connected"
        status = [m.payload for m in col.on("migw/testgw/status")]
        assert status[0] == b"online" and status[-1] == b"offline"


def _check_streams(col: Collector, topic: str) -> tuple[set[int], int]:
    """Per device, seqs rise within the live stream and within the backlog stream (the two
    interleave by design); returns (distinct seqs, duplicates)."""
    seen: set[int] = set()
    last: dict[tuple[bool, str], int] = {}
    for batch in col.batches(topic):
        for r in batch.readings:
            key = (batch.backlog, r["device"])
            seq = int(r["seq"])
            if seq in seen:  # a resent batch: only after an unacknowledged publish
                continue
            assert seq > last.get(key, 0), f"seq {seq} out of order for {key}"
            last[key] = seq
            seen.add(seq)
        for e in batch.events:
            seen.add(int(e["seq"]))
    return seen, len(col.seqs(topic)) - len(seen)


TELEMETRY = "migw/testgw/telemetry"


async def test_broker_stopped_under_ingest_then_restarted(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    synth = SynthDriver(devices=3, rate=300, event_every=97)
    cfg = gateway_config(tmp_path / "state", mosquitto.url, drain_rate=2000)
    async with (
        Collector(mosquitto.port, ["migw/testgw/#"]) as col,
        Service(cfg, drivers=[synth]) as svc,
    ):
        store = svc.store
        assert store is not None
        agent = _agent(svc)
        await col.wait_for(lambda: len(col.seqs(TELEMETRY)) >= 150)
        mosquitto.stop()
        before = synth.produced
        async with asyncio.timeout(20):
            while synth.produced < before + 400 or agent.stats()["outbox"]["rows"] < 300:
                await asyncio.sleep(0.05)
        assert agent.health().health.value == "degraded"
        assert "disconnected" in agent.health().reason
        mosquitto.start()
        await col.wait_for(lambda: col.client is not None, 20)
        await asyncio.sleep(0.5)
        last = await _pause_and_collect(synth, store, col, TELEMETRY, 60)
        got, dups = _check_streams(col, TELEMETRY)
        assert got == set(range(1, last + 1))
        assert any(b.backlog for b in col.batches(TELEMETRY))
        # duplicates only from the batches in flight when the broker went away
        assert dups <= INFLIGHT * cfg.upstream.batch_max_readings
        async with asyncio.timeout(10):
            while agent.stats()["outbox"]["rows"]:
                await asyncio.sleep(0.05)
        print(f"broker restart: {last} seqs, {dups} duplicates")


async def test_proxy_stalls_and_cuts_mid_publish(tmp_path: Path, mosquitto: Mosquitto) -> None:
    timing = ServiceTiming(sync=SyncTiming(ack_timeout_s=1.0, connect_timeout_s=1.0, goodbye_s=0.2))
    synth = SynthDriver(devices=4, rate=800)
    async with faulty_proxy(mosquitto.port) as proxy:
        cfg = gateway_config(tmp_path / "state", proxy.url, batch_max_readings=50)
        async with (
            Collector(mosquitto.port, [TELEMETRY]) as col,
            Service(cfg, drivers=[synth], timing=timing) as svc,
        ):
            store = svc.store
            assert store is not None
            await col.wait_for(lambda: len(col.seqs(TELEMETRY)) >= 200)
            proxy.stall()
            await asyncio.sleep(2.5)  # longer than the PUBACK timeout: the agent reconnects
            proxy.resume()
            await col.wait_for(lambda: col.seqs(TELEMETRY)[-1:] >= [synth.produced - 100], 20)
            for _ in range(5):
                await asyncio.sleep(0.3)
                proxy.cut()
            await asyncio.sleep(0.5)
            last = await _pause_and_collect(synth, store, col, TELEMETRY, 60)
            got, dups = _check_streams(col, TELEMETRY)
            assert got == set(range(1, last + 1))
            assert proxy.connections >= 4
            print(f"proxy: {last} seqs over {proxy.connections} connections, {dups} duplicates")


async def test_backlog_drain_is_rate_limited_and_live_readings_keep_flowing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    synth = SynthDriver(devices=2, rate=1000)
    cfg = gateway_config(tmp_path / "state", mosquitto.url, drain_rate=600, batch_max_readings=100)
    async with (
        Collector(mosquitto.port, [TELEMETRY]) as col,
        Service(cfg, drivers=[synth]) as svc,
    ):
        store = svc.store
        assert store is not None
        agent = _agent(svc)
        mosquitto.stop()
        async with asyncio.timeout(20):
            while agent.stats()["outbox"]["rows"] < 1500:
                await asyncio.sleep(0.05)
        synth.rate = 100
        mosquitto.start()
        await col.wait_for(lambda: col.client is not None, 20)
        start = len(col.batches(TELEMETRY))
        await col.wait_for(lambda: any(not b.backlog for b in col.batches(TELEMETRY)[start:]), 20)
        last = await _pause_and_collect(synth, store, col, TELEMETRY, 60)
        kinds = [b.backlog for b in col.batches(TELEMETRY)[start:]]
        # live batches were delivered while the backlog was still draining
        first_live = kinds.index(False)
        last_backlog = len(kinds) - 1 - kinds[::-1].index(True)
        assert first_live < last_backlog
        got, _ = _check_streams(col, TELEMETRY)
        assert got == set(range(1, last + 1))


async def test_clean_stop_with_a_stalled_link_does_not_hold_up_the_service(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    synth = SynthDriver(devices=2, rate=200)
    async with faulty_proxy(mosquitto.port) as proxy:
        cfg = gateway_config(tmp_path / "state", proxy.url)
        async with (
            Collector(mosquitto.port, [TELEMETRY]) as col,
            Service(cfg, drivers=[synth]) as svc,
        ):
            await col.wait_for(lambda: len(col.seqs(TELEMETRY)) >= 50)
            proxy.stall()
            await asyncio.sleep(0.3)
            svc.request_stop()
    assert "did not stop" not in caplog.text
