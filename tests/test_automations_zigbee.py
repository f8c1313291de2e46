"""The demo's leak rule on the simulated Zigbee network: the Aqara leak sensor reports water
and the plug is switched off through the Z-Stack driver (a real pty to the simulator)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.adapters import DemoOptions
from gateway.config import ApiSection, Config
from gateway.demo import demo_config, demo_transports
from gateway.service import Service

ZIGBEE_ONLY = DemoOptions(ble_devices=0, zigbee=True, gpio=False)


async def test_leak_switches_the_zigbee_plug_off(tmp_path: Path) -> None:
    cfg = demo_config(Config(), tmp_path / "state", 0)
    cfg = cfg.replace(api=ApiSection(enabled=False, listen="127.0.0.1", port=0))
    # the simulated devices report every 0.2 s (the demo: 1.5 s)
    transports = demo_transports(ZIGBEE_ONLY, report_interval=0.2)
    async with Service(cfg, demo=ZIGBEE_ONLY, transports=transports) as svc:
        auto = svc.automations
        assert auto is not None
        async with asyncio.timeout(60):
            while auto.engine is None or "leak-plug-off" not in auto.engine.last_fired:
                await asyncio.sleep(0.1)
            while auto.engine.running():
                await asyncio.sleep(0.05)
        (trace,) = [t for t in auto.engine.traces["leak-plug-off"] if t.outcome == "fired"][:1]
        plug = next(a for a in cfg.automations if a.id == "leak-plug-off").actions[0].device
        assert trace.actions[0]["action"] == f"command device={plug} command=off"
        assert trace.actions[0]["result"] == "ok"
        assert trace.trigger.endswith("water_leak = true (was false)")
