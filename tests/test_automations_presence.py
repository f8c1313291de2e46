"""Presence end to end: a phone's rotating private addresses through the real BLE driver
(a replay scanner shaped like bleak's), resolved with its IRK, stored as person-<name>
``presence``, firing a presence automation; then away after the timeout."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from drivers.ble.presence import make_rpa
from drivers.ble.types import Advertisement
from gateway.adapters.ble import BleDriver
from gateway.config import loads
from gateway.service import Service
from hw_mocks.ble import replay_factory

IRK = bytes.fromhex("00112233445566778899aabbccddeeff")


async def test_phone_arrives_by_irk_and_leaves(tmp_path: Path) -> None:
    # another phone for 3 s (it must not count: alice is declared away after 1 s), then
    # three rotations of alice's address
    stranger = Advertisement(make_rpa(bytes(16), b"\x01\x02\x03"), rssi=-40)
    adverts = [stranger] * 150 + [
        Advertisement(make_rpa(IRK, bytes([i, 2 * i, 3])), rssi=-60 - i % 3)
        for i in range(1, 4)
        for _ in range(5)
    ]
    cfg = loads(
        textwrap.dedent(f"""
        [gateway]
        id = "t"
        state_dir = "{tmp_path / "state"}"
        [api]
        enabled = false
        [presence]
        away_after_s = 1.0
        [[presence.people]]
        name = "alice"
        irk = ["{IRK.hex()}"]
        [[automations]]
        id = "welcome"
        triggers = [{{type = "presence", person = "alice", to = "home"}}]
        actions = [{{type = "publish", message = "hi alice"}}]
        [[automations]]
        id = "bye"
        triggers = [{{type = "presence", person = "alice", to = "away"}}]
        actions = [{{type = "publish", message = "bye alice"}}]
    """)
    )
    ble = BleDriver(replay_factory(adverts, rate=50.0), {})
    async with Service(cfg, drivers=[ble]) as svc:
        store, auto = svc.store, svc.automations
        assert store is not None and auto is not None
        async with asyncio.timeout(20):
            while auto.engine is None or "bye" not in auto.engine.last_fired:
                await asyncio.sleep(0.05)
        await store.flush()
        history = await store.history("person-alice", "presence")
        assert [v for _seq, _m, v, _ts in history] == [False, True, False]
        device = await store.device("person-alice")
        assert device is not None and device.model == "presence"
        rows = await store.outbox_fetch(1000)
        messages = [r.body for r in rows if r.device_id.startswith("automation-")]
        assert any('"action":"hi alice"' in b for b in messages)
        assert any('"action":"bye alice"' in b for b in messages)
        assert auto.health().counters["presence_changes"] == 3  # away, home, away
