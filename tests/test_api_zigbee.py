"""The API and CLI with the real Zigbee driver on the simulated Z-Stack stick (pty):
permit join, a joined plug listed and switched, doctor reading the service's view."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import config as config_mod
from gateway.adapters import AdapterContext
from gateway.adapters import zigbee as adapter
from gateway.api.token import read_token
from gateway.cli import main
from gateway.service import Service
from hw_mocks.znp import ZStackSimulator
from tests.zigbee_support import until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, sim: ZStackSimulator) -> tuple[Path, int]:
    """A config file for a service with the API on a free port and the simulated stick."""
    port = free_port()
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[api]\nlisten = "127.0.0.1"\nport = {port}\n\n'
        f'[zigbee]\nenabled = true\nport = "{sim.path}"\nskip_bootloader = false\n'
    )
    return cfg_path, port


def read_backup(path: Path) -> tuple[int, dict[str, Any]]:
    return stat.S_IMODE(path.stat().st_mode), json.loads(path.read_text())


async def test_permit_join_and_a_zigbee_plug_through_api_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ZStackSimulator(devices=("lumi.plug",), seed=3) as sim:
        cfg_path, port = write_config(tmp_path, sim)
        cfg = config_mod.load(cfg_path)
        driver = adapter.create(AdapterContext(cfg, tmp_path / "state"))
        assert driver is not None
        async with Service(cfg, drivers=[driver]) as svc, aiohttp.ClientSession() as http:
            await until(lambda: driver.coordinator.connected)
            token = read_token(tmp_path / "state")
            auth = {"Authorization": f"Bearer {token}"}
            base = f"http://127.0.0.1:{port}/api/v1"
            async with http.post(
                f"{base}/zigbee/permit-join", json={"seconds": 30}, headers=auth
            ) as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok", "seconds": 30}
            plug = sim.device("lumi.plug")
            plug_id = f"zb-{plug.ieee}"
            assert svc.store is not None
            store = svc.store
            for _ in range(1000):
                await store.flush()
                if await store.device(plug_id) is not None:
                    break
                await asyncio.sleep(0.02)
            async with http.get(f"{base}/devices?transport=zigbee", headers=auth) as resp:
                body = await resp.json()
            assert [d["id"] for d in body["devices"]] == [plug_id]
            assert body["devices"][0]["model"] == "lumi.plug"
            async with http.post(
                f"{base}/devices/{plug_id}/commands", json={"switch": True}, headers=auth
            ) as resp:
                result = await resp.json()
                assert resp.status == 200, result
            assert result["status"] == "ok"
            async with http.get(f"{base}/radios", headers=auth) as resp:
                radios = {r["name"]: r for r in (await resp.json())["radios"]}
            assert radios["zigbee"]["health"] == "ok"
            assert radios["zigbee"]["info"]["port"] == sim.path
            assert "network_key" not in json.dumps(radios).lower()

            async with http.post(f"{base}/zigbee/backup", headers=auth) as resp:
                text = await resp.text()
                assert resp.status == 200, text
            summary = json.loads(text)
            saved = Path(summary["path"])
            assert saved.parent == tmp_path / "state"
            mode, doc = read_backup(saved)
            assert mode == 0o600
            assert summary == {
                "status": "ok",
                "path": str(saved),
                "pan_id": doc["pan_id"],
                "extended_pan_id": doc["extended_pan_id"],
                "channel": doc["channel"],
                "devices": len(doc["devices"]),
            }
            assert doc["network_key"]["key"] not in text  # the key stays on the gateway

            capsys.readouterr()
            code = await asyncio.to_thread(
                main, ["--config", str(cfg_path), "zigbee", "permit-join", "0"]
            )
            out, _ = capsys.readouterr()
            assert code == 0
            assert out.strip() == "the Zigbee network is closed to new devices"

            code = await asyncio.to_thread(main, ["--config", str(cfg_path), "doctor", "--json"])
            out, _ = capsys.readouterr()
            checks = {c["name"]: c for c in json.loads(out)["checks"]}
            serial = checks["zigbee serial port"]
            assert serial["level"] == "pass", serial
            assert serial["detail"].startswith(f"{sim.path}: the running service talks to")


async def test_permit_join_and_backup_with_the_stick_gone_answer_not_ready(tmp_path: Path) -> None:
    async with ZStackSimulator(devices=(), seed=5) as sim:
        cfg_path, port = write_config(tmp_path, sim)
        cfg = config_mod.load(cfg_path)
        driver = adapter.create(AdapterContext(cfg, tmp_path / "state"))
        assert driver is not None
        async with Service(cfg, drivers=[driver]), aiohttp.ClientSession() as http:
            await until(lambda: driver.coordinator.connected)
            sim.unplug()
            await until(lambda: not driver.coordinator.connected)
            auth = {"Authorization": f"Bearer {read_token(tmp_path / 'state')}"}
            base = f"http://127.0.0.1:{port}/api/v1"
            for path, body in (("permit-join", {"seconds": 30}), ("backup", None)):
                async with http.post(f"{base}/zigbee/{path}", json=body, headers=auth) as resp:
                    answer = await resp.json()
                    assert resp.status == 409, answer
                assert answer["error"]["code"] == "zigbee_not_ready", answer
