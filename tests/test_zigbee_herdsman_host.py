"""zigbee-herdsman 10.9.5 (zigbee2mqtt's stack) as the host of our simulated stick.

An independent host keeps the simulator honest, and so the driver tests that rely on it:
herdsman's Controller (tests/herdsman/host.js, in Node) opens the simulator's pty, starts
(forms a network), reads the network parameters, makes a backup, opens the network, sees a
simulated Aqara sensor join and interviews it, and receives its reports; then, after a
power cycle of the stick (NV kept), resumes the same network. On Z-Stack 1.2, 3.0.x and
3.x.0. herdsman is installed by tools/herdsman.sh (npm, into .cache/herdsman).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from hw_mocks.znp import ZStackSimulator
from tests import znp_peers

HOST = Path(__file__).resolve().parent / "herdsman" / "host.js"
NETWORK_KEY = "01030507090b0d0f00020406080a0c0d"  # host.js's configured key


async def run_host(sim: ZStackSimulator, work: Path) -> tuple[int, list[dict[str, Any]]]:
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "HERDSMAN_TIMEOUT_MS": "60000"}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(HOST),
        str(znp_peers.HERDSMAN_DIR),
        sim.path,
        str(work),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    async with asyncio.timeout(90):
        async for raw in proc.stdout:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"raw": raw.decode(errors="replace")})
        code = await proc.wait()
    return code, lines


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


@pytest.fixture(scope="module", autouse=True)
def _herdsman() -> None:
    znp_peers.install_herdsman()


@pytest.mark.parametrize("product", [1, 2, 0], ids=["3.x.0", "3.0.x", "1.2"])
async def test_herdsman_runs_our_simulated_stick(tmp_path: Path, product: int) -> None:
    async with ZStackSimulator(
        devices=("lumi.weather",), seed=11, product=product, report_interval=0.5
    ) as sim:
        sensor = sim.device("lumi.weather")
        code, lines = await run_host(sim, tmp_path)
        problems = [x for x in lines if x.get("log") == "error" or "raw" in x]
        assert code == 0, lines[-20:]
        # formed a new network: herdsman calls that "reset", and on Z-Stack 1.2 "restored"
        # when the stick was never configured (manager.ts: hasConfigured ? reset : restored)
        formed = "restored" if product == 0 else "reset"
        assert events(lines, "started")[0]["result"] == formed
        params = events(lines, "networkParameters")[0]
        assert params == {
            "event": "networkParameters",
            "panID": 0x1A63,
            "extendedPanID": "0xa1a2a3a4a5a6a7a8",
            "channel": 15,
        }
        assert (sim.pan_id, sim.channel, sim.extended_pan_id) == (0x1A63, 15, "a1a2a3a4a5a6a7a8")
        assert sim.network_key.hex() == NETWORK_KEY
        version = events(lines, "coordinatorVersion")[0]
        assert version["meta"]["product"] == product
        backup = events(lines, "backup")[0]["backup"]
        assert backup["network_key"]["key"] == NETWORK_KEY
        assert backup["pan_id"] == "1a63"
        assert backup["channel"] == 15
        assert events(lines, "permitJoin")
        assert [e["ieee"] for e in events(lines, "deviceJoined")] == ["0x" + sensor.ieee]
        reports = [
            e for e in events(lines, "message") if e["type"] == "attributeReport" and e["model"]
        ]
        assert {e["model"] for e in reports} == {"lumi.weather"}
        assert any(e["cluster"] != "genBasic" for e in reports)
        assert problems == []

        # a power cycle of the stick (NV kept): herdsman resumes the same network
        sim.unplug()
        sim.plug()
        code, lines = await run_host(sim, tmp_path)
        assert code == 0, lines[-20:]
        assert events(lines, "started")[0]["result"] == "resumed"
        assert sim.counters["formations"] == 1
        assert sim.network_key.hex() == NETWORK_KEY
