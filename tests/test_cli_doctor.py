"""``migw doctor`` through main(argv), or through its ``report()`` seam with a ``DoctorHost``
(BLE/GPIO system trees in a temporary directory, a shortened stick ping): a missing port, the
simulated Z-Stack coordinator on a pty (answering and mute), a broker socket, the state
database, and against a running service."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from drivers.zigbee.timing import ZigbeeTiming
from gateway.cli import doctor as doctor_mod
from gateway.cli import main
from gateway.cli.base import CliContext, cli
from gateway.cli.doctor import DoctorHost, report
from hw_mocks.znp import ZStackSimulator
from tests.api_support import running
from tests.broker import Mosquitto


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n\n[api]\nport = {free_port()}\n\n' + extra
    )
    return path


def cli_context(argv: tuple[str, ...]) -> CliContext:
    """What ``migw`` makes of the global options in ``argv``."""
    return CliContext(**cli.make_context("migw", [*argv, "doctor"]).params)


async def doctor(
    capsys: pytest.CaptureFixture[str], *argv: str, host: DoctorHost | None = None
) -> tuple[int, dict[str, Any]]:
    """``migw ARGV doctor --json`` through main(argv), or with ``host`` through the command's
    seam (``report``) looking at that host."""
    capsys.readouterr()
    if host is None:
        code = await asyncio.to_thread(main, [*argv, "doctor", "--json"])
    else:
        code = await asyncio.to_thread(report, cli_context(argv), True, host)
    out, _ = capsys.readouterr()
    data = json.loads(out)
    return code, {c["name"]: c for c in data["checks"]} | {"_summary": data["summary"]}


def result(name: str, level: str, detail: str, hint: str = "") -> dict[str, str]:
    """One check as ``doctor --json`` prints it."""
    return {"name": name, "level": level, "detail": detail, "hint": hint}


#: The stick's ping shortened: the simulator answers at once, or never.
FAST = DoctorHost(stick=ZigbeeTiming(ping_timeout=0.3, bootloader_wait_s=0.05))


async def test_a_missing_serial_port_fails_with_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "ttyUSB-gone"
    cfg = write_config(tmp_path, f'[zigbee]\nenabled = true\nport = "{missing}"\n')
    code, checks = await doctor(capsys, "--config", str(cfg))
    assert code == 1
    assert checks["zigbee serial port"] == result(
        "zigbee serial port",
        "fail",
        f"{missing} does not exist",
        "plug the stick in; `ls -l /dev/serial/by-id/` lists it; set zigbee.port to "
        "that /dev/serial/by-id/... path",
    )
    assert checks["config"]["level"] == "pass"
    assert checks["service"]["level"] == "warn"
    assert checks["state database"]["level"] == "warn"


async def test_the_simulated_coordinator_answers_the_ping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ZStackSimulator() as sim:
        cfg = write_config(tmp_path, f'[zigbee]\nenabled = true\nport = "{sim.path}"\n')
        code, checks = await doctor(capsys, "--config", str(cfg), host=FAST)
        assert "SYS_PING" in sim.commands_seen
    assert checks["zigbee serial port"]["level"] == "pass", checks["zigbee serial port"]
    assert checks["zigbee serial port"]["detail"] == f"{sim.path} answers a ping (Z-Stack 3.x.0)"
    assert code == 0


async def test_a_mute_stick_fails_the_ping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ZStackSimulator() as sim:
        sim.mute = True
        cfg = write_config(tmp_path, f'[zigbee]\nenabled = true\nport = "{sim.path}"\n')
        code, checks = await doctor(capsys, "--config", str(cfg), host=FAST)
    assert code == 1
    check = checks["zigbee serial port"]
    assert check["level"] == "fail"
    assert check["detail"] == f"no answer from the stick at {sim.path} (115200 baud)"
    assert "zigbee2mqtt" in check["hint"]


async def test_invalid_config_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[zigbee]\nchanel = 11\n")
    code, checks = await doctor(capsys, "--config", str(cfg))
    assert code == 1
    assert checks["config"]["level"] == "fail"
    assert "zigbee.chanel" in checks["config"]["detail"]
    assert "did you mean 'channel'" in checks["config"]["detail"]
    assert checks["zigbee serial port"]["level"] == "skip"


async def test_broker_login_on_a_real_mosquitto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mosquitto: Mosquitto
) -> None:
    cfg = write_config(tmp_path, f'[upstream]\nurl = "{mosquitto.url}"\n')
    _, checks = await doctor(capsys, "--config", str(cfg))
    assert checks["mqtt broker"] == result(
        "mqtt broker", "pass", f"{mosquitto.url} reachable, MQTT login ok"
    )


async def test_broker_tls_handshake_and_untrusted_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tls_mosquitto: Mosquitto
) -> None:
    tls = tls_mosquitto.tls
    assert tls is not None
    good = (
        f'[upstream]\nurl = "{tls_mosquitto.url}"\nca_file = "{tls.ca}"\n'
        f'cert_file = "{tls.client_cert}"\nkey_file = "{tls.client_key}"\n'
    )
    _, checks = await doctor(capsys, "--config", str(write_config(tmp_path, good)))
    assert checks["mqtt broker"]["level"] == "pass", checks["mqtt broker"]
    assert checks["mqtt broker"]["detail"].startswith(f"{tls_mosquitto.url} reachable, TLS ok (")
    assert checks["mqtt broker"]["detail"].endswith("), MQTT login ok")

    bad = good.replace(str(tls.ca), str(tls.other_ca))
    code, checks = await doctor(capsys, "--config", str(write_config(tmp_path, bad)))
    assert code == 1
    check = checks["mqtt broker"]
    assert check["level"] == "fail"
    # the verification message is OpenSSL's own
    assert re.fullmatch(
        re.escape(f"{tls_mosquitto.url}: TLS handshake failed: ")
        + "self.signed certificate in certificate chain",
        check["detail"],
    ), check["detail"]
    assert "ca_file" in check["hint"]
    # a socket of the failed handshake left unclosed would warn here (warnings are errors)
    gc.collect()


async def test_broker_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers: list[bytes] = []

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            header = await reader.readexactly(2)
            await reader.readexactly(header[1])
            if answers:
                writer.write(answers.pop(0))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(fake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"mqtt://127.0.0.1:{port}"
    cfg = write_config(tmp_path, f'[upstream]\nurl = "{url}"\nusername = "bob"\n')
    try:
        # an MQTT 5 CONNACK (the config's protocol): reason 0x87 "Not authorized"
        answers.append(b"\x20\x03\x00\x87\x00")
        code, checks = await doctor(capsys, "--config", str(cfg))
        assert code == 1
        assert checks["mqtt broker"]["detail"] == (
            f"{url} reachable, but the broker refused the login: not authorized"
        )
        code, checks = await doctor(capsys, "--config", str(cfg))  # no answer at all
        assert checks["mqtt broker"]["detail"] == (
            f"{url} accepted the connection but did not answer an MQTT CONNECT"
        )
    finally:
        server.close()
        await server.wait_closed()
    closed = free_port()
    cfg = write_config(tmp_path, f'[upstream]\nurl = "mqtt://127.0.0.1:{closed}"\n')
    code, checks = await doctor(capsys, "--config", str(cfg))
    assert code == 1
    assert checks["mqtt broker"]["level"] == "fail"
    assert checks["mqtt broker"]["detail"].startswith(
        f"mqtt://127.0.0.1:{closed}: cannot connect: "
    )


async def test_ble_adapter_missing_and_blocked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_bt = tmp_path / "sys" / "bluetooth"
    sys_rf = tmp_path / "sys" / "rfkill"
    sys_bt.mkdir(parents=True)
    sys_rf.mkdir(parents=True)
    host = DoctorHost(sys_bluetooth=sys_bt, sys_rfkill=sys_rf)
    cfg = write_config(tmp_path, "[ble]\nenabled = true\n")
    code, checks = await doctor(capsys, "--config", str(cfg), host=host)
    assert code == 1
    assert checks["ble adapter"]["level"] == "fail"
    assert checks["ble adapter"]["detail"] == "no Bluetooth adapter hci0"

    (sys_bt / "hci0").mkdir()
    rf = sys_rf / "rfkill0"
    rf.mkdir()
    (rf / "type").write_text("bluetooth\n")
    (rf / "soft").write_text("1\n")
    (rf / "hard").write_text("0\n")
    code, checks = await doctor(capsys, "--config", str(cfg), host=host)
    assert checks["ble adapter"] == result(
        "ble adapter", "fail", "hci0 is blocked by rfkill (soft)", "sudo rfkill unblock bluetooth"
    )


async def test_gpiochip_presence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    host = DoctorHost(dev=dev)
    cfg = write_config(tmp_path, '[[gpio.devices]]\nname = "relay"\nkind = "relay"\npin = 23\n')
    code, checks = await doctor(capsys, "--config", str(cfg), host=host)
    assert code == 1
    assert checks["gpiochip"]["level"] == "fail"
    (dev / "gpiochip0").write_bytes(b"")
    code, checks = await doctor(capsys, "--config", str(cfg), host=host)
    assert checks["gpiochip"] == result("gpiochip", "pass", "gpiochip0 usable")


async def test_a_corrupt_state_database_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    code, checks = await doctor(capsys, "--config", str(cfg))
    assert code == 1
    assert checks["state database"]["level"] == "fail"
    assert "moved aside" in checks["state database"]["hint"]


async def test_store_damage_found_at_a_start_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 14: an older copy of the database restored behind the numbers handed out is
    found by the store at its next start; doctor names it while the service is down."""
    import shutil

    from gateway.store import Store
    from tests.helpers import reading

    cfg = write_config(tmp_path)
    db = tmp_path / "state" / "state.db"
    db.parent.mkdir()
    for n in (1, 5):
        async with await Store.open(db) as store:
            for _ in range(n):
                store.add_reading(reading())
            await store.flush()
        if n == 1:
            shutil.copy2(db, tmp_path / "older.db")
    shutil.copy2(tmp_path / "older.db", db)  # the older copy comes back
    async with await Store.open(db) as store:
        assert store.damage, "the store must find it"
    _, checks = await doctor(capsys, "--config", str(cfg))
    check = checks["state database"]
    assert check["level"] == "warn", check
    assert check["detail"].startswith(f"{db}: integrity ok; at ")
    assert "the store found: the database ends at #1 but numbers up to #6" in check["detail"]
    assert "sequence numbers continued" in check["hint"]


async def test_doctor_against_the_running_service(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(tmp_path / "state", mock_pins) as api:
        code, checks = await doctor(capsys, *api.cli_args())
        assert checks["service"]["level"] == "pass", checks["service"]
        assert checks["api token"] == result(
            "api token", "pass", f"{tmp_path / 'state' / 'api-token'} (mode 0600)"
        )
        assert checks["state database"]["level"] == "pass"
        assert checks["_summary"]["fail"] == 0
        assert code == 0

        # progress: every check is printed as it finishes, numbered
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*api.cli_args(), "doctor"])
        out, _ = capsys.readouterr()
        lines = [line for line in out.splitlines() if line.startswith("[")]
        n = len(doctor_mod.CHECKS)
        assert [line[:7] for line in lines] == [f"[{i:>2}/{n}]" for i in range(1, n + 1)]
        assert "failed" in out.splitlines()[-1]


async def test_doctor_judges_radios_from_the_running_demo_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo runs zigbee, ble and gpio on simulated hardware while the config file (none
    here) enables none of them: doctor reports what the service runs."""
    from gateway.adapters import DemoOptions
    from gateway.api.server import ApiServer
    from gateway.config import Config
    from gateway.demo import demo_config
    from gateway.service import Service

    state = tmp_path / "state"
    cfg = demo_config(Config(), state, 0)
    async with Service(cfg, demo=DemoOptions(ble_devices=1, gpio_interval=60.0)) as svc:
        server = next(c for c in svc.components if c.name == "api")
        assert isinstance(server, ApiServer)
        await asyncio.wait_for(server.listening.wait(), 10)
        for _ in range(500):
            wanted = {r.name: r.health.value for r in svc.radios()}
            if all(wanted.get(n) == "ok" for n in ("zigbee", "ble", "gpio")):
                break
            await asyncio.sleep(0.02)
        args = ["--state-dir", str(state), "--api-port", str(server.port)]
        _code, checks = await doctor(capsys, *args)
    assert checks["zigbee serial port"]["level"] == "pass", checks["zigbee serial port"]
    assert "the running service talks to the stick" in checks["zigbee serial port"]["detail"]
    assert checks["ble adapter"] == result(
        "ble adapter", "pass", "simulated: the running service scans"
    )
    assert checks["bluez"] == result(
        "bluez", "skip", "the running service scans a simulated adapter (demo)"
    )
    assert checks["gpiochip"] == result(
        "gpiochip", "pass", "the running service drives 5 GPIO devices"
    )
    assert not any("disabled in the config" in c.get("detail", "") for c in checks.values())
