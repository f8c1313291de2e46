"""The driver, and `migw run`, against a Z-Stack emulator built on zigpy-znp's definitions.

tests/zstack_emulator.py parses what we send and builds what it answers with zigpy-znp's MT
command table and NV structs (and TI's layout where zigpy-znp's is wrong): a layout error in
our own table cannot hide here the way it does against hw_mocks.znp. Each firmware family
(Z-Stack 1.2 on a CC2531, 3.0.x on a CC2531, 3.x.0 on a CC26x2) forms a network, backs it up
(the key and the NWK frame counter read where that firmware keeps them), opens for joining
and takes an Aqara weather sensor's frames from the public vectors.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.supervisor import Timing
from drivers.zigbee import backup as bk
from drivers.zigbee import coordinator as co
from drivers.zigbee.coordinator import Coordinator, CoordinatorConfig
from drivers.zigbee.timing import ZigbeeTiming
from tests.helpers import migw_command
from tests.zigbee_support import Recorder, running, until
from tests.zstack_emulator import FAMILIES, EmulatedDevice, ZStackEmulator

VECTORS = Path(__file__).parent / "vectors" / "zigbee.jsonl"
SENSOR_IEEE = "00158d0001a2b3c4"
SENSOR_NWK = 0x4F21
#: ZCL Report Attributes on Basic: 0x0004 manufacturer "LUMI", 0x0005 model "lumi.weather"
#: (synthetic, built from the ZCL specification: char strings are a length byte and text).
MODEL_REPORT = bytes.fromhex("18010a") + b"\x04\x00\x42\x04LUMI" + b"\x05\x00\x42\x0clumi.weather"


def _vector(source_fragment: str) -> bytes:
    for line in VECTORS.read_text().splitlines():
        doc = json.loads(line)
        if source_fragment in doc["source"]:
            return bytes.fromhex(doc["hex"])
    raise LookupError(source_fragment)


def weather_sensor() -> EmulatedDevice:
    """lumi.weather: its model, then zha's Weather2 heartbeat (0xFF01) and a 6.88 °C report."""
    return EmulatedDevice(
        SENSOR_IEEE,
        SENSOR_NWK,
        frames=[
            (0x0000, 1, MODEL_REPORT),
            (0x0000, 1, _vector("test_xiaomi_weather[Weather2-basic]")),
            (0x0402, 1, _vector("first-contributions#36859")),
        ],
    )


EXPECTED = [
    ("voltage", 2.895),
    ("temperature", 24.59),
    ("humidity", 71.02),
    ("pressure", 1016.51),
    ("battery", 30.0),  # from the voltage, as zigbee2mqtt for Aqara
    ("temperature", 6.88),
]


FAST = ZigbeeTiming(
    bootloader_toggle_s=0.001, reconnect=Timing(backoff_initial=0.05), interview_timeout=0.5
)


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_driver_forms_backs_up_and_joins_on_emulated_firmware(
    tmp_path: Path, family: str
) -> None:
    rec = Recorder()
    async with ZStackEmulator(family) as emu:
        emu.add_device(weather_sensor())
        cfg = CoordinatorConfig(port=emu.path, state_dir=tmp_path, channel=25, timing=FAST)
        coord = Coordinator(cfg, rec)
        async with running(coord):
            await until(lambda: coord.connected)
            assert emu.rejected == []
            assert emu.formed
            assert emu.nib.nwkLogicalChannel == 25
            assert coord.info.channel == 25
            assert coord.info.pan_id == emu.nib.nwkPanId
            assert coord.info.extended_pan_id == str(emu.nib.extendedPANID).replace(":", "")
            assert coord.info.product == emu.product
            # the automatic backup at start: key and frame counter from where this firmware
            # keeps them (1.2: the key only through ZB_READ_CONFIGURATION)
            await until((tmp_path / co.BACKUP_FILE).exists)
            doc = json.loads((tmp_path / co.BACKUP_FILE).read_text())
            info = bk.from_open_coordinator(doc)
            assert info.network_key == emu.network_key != bytes(16)
            assert info.frame_counter == emu.stored_frame_counter >= 2500
            assert info.channel == 25
            assert ("SAPI.ZBReadConfiguration" in emu.requests) == (family == "1.2")
            # join, identify and decode a public-vector weather report
            await coord.permit_join(60)
            await until(lambda: len(rec.readings) >= len(EXPECTED))
            assert rec.devices[SENSOR_IEEE].model == "lumi.weather"
            assert [(m, v) for _, m, v in rec.readings] == EXPECTED
            # a backup on demand now lists the device
            doc = await coord.backup()
            assert [d["ieee_address"] for d in doc["devices"]] == [SENSOR_IEEE]
            assert emu.rejected == []


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_driver_resumes_an_emulated_network(tmp_path: Path, family: str) -> None:
    async with ZStackEmulator(family) as emu:
        cfg = CoordinatorConfig(port=emu.path, state_dir=tmp_path, channel=15, timing=FAST)
        coord = Coordinator(cfg, Recorder())
        async with running(coord):
            await until(lambda: coord.connected)
            key = emu.network_key
        emu.state = emu.state.InitializedNotStarted  # power cycle: RAM state gone, NV kept
        emu.endpoints.clear()
        coord = Coordinator(cfg, Recorder())
        async with running(coord):
            await until(lambda: coord.connected)
            assert coord.counters["networks_resumed"] == 1
            assert coord.counters["networks_formed"] == 0
            assert emu.network_key == key
            assert emu.rejected == []


# --- `migw run` with [zigbee] enabled -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    def __init__(self, port: int, state: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.state = state

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        token = (self.state / "api-token").read_text().strip()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return json.loads(rsp.read())

    async def poll(self, path: str, pred: Callable[[Any], bool], timeout: float = 40.0) -> Any:
        last: Any = None
        async with asyncio.timeout(timeout):
            while True:
                try:
                    last = await asyncio.to_thread(self.call, "GET", path)
                    if pred(last):
                        return last
                except OSError:
                    pass
                await asyncio.sleep(0.2)


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_migw_run_on_emulated_firmware(tmp_path: Path, family: str) -> None:
    state = tmp_path / "state"
    port = _free_port()
    async with ZStackEmulator(family) as emu:
        emu.add_device(weather_sensor())
        config = tmp_path / "config.toml"
        config.write_text(
            f'[gateway]\nstate_dir = "{state}"\nlog_level = "INFO"\n\n'
            f'[api]\nlisten = "127.0.0.1"\nport = {port}\n\n'
            f'[zigbee]\nenabled = true\nport = "{emu.path}"\nchannel = 20\n'
        )
        log = tmp_path / "migw.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        args = [*migw_command(), "--config", str(config), "run"]
        with log.open("w") as out:
            proc = await asyncio.to_thread(subprocess.Popen, args, env=env, stdout=out, stderr=out)
        api = Api(port, state)
        try:
            radios = await api.poll(
                "/api/v1/radios",
                lambda r: any(
                    x["name"] == "zigbee" and x["state"] == "running" and x["health"] == "ok"
                    for x in r["radios"]
                ),
            )
            zigbee = next(x for x in radios["radios"] if x["name"] == "zigbee")
            assert zigbee["info"]["channel"] == "20", zigbee
            assert emu.rejected == []
            # backup through the running service
            answer = await asyncio.to_thread(api.call, "POST", "/api/v1/zigbee/backup")
            assert answer["status"] == "ok"
            doc = json.loads(Path(answer["path"]).read_text())
            assert bytes.fromhex(doc["network_key"]["key"]) == emu.network_key
            # permit join: the sensor joins, its readings are stored
            await asyncio.to_thread(api.call, "POST", "/api/v1/zigbee/permit-join", {"seconds": 60})
            dev = await api.poll(
                f"/api/v1/devices/zb-{SENSOR_IEEE}",
                # the last of the sensor's frames (6.88 °C) is stored
                lambda d: d.get("state", {}).get("temperature", {}).get("value") == 6.88,
            )
            assert dev["model"] == "lumi.weather"
            assert dev["state"]["humidity"]["value"] == 71.02
            assert dev["state"]["pressure"]["value"] == 1016.51
            assert dev["state"]["temperature"]["value"] == 6.88
            history = await asyncio.to_thread(
                api.call, "GET", f"/api/v1/devices/zb-{SENSOR_IEEE}/history?metric=temperature"
            )
            assert [r["value"] for r in history["readings"]] == [24.59, 6.88]
        finally:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            text = log.read_text()
        assert proc.returncode == 0, text
        assert emu.network_key.hex() not in text
        assert emu.rejected == []
