"""`migw doctor` judges the uplink from the running service (issue 15.4): a demo started with
``--upstream`` has no config file naming the broker, and doctor must still say whether the
service reaches it (real service, real Mosquitto)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import DemoOptions
from gateway.api.server import ApiServer
from gateway.cli import main
from gateway.config import Config
from gateway.demo import demo_config
from gateway.service import Service
from tests.broker import Mosquitto

QUIET = DemoOptions(ble_devices=0, zigbee=False, gpio=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _doctor_beside(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str], settle: Any
) -> dict[str, Any]:
    cfg = demo_config(Config(), tmp_path / "state", 0)
    cfg = cfg.replace(upstream=dataclasses.replace(cfg.upstream, url=url, reconnect_min_s=0.05))
    async with Service(cfg, demo=QUIET) as svc:
        server = next(c for c in svc.components if c.name == "api")
        assert isinstance(server, ApiServer)
        await asyncio.wait_for(server.listening.wait(), 10)
        await settle(svc)
        args = ["--state-dir", str(tmp_path / "state"), "--api-port", str(server.port)]
        capsys.readouterr()
        await asyncio.to_thread(main, [*args, "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    return dict(checks["mqtt broker"])


def _sync(svc: Service) -> Any:
    return next(c for c in svc.components if c.name == "sync")


async def test_doctor_reports_the_running_services_broker_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()

    async def tried(svc: Service) -> None:
        for _ in range(200):
            if _sync(svc).stats()["upstream"]["last_error"]:
                return
            await asyncio.sleep(0.02)

    check = await _doctor_beside(tmp_path, f"mqtt://127.0.0.1:{port}", capsys, tried)
    assert check["level"] == "fail", check
    assert check["detail"].startswith(
        f"the running service cannot reach mqtt://127.0.0.1:{port}: "
    ), check
    assert "upstream disabled" not in check["detail"]


async def test_doctor_reports_the_running_services_broker_connected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mosquitto: Mosquitto
) -> None:
    async def connected(svc: Service) -> None:
        for _ in range(500):
            if _sync(svc).stats()["state"] == "connected":
                return
            await asyncio.sleep(0.02)

    check = await _doctor_beside(tmp_path, mosquitto.url, capsys, connected)
    assert check == {
        "name": "mqtt broker",
        "level": "pass",
        "detail": f"the running service is connected to {mosquitto.url}",
        "hint": "",
    }
