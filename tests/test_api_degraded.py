"""A radio that fails while clients watch: the WebSocket gets a status message, health and
`migw status` say degraded, doctor warns."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.supervisor import Timing
from gateway.cli import main
from gateway.driver import Sink
from gateway.service import Service, ServiceTiming
from tests.api_support import running
from tests.helpers import IdleDriver


class FlakyRadio(IdleDriver):
    """A driver at the seam that runs until told to fail (the stick was unplugged)."""

    name = "flaky"

    def __init__(self) -> None:
        self.fail = asyncio.Event()

    async def run(self, sink: Sink) -> None:
        await self.fail.wait()
        raise OSError(19, "No such device")


async def test_a_failing_radio_is_reported_everywhere(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    flaky = FlakyRadio()
    slow = ServiceTiming(supervisor=Timing(backoff_initial=5.0, backoff_max=5.0))
    async with (
        running(tmp_path / "state", mock_pins, extra_drivers=[flaky], timing=slow) as api,
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


async def test_an_unwritable_token_degrades_the_api_not_the_service(
    tmp_path: Path, mock_pins: Any
) -> None:
    from gateway.adapters.gpio import GpioDriver
    from gateway.api.server import ApiServer
    from gateway.api.token import token_path
    from gateway.demo import DEMO_GPIO
    from tests.api_support import make_config

    state = tmp_path / "state"
    token_path(state).mkdir(parents=True)  # a directory where the token file belongs
    cfg = make_config(state)
    fast = ServiceTiming(supervisor=Timing(backoff_initial=0.05, backoff_max=0.1))
    gpio = GpioDriver(DEMO_GPIO, pin_factory=mock_pins)
    async with Service(cfg, drivers=[gpio], timing=fast) as svc:
        server = svc.api
        assert isinstance(server, ApiServer)
        for _ in range(500):
            if svc.supervisors["api"].status.restarts >= 1:
                break
            await asyncio.sleep(0.01)
        health = svc.health()
        assert health["status"] == "degraded"
        assert any(r.startswith("api: cannot read the API token") for r in health["reasons"])
        assert svc.store is not None
        await svc.store.flush()
        assert len(await svc.store.devices()) == len(DEMO_GPIO)  # the radios work on
        # the technician fixes it; the supervisor brings the API up without a restart
        token_path(state).rmdir()
        await asyncio.wait_for(server.listening.wait(), 10)
        assert token_path(state).is_file()
