"""The automations' LAN API routes on the real service and API (GPIO on MockFactory)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from gateway.adapters.gpio import GpioDriver
from gateway.api.server import ApiServer
from gateway.api.token import read_token
from gateway.config import (
    ActionDef,
    ApiSection,
    AutomationDef,
    Config,
    GatewaySection,
    GpioSection,
    TriggerDef,
)
from gateway.demo import DEMO_GPIO
from gateway.service import Service

RULE = AutomationDef(
    id="door-relay",
    name="Door: relay on",
    triggers=(TriggerDef(type="state", device="gpio-front-door", metric="opening", to=True),),
    actions=(ActionDef(type="command", device="gpio-hall-relay", command="on"),),
)


async def test_list_traces_and_enable(tmp_path: Path, mock_pins: Any) -> None:
    state = tmp_path / "state"
    cfg = Config(
        gateway=GatewaySection(id="t", state_dir=state),
        api=ApiSection(listen="127.0.0.1", port=0),
        gpio=GpioSection(devices=DEMO_GPIO),
        automations=(RULE,),
    )
    driver = GpioDriver(DEMO_GPIO, pin_factory=mock_pins)
    async with Service(cfg, drivers=[driver]) as svc, aiohttp.ClientSession() as http:
        server, auto = svc.api, svc.automations
        assert isinstance(server, ApiServer)
        assert auto is not None
        await asyncio.wait_for(server.listening.wait(), 10)
        base = f"http://127.0.0.1:{server.port}/api/v1/automations"
        headers = {"Authorization": f"Bearer {read_token(state)}"}

        async def call(method: str, path: str, status: int, body: Any = None) -> Any:
            async with http.request(method, base + path, headers=headers, json=body) as resp:
                data = await resp.json()
                assert resp.status == status, data
                return data

        listing = await call("GET", "", 200)
        assert [RULE.id] == [a["id"] for a in listing["automations"]]
        assert listing["automations"][0]["enabled"] is True
        assert listing["automations"][0]["last_fired"] is None
        # the door opens: the rule fires and its trace is served
        async with asyncio.timeout(10):
            while auto.engine is None or ("gpio-front-door", "opening") not in auto.engine.values:
                await asyncio.sleep(0.02)
        pin = mock_pins.pin(27)
        pin.drive_low()
        await asyncio.sleep(0.2)
        pin.drive_high()
        async with asyncio.timeout(10):
            while "door-relay" not in auto.engine.last_fired:
                await asyncio.sleep(0.02)
            while not (await call("GET", "/door-relay/traces", 200))["traces"]:
                await asyncio.sleep(0.05)
        (trace,) = (await call("GET", "/door-relay/traces?limit=5", 200))["traces"]
        assert trace["outcome"] == "fired"
        assert trace["trigger"] == "gpio-front-door opening = true (was false)"
        assert trace["actions"][0]["result"] == "ok"
        # switched off: the next opening is ignored
        assert await call("POST", "/door-relay/enable", 200, {"enabled": False}) == {
            "id": "door-relay",
            "enabled": False,
        }
        assert (await call("GET", "", 200))["automations"][0]["enabled"] is False
        assert auto.engine.enabled["door-relay"] is False
        # errors
        assert (await call("GET", "/nope/traces", 404))["error"]["code"] == "unknown_automation"
        bad = await call("GET", "/door-relay/traces?limit=0", 400)
        assert bad["error"]["code"] == "invalid_query"
        bad = await call("POST", "/door-relay/enable", 422, {"enabled": "no"})
        assert bad["error"]["code"] == "invalid_body"
    # the switch is kept across a restart
    driver = GpioDriver(DEMO_GPIO, pin_factory=mock_pins)
    async with Service(cfg, drivers=[driver]) as svc:
        auto = svc.automations
        assert auto is not None
        async with asyncio.timeout(10):
            while auto.engine is None:
                await asyncio.sleep(0.02)
        assert auto.listing()[0]["enabled"] is False
