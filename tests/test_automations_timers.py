"""Timers of the live service: a delay survives a reload (SIGHUP) and a restart."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

from drivers.events import DeviceEvent
from gateway.config import Config, loads
from gateway.driver import DriverHealth, Sink
from gateway.model import Command, CommandResult, CommandStatus
from gateway.service import Service
from tests.automation_toml import on_wait_off


class Panel:
    """A driver at the gateway's driver seam: one button and one relay, scripted."""

    name = "panel"

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self.commands: list[str] = []
        self.ready = asyncio.Event()

    async def run(self, sink: Sink) -> None:
        self.sink = sink
        self.ready.set()
        await asyncio.Event().wait()

    async def command(self, device_id: str, command: Command) -> CommandResult:
        self.commands.append(f"{device_id} {command.action}")
        return CommandResult(CommandStatus.OK)

    def owns(self, device_id: str) -> bool:
        return device_id.startswith("panel-")

    def health(self) -> DriverHealth:
        return DriverHealth()


def _cfg(state: Path, extra: str = "", delay: float = 3.0) -> Config:
    return loads(
        textwrap.dedent(f"""
        [gateway]
        id = "t"
        state_dir = "{state}"
        [api]
        enabled = false
        [[automations]]
        id = "stairs"
        triggers = [{{type = "event", device = "panel-button", action = "single"}}]
    """)
        + textwrap.dedent(on_wait_off("panel-relay", delay))
        + textwrap.dedent(extra)
    )


async def _until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_delay_survives_a_reload_and_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    panel = Panel()
    async with Service(_cfg(state), drivers=[panel]) as svc:
        await panel.ready.wait()
        auto = svc.automations
        assert auto is not None and panel.sink is not None
        await _until(lambda: auto.engine is not None)
        panel.sink.event("panel-button", DeviceEvent("button", "single"))
        await _until(lambda: panel.commands == ["panel-relay on"])
        # a reload that adds another automation keeps the running delay
        extra = """
            [[automations]]
            id = "other"
            triggers = [{type = "uplink", to = "down"}]
            actions = [{type = "publish", message = "offline"}]
        """
        result = await svc.reload(_cfg(state, extra))
        assert result.failed == ()
        assert result.changed == ("automations",)
        assert result.restarted == ()
        await _until(lambda: "other" in {a["id"] for a in auto.listing()})
        await _until(lambda: panel.commands == ["panel-relay on", "panel-relay off"])
        # again, and stop the service while the delay runs
        panel.sink.event("panel-button", DeviceEvent("button", "single"))
        await _until(lambda: len(panel.commands) == 3)
        await _until(lambda: auto.engine is not None and auto.engine.running() == 1)
        await asyncio.sleep(0.3)  # the pending delay is saved with the next engine turn
    # a restart within the grace period: the delayed "off" still comes
    panel2 = Panel()
    async with Service(_cfg(state), drivers=[panel2]) as svc:
        await _until(lambda: panel2.commands == ["panel-relay off"])
        auto2 = svc.automations
        assert auto2 is not None
        traces = auto2.traces("stairs")
        assert any(a["result"] == "resumed after a restart" for t in traces for a in t.actions)


class SlowPanel(Panel):
    """``panel-slow`` answers after 3 s, like a sleepy end device near the router timeout."""

    async def command(self, device_id: str, command: Command) -> CommandResult:
        if device_id == "panel-slow":
            await asyncio.sleep(3.0)
        return await super().command(device_id, command)


async def test_a_slow_device_delays_only_its_own_run(tmp_path: Path) -> None:
    extra = """
        [[automations]]
        id = "slow"
        triggers = [{type = "event", device = "panel-button", action = "long"}]
        actions = [{type = "command", device = "panel-slow", command = "off"},
                   {type = "command", device = "panel-relay", command = "toggle"}]
    """
    panel = SlowPanel()
    async with Service(_cfg(tmp_path / "state", extra, delay=1.0), drivers=[panel]) as svc:
        await panel.ready.wait()
        auto = svc.automations
        assert auto is not None and panel.sink is not None
        await _until(lambda: auto.engine is not None)
        panel.sink.event("panel-button", DeviceEvent("button", "long"))
        await _until(lambda: auto.engine is not None and "slow" in auto.engine.last_fired)
        panel.sink.event("panel-button", DeviceEvent("button", "single"))
        # the stairs light goes on while the slow device has not answered yet
        await _until(lambda: panel.commands == ["panel-relay on"], timeout=2.5)
        # its delay runs out (1 s) before the slow device answers (3 s); then the slow
        # run goes on
        await _until(
            lambda: (
                panel.commands
                == ["panel-relay on", "panel-relay off", "panel-slow off", "panel-relay toggle"]
            )
        )
