"""The sync agent against a real Mosquitto: batches, seqs, status, commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.service import Service
from gateway.sync import SyncAgent
from tests.broker import Collector, Mosquitto, SynthDriver, gateway_config


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


async def test_batches_carry_every_seq_in_order(tmp_path: Path, mosquitto: Mosquitto) -> None:
    synth = SynthDriver(devices=3, rate=400)
    cfg = gateway_config(tmp_path / "state", mosquitto.url)
    async with Collector(mosquitto.port, ["migw/testgw/#"]) as col:
        async with Service(cfg, drivers=[synth]) as svc:  # type: ignore[arg-type]
            store = svc.store
            assert store is not None
            await synth.running.wait()
            await col.wait_for(lambda: len(set(col.seqs("migw/testgw/telemetry"))) >= 300)
            synth.paused = True
            await store.flush()
            last = store.last_seq
            await col.wait_for(lambda: set(range(1, last + 1)) <= set(col.seqs("migw/testgw/telemetry")))
            stats = _agent(svc).stats()
            assert stats["state"] == "connected"
        status = [m.payload for m in col.on("migw/testgw/status")]
        assert status[0] == b"online" and status[-1] == b"offline"
