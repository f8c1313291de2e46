"""``migw decode znp`` on the public vectors, ``migw zigbee devices|backup|restore``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.zigbee.devices import DeviceRecord, DeviceTable
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from gateway.cli import main
from hw_mocks.znp import incoming_msg
from tests.helpers import vectors, znp_frame_hex

ZNP = vectors("zigbee.jsonl", "znp_frame", "znp_payload")


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: bytes = b"",
) -> tuple[int, list[Any], str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith(("{", "["))]
    return rc, lines, err


def test_decode_every_vector(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "# the public vectors\n" + "\n".join(znp_frame_hex(v) for v in ZNP) + "\n"
    rc, out, err = run_cli(monkeypatch, capsys, ["decode", "znp"], text.encode())
    assert rc == 1  # one vector is a deliberately bad FCS
    assert len(out) == len(ZNP)
    for vec, obj in zip(ZNP, out, strict=True):
        if vec["expected"].get("valid") is False:
            assert "FCS mismatch" in obj["error"]
            continue
        assert obj["cmd0"] == f"0x{int(vec['cmd0'], 16):02X}"
        assert obj["cmd1"] == f"0x{int(vec['cmd1'], 16):02X}"
        if vec.get("zigpy_znp_check") is None:
            assert obj["command"] is None  # framing-only vector
        else:
            frame = frames.decode(bytes.fromhex(znp_frame_hex(vec)))
            assert obj["command"] == c.decode(frame).command.name
            assert obj["type"] == vec["expected"].get("type", obj["type"])
            assert obj["subsystem"] == vec["expected"].get("subsystem", obj["subsystem"])
    assert "FCS mismatch" in err
    humidity = next(o for o in out if o.get("fields", {}).get("ClusterId") == 0x0405)
    assert humidity["metrics"] == {"humidity": 53.01}
    assert humidity["zcl"]["records"] == [{"attr": "0x0000", "type": "0x21", "value": 5301}]
    confirm = next(
        o for o in out if o.get("command") == "AF_DATA_CONFIRM" and o["fields"]["TSN"] == 149
    )
    assert confirm["fields"] == {"Status": "NWK_NO_ROUTE", "Endpoint": 1, "TSN": 149}


def test_decode_stream_with_garbage_and_xiaomi(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hb = bytes.fromhex(
        "1c5f11120a050042156c756d692e73656e736f725f776c65616b2e61713101ff42220121b30b0328170421"
        "a8430521a70006240000000000082104020a210000641001"
    )
    msg = incoming_msg(0x1234, 0, hb, lqi=80, stamp=1)
    leak = incoming_msg(0x1234, 0x0500, bytes.fromhex("092100010000000000"), lqi=80, stamp=2)
    good = [bytes.fromhex(znp_frame_hex(v)) for v in ZNP if v["expected"].get("valid") is not False]
    raw = (
        b"\x00\x13"
        + b"".join(good[:5])
        + bytes.fromhex("fe0361080001553f")
        + frames.encode(msg)
        + frames.encode(leak)
        + b"\xfe\x05"
    )
    rc, out, err = run_cli(monkeypatch, capsys, ["decode", "znp", "--stream"], raw)
    assert rc == 0
    assert len(out) == 7
    hb_obj = out[5]
    assert hb_obj["model"] == "lumi.sensor_wleak.aq1"
    assert hb_obj["metrics"] == {"voltage": 2.995, "device_temperature": 23.0, "battery": 97.0}
    assert hb_obj["zcl"]["records"][1] == {
        "attr": "0xFF01",
        "type": "0x42",
        "tlv": {"1": 2995, "3": 23, "4": 17320, "5": 167, "6": 0, "8": 516, "10": 0, "100": True},
        "declared_len": 34,
        "actual_len": 33,
    }
    # the model learned from the first frame gives the IAS alarm its meaning
    assert out[6]["metrics"] == {"water_leak": True, "tamper": False, "battery_low": False}
    assert "1 malformed frames dropped" in err
    assert "incomplete frame" in err
    # the same capture as hex text
    rc, out2, _ = run_cli(monkeypatch, capsys, ["decode", "znp", "--stream"], raw.hex().encode())
    assert out2 == out


def test_devices_from_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = DeviceTable(tmp_path)
    table.put(
        DeviceRecord(
            "00158d0001a2b3c4", 0x1234, "lumi.weather", "LUMI", (1,), 1.0e9, 120, 1.0e9, True
        )
    )
    table.save()
    rc, out, _ = run_cli(
        monkeypatch, capsys, ["--state-dir", str(tmp_path), "zigbee", "devices", "--json"]
    )
    assert rc == 0
    assert out == [
        [
            {
                "ieee": "00158d0001a2b3c4",
                "nwk": "1234",
                "model": "lumi.weather",
                "manufacturer": "LUMI",
                "endpoints": [1],
                "last_seen": 1.0e9,
                "lqi": 120,
                "joined": 1.0e9,
                "sleepy": True,
            }
        ]
    ]
    rc = main(["--state-dir", str(tmp_path), "zigbee", "devices"])
    assert rc == 0
    assert "zb-00158d0001a2b3c4" in capsys.readouterr().out


@pytest.fixture
def stick(tmp_path: Path) -> Any:
    """``python -m hw_mocks.znp`` in a subprocess: a simulated stick for sync CLI code."""
    link = tmp_path / "ttyZNP"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hw_mocks.znp", "--link", str(link), "--interval", "100"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == str(link)
    yield link
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


def test_backup_and_restore_cli(
    stick: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.toml"
    state = tmp_path / "state"
    with socket.socket() as s:  # an API port where nothing listens: the service is down
        s.bind(("127.0.0.1", 0))
        api_port = s.getsockname()[1]
    cfg.write_text(
        f'[gateway]\nstate_dir = "{state}"\n[api]\nport = {api_port}\n[zigbee]\nport = "{stick}"\n'
    )
    doc: dict[str, Any] = {  # a zigbee-herdsman backup document (JSON)
        "metadata": {
            "format": "zigpy/open-coordinator-backup",
            "version": 1,
            "source": "zigpy-znp@0.12.0",
            "internal": {},
        },
        "coordinator_ieee": "00124b0001020304",
        "pan_id": "1a62",
        "extended_pan_id": "dddddddddddddddd",
        "nwk_update_id": 0,
        "security_level": 5,
        "channel": 25,
        "channel_mask": [25],
        "network_key": {
            "key": "01030507090b0d0f00020406080a0c0d",
            "sequence_number": 0,
            "frame_counter": 1234,
        },
        "devices": [{"ieee_address": "00158d0001a2b3c4", "nwk_address": "4d2e", "is_child": True}],
        "stack_specific": {"zstack": {"tclk_seed": "c427b8a2f9a5e0a8e94f4dc14e1ec0f5"}},
    }
    src = tmp_path / "z2m_backup.json"
    src.write_text(json.dumps(doc))
    base = ["--config", str(cfg)]
    # without a network there is nothing to back up
    assert main([*base, "zigbee", "backup", str(tmp_path / "none.json")]) == 1
    assert "no network" in capsys.readouterr().err
    assert main([*base, "zigbee", "restore", "--yes", str(src)]) == 0
    assert "PAN 0x1A62, channel 25" in capsys.readouterr().out
    out_file = tmp_path / "migw_backup.json"
    assert main([*base, "zigbee", "backup", str(out_file)]) == 0
    capsys.readouterr()
    again = json.loads(out_file.read_text())
    assert out_file.stat().st_mode & 0o077 == 0
    for key in (
        "coordinator_ieee",
        "pan_id",
        "extended_pan_id",
        "channel",
        "stack_specific",
    ):
        assert again[key] == doc[key], key
    # the child table is not written on restore (docs/zigbee.md): is_child comes back False
    assert again["devices"] == [{**doc["devices"][0], "is_child": False}]
    assert again["network_key"]["key"] == doc["network_key"]["key"]
    assert again["network_key"]["frame_counter"] >= 1234 + 10_000
    # the restored device is in the table
    _rc, out, _ = run_cli(monkeypatch, capsys, [*base, "zigbee", "devices", "--json"])
    assert [d["ieee"] for d in out[0]] == ["00158d0001a2b3c4"]
    # a foreign file is refused
    bad = tmp_path / "bad.json"
    bad.write_text('{"metadata": {"format": "x", "version": 2}}')
    assert main([*base, "zigbee", "restore", "--yes", str(bad)]) == 1
    assert "open coordinator backup" in capsys.readouterr().err


def test_decode_redacts_key_material(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "01030507090b0d0f00020406080a0c0d"
    lines = [
        frames.encode(c.SYS_OSAL_NV_WRITE.req(Id=0x0062, Offset=0, Value=bytes.fromhex(key))).hex(),
        frames.encode(c.SYS_OSAL_NV_READ.req(Id=0x0062, Offset=0)).hex(),
        frames.encode(c.SYS_OSAL_NV_READ.rsp(Status=0, Value=bytes.fromhex(key))).hex(),
        frames.encode(c.SYS_OSAL_NV_READ.req(Id=0x0083, Offset=0)).hex(),
        frames.encode(c.SYS_OSAL_NV_READ.rsp(Status=0, Value=b"\x62\x1a")).hex(),
    ]
    rc, out, _ = run_cli(monkeypatch, capsys, ["decode", "znp"], "\n".join(lines).encode())
    assert rc == 0
    assert [o["fields"].get("Value") for o in out] == [
        "<redacted>",
        None,
        "<redacted>",
        None,
        "621a",
    ]
    assert key not in json.dumps(out)


def test_decode_never_aborts_on_one_bad_frame(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def incoming(cluster: int, data: bytes) -> str:
        return frames.encode(incoming_msg(0x1234, cluster, data, lqi=80, stamp=1)).hex()

    lines = [
        incoming(0x0403, bytes.fromhex("18010a1400299001")),  # pressure scale 400 (int16)
        incoming(0x0403, bytes.fromhex("18020a100029de26")),
        incoming(0x0400, bytes.fromhex("18030a000023feffffff")),  # illuminance uint32
        incoming(0x0402, bytes.fromhex("18040a0000293408")),
    ]
    rc, out, _ = run_cli(
        monkeypatch, capsys, ["decode", "znp", "--model", "lumi.weather"], "\n".join(lines).encode()
    )
    assert rc == 0
    assert [o.get("metrics") for o in out] == [{}, {"pressure": 995.0}, {}, {"temperature": 21.0}]
    assert [o.get("junk_dropped") for o in out] == [1, None, 1, None]
    # a raw capture of odd-length hex is an error message, not a traceback
    rc, out, err = run_cli(monkeypatch, capsys, ["decode", "znp", "--stream"], b"fe0")
    assert (rc, out) == (1, [])
    assert "not a hex capture" in err


async def test_backup_and_devices_go_through_the_running_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15.5: with the service running, `zigbee backup` asks it (it owns the stick) and
    `zigbee devices` reads the table the service uses, here outside the state dir (as the
    demo's is)."""
    from drivers.zigbee.coordinator import CoordinatorConfig
    from gateway import config as config_mod
    from gateway.adapters import zigbee as adapter
    from gateway.service import Service
    from hw_mocks.znp import ZStackSimulator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "state"
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(
        f'[gateway]\nstate_dir = "{state}"\n\n[api]\nlisten = "127.0.0.1"\nport = {port}\n'
    )
    cfg = config_mod.load(cfg_path)
    async with ZStackSimulator(devices=("lumi.plug",), seed=5) as sim:
        table_dir = tmp_path / "elsewhere"
        driver = adapter.ZigbeeDriver(
            CoordinatorConfig(port=sim.path, state_dir=table_dir, skip_bootloader=False)
        )
        async with Service(cfg, drivers=[driver]):
            async with asyncio.timeout(20):
                while not driver.coordinator.connected:
                    await asyncio.sleep(0.02)
                await driver.permit_join(30)
                while not any(r.model for r in driver.coordinator.table):
                    await asyncio.sleep(0.02)
            base = ["--config", str(cfg_path), "zigbee"]
            out_file = tmp_path / "through-the-service.json"
            capsys.readouterr()
            assert await asyncio.to_thread(main, [*base, "backup", str(out_file)]) == 0
            assert "made by the running service" in capsys.readouterr().out
            doc = json.loads(out_file.read_text())
            assert out_file.stat().st_mode & 0o077 == 0
            assert doc["network_key"]["key"] == sim.network_key.hex()
            assert [d["ieee_address"] for d in doc["devices"]] == [sim.device("lumi.plug").ieee]
            assert await asyncio.to_thread(main, [*base, "devices", "--json"]) == 0
            listed = json.loads(capsys.readouterr().out)
            assert [(d["ieee"], d["model"]) for d in listed] == [
                (sim.device("lumi.plug").ieee, "lumi.plug")
            ]
    # the service stopped: the state dir's own table (none here) is what is left to show
    assert await asyncio.to_thread(main, [*base, "devices"]) == 0
    assert f"no zigbee devices in {state}" in capsys.readouterr().out
