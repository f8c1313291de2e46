"""A radio that fails while clients watch: the WebSocket gets a status message, health and
`migw status` say degraded, doctor warns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_support import running

from drivers import supervisor
from gateway.cli import main
from gateway.driver import DriverHealth, Sink
from gateway.model import Command, CommandResult, CommandStatus


class FlakyRadio:
    """A driver at the seam that runs until told to fail (the stick was unplugged)."""

    name = "flaky"

    def __init__(self) -> None:
        self.fail = asyncio.Event()

    async def run(self, sink: Sink) -> None:
        await self.fail.wait()
        raise OSError(19, "No such device")

    async def command(self, device_id: str, command: Command) -> CommandResult:
        return CommandResult(CommandStatus.UNSUPPORTED)

    def owns(self, device_id: str) -> bool:
        return False

    def health(self) -> DriverHealth:
        return DriverHealth()


async def test_a_failing_radio_is_reported_everywhere(
    tmp_path: Path,
    mock_pins: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_INITIAL", 5.0)
    monkeypatch.setattr(supervisor, "BACKOFF_MAX", 5.0)
    flaky = FlakyRadio()
    async with (
        running(tmp_path / "state", mock_pins, extra_drivers=[flaky]) as api,
        aiohttp.ClientSession() as http,
    ):
        url = f"{api.base}/api/v1/events?type=status"
        async with http.ws_connect(url, headers=api.auth) as ws:
            hello = await asyncio.wait_for(ws.receive_json(), 10)
            assert (hello["type"], hello["status"]) == ("hello", "ok")
            flaky.fail.set()
            msg = await asyncio.wait_for(ws.receive_json(), 10)
        assert msg["type"] == "status"
        assert msg["status"] == "degraded"
        assert msg["reasons"][0].startswith("flaky: OSError: [Errno 19] No such device")

        async with http.get(f"{api.base}/api/v1/health") as resp:
            body = await resp.json()
        assert resp.status == 200
        assert body["status"] == "degraded"

        capsys.readouterr()
        code = await asyncio.to_thread(main, [*api.cli_args(), "status"])
        out, _ = capsys.readouterr()
        assert code == 1
        assert "degraded: flaky: OSError" in out

        code = await asyncio.to_thread(main, [*api.cli_args(), "doctor", "--json"])
        out, _ = capsys.readouterr()
        checks = {c["name"]: c for c in json.loads(out)["checks"]}
        assert checks["service"]["level"] == "warn"
        assert checks["service"]["detail"].startswith("running but degraded: flaky: OSError")
