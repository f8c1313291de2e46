"""MQTT commands as home-automation tools send them: ``ON``/``OFF`` in capitals, and an
empty retained message clearing an earlier retained command (against a real Mosquitto and
the real GPIO adapter on gpiozero's MockFactory)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.adapters.gpio import GpioDriver
from gateway.commands import parse_command
from gateway.config import GpioDevice, GpioKind
from gateway.model import Command, CommandAction
from gateway.service import Service
from gateway.sync.payload import split_command_body
from tests.broker import Collector, Mosquitto, gateway_config

RELAY = GpioDevice(name="relay", kind=GpioKind.RELAY, pin=23)
CMD = "migw/testgw/cmd/gpio-relay/set"
RESULT = "migw/testgw/result/gpio-relay"


def test_words_in_any_case_are_commands() -> None:
    cases: tuple[tuple[bytes, CommandAction], ...] = (
        (b"ON", "on"),
        (b"Off", "off"),
        (b" toggle\n", "toggle"),
    )
    for raw, want in cases:
        body, rid = split_command_body(raw)
        assert (parse_command(body), rid) == (Command(want), None)


async def _publish(port: int, body: bytes, *, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="tester") as client:
        await client.publish(CMD, body, qos=1, retain=retain)


async def test_on_off_capitals_and_a_cleared_retained_command(
    tmp_path: Path, mosquitto: Mosquitto, mock_pins: Any
) -> None:
    gpio = GpioDriver((RELAY,), pin_factory=mock_pins)
    cfg = gateway_config(tmp_path / "state", mosquitto.url)
    async with (
        Collector(mosquitto.port, ["migw/testgw/#"]) as col,
        Service(cfg, drivers=[gpio]) as svc,
    ):
        await col.wait_for(lambda: col.on("migw/testgw/status"))
        pin = mock_pins.pin(23)
        await _publish(mosquitto.port, b"ON")
        await col.wait_for(lambda: col.on(RESULT))
        assert json.loads(col.on(RESULT)[-1].payload)["status"] == "ok"
        assert pin.state
        await _publish(mosquitto.port, b"OFF")
        await col.wait_for(lambda: len(col.on(RESULT)) >= 2)
        assert json.loads(col.on(RESULT)[-1].payload)["state"] == {"switch": False}
        # someone clears a retained command (an empty retained message): no error result
        await _publish(mosquitto.port, b"", retain=True)
        await col.wait_for(lambda: any(m.payload == b"" for m in col.on(CMD)))
        # a later real command is answered, and is the only new result
        await _publish(mosquitto.port, b"toggle")
        await col.wait_for(lambda: len(col.on(RESULT)) >= 3)
        await asyncio.sleep(0.3)
        results = [json.loads(m.payload) for m in col.on(RESULT)]
        assert [r["status"] for r in results] == ["ok", "ok", "ok"]
        assert results[-1]["state"] == {"switch": True}
        agent = svc.sync
        assert agent is not None
        assert agent.stats()["command_errors"] == 0
