"""The demo's automations in the real service, with a real Mosquitto that goes away.

Done-when checks of docs/automations.md: with the broker gone the automations still fire and
are recorded; their events reach the uplink when it returns; a replay over the stored
history prints the same firings the live run produced.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.adapters import DemoOptions
from gateway.automations.replay import live_firings, replay, stored_inputs
from gateway.config import (
    ActionDef,
    ApiSection,
    AutomationDef,
    Config,
    GatewaySection,
    TriggerDef,
)
from gateway.demo import demo_config
from gateway.service import Service
from tests.broker import Collector, Mosquitto, gateway_config

GPIO_ONLY = DemoOptions(ble_devices=0, zigbee=False, gpio_interval=0.15)
EVENTS = "migw/testgw/telemetry"


def _config(state: Path, url: str) -> Config:
    base = gateway_config(state, url)
    assert isinstance(base, Config)
    cfg = demo_config(base, state, 0)
    offline = AutomationDef(
        id="uplink-lost",
        triggers=(TriggerDef(type="uplink", to="down"),),
        actions=(ActionDef(type="publish", message="uplink lost"),),
    )
    return cfg.replace(
        api=ApiSection(enabled=False, listen="127.0.0.1", port=0),
        gateway=GatewaySection(id="testgw", state_dir=state),
        automations=(*cfg.automations, offline),
    )


async def test_offline_firings_are_recorded_and_reach_the_uplink_then_replay_matches(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    state = tmp_path / "state"
    cfg = _config(state, mosquitto.url)
    async with (
        Collector(mosquitto.port, ["migw/testgw/#"]) as col,
        Service(cfg, demo=GPIO_ONLY) as svc,
    ):
        store = svc.store
        assert store is not None
        auto = svc.automations
        assert auto is not None
        sync = svc.sync
        assert sync is not None
        async with asyncio.timeout(20):
            # connected, and the automations have seen it (they look every second)
            while (
                sync.stats()["state"] != "connected"
                or auto.engine is None
                or not auto.engine.uplink
            ):
                await asyncio.sleep(0.05)
        mosquitto.stop()
        async with asyncio.timeout(20):
            while sync.stats()["state"] == "connected":
                await asyncio.sleep(0.05)
        engine = auto.engine
        assert engine is not None
        # the broker is gone: the demo's rules keep firing (door, double press)
        async with asyncio.timeout(30):
            while not {"door-hall-light", "double-press-led", "uplink-lost"} <= {
                aid for aid, n in engine.last_fired.items() if n
            }:
                await asyncio.sleep(0.05)
        await store.flush()
        rows = await store.outbox_fetch(10_000)
        offline = {r.seq: json.loads(r.body) for r in rows if r.device_id.startswith("automation-")}
        fired = {b["device"] for b in offline.values() if b["action"] == "fired"}
        assert {
            "automation-door-hall-light",
            "automation-double-press-led",
            "automation-uplink-lost",
        } <= fired
        messages = {(b["device"], b["action"]) for b in offline.values() if b["event"] == "message"}
        assert ("automation-uplink-lost", "uplink lost") in messages
        # the relay really pulsed and the LED really toggled (commands went through)
        assert engine.counters["action_errors"] == 0
        # the uplink comes back: the firings recorded offline are published, by seq
        mosquitto.start()
        await col.wait_for(lambda: set(offline) <= set(col.seqs(EVENTS)), timeout=30)
        published = {
            int(e["seq"]): e
            for batch in col.batches(EVENTS)
            for e in batch.events
            if int(e["seq"]) in offline
        }
        for seq, body in offline.items():
            assert {k: published[seq][k] for k in body} == body
        svc.request_stop()
    # replay over the stored history: the same firings, at the same times, for the same reasons
    live = live_firings(state)
    assert live
    replayed = await replay(cfg, stored_inputs(state))
    assert [(f.automation, f.at, f.trigger) for f in replayed] == [
        (f.automation, f.at, f.trigger) for f in live
    ]
