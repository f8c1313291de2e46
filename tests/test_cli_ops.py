"""The CLI through main(argv) against a real running service (API on loopback), and
against a stopped one (read-only fallback on the state database)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.api.token import read_token, token_path
from gateway.cli import main
from gateway.model import Command
from tests.api_support import Running, running


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``migw argv`` in a thread (it runs its own event loop) while ours serves."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
async def api(tmp_path: Path, mock_pins: Any) -> Any:
    async with running(tmp_path / "state", mock_pins) as r:
        yield r


async def test_status_against_the_running_service(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, *api.cli_args(), "status", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["service"]["state"] == "running"
    assert data["service"]["status"] == "ok"
    assert data["devices"]["total"] == 5
    assert {r["name"] for r in data["radios"]} >= {"gpio", "api"}

    code, out, _ = await cli(capsys, *api.cli_args(), "status")
    assert code == 0
    assert "service    running" in out
    assert "devices    5 (ok 5); 0 stale" in out
    assert "gpio" in out and "clock" in out and "disk" in out


async def test_devices_table_and_json(api: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, *api.cli_args(), "devices", "--json")
    assert code == 0
    data = json.loads(out)
    assert [d["id"] for d in data["devices"]] == [
        "gpio-front-door",
        "gpio-hall-button",
        "gpio-hall-pir",
        "gpio-hall-relay",
        "gpio-status-led",
    ]
    code, out, _ = await cli(capsys, *api.cli_args(), "devices")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:4] == ["ID", "NAME", "MODEL", "TRANSPORT"]
    relay = ["gpio-hall-relay", "hall-relay", "gpio-relay", "gpio"]
    assert any(line.split()[:4] == relay for line in out.splitlines())
    for width in ("100", "60", "30"):
        # a narrow terminal: columns wrap or drop, ids stay whole (they are copied)
        os.environ["COLUMNS"] = width
        try:
            code, out, err = await cli(capsys, *api.cli_args(), "devices")
        finally:
            del os.environ["COLUMNS"]
        assert code == 0
        ids = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
        assert [i for i in ids if i.startswith("gpio-")] == [
            "gpio-front-door",
            "gpio-hall-button",
            "gpio-hall-pir",
            "gpio-hall-relay",
            "gpio-status-led",
        ], out
        assert "…" not in out
        assert all(len(line) <= int(width) for line in out.splitlines())
    assert "not shown on 30 columns: " in err
    code, out, _ = await cli(capsys, *api.cli_args(), "devices", "--transport", "ble", "--json")
    assert (code, json.loads(out)["count"]) == (0, 0)
    code, out, _ = await cli(capsys, *api.cli_args(), "devices", "--stale", "--json")
    assert (code, json.loads(out)["count"]) == (0, 0)


async def test_send_switches_the_relay_and_tail_shows_it(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    tail = asyncio.create_task(
        asyncio.to_thread(
            main,
            [*api.cli_args(), "tail", "--device", "gpio-hall-relay", "--count", "2", "--json"],
        )
    )
    # wait until the tail client is subscribed before switching
    for _ in range(500):
        if api.server.hub.clients:
            break
        await asyncio.sleep(0.01)
    assert api.server.hub.clients
    code = await asyncio.to_thread(main, [*api.cli_args(), "send", "gpio-hall-relay", "on"])
    assert code == 0
    code = await asyncio.to_thread(main, [*api.cli_args(), "send", "gpio-hall-relay", "toggle"])
    assert code == 0
    assert await asyncio.wait_for(tail, 30) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "gpio-hall-relay: on ok (switch = on)"
    assert lines[1] == "gpio-hall-relay: toggle ok (switch = off)"
    readings = [json.loads(line) for line in lines[2:]]
    assert [(r["type"], r["device"], r["metric"], r["value"]) for r in readings] == [
        ("reading", "gpio-hall-relay", "switch", True),
        ("reading", "gpio-hall-relay", "switch", False),
    ]


async def test_send_errors_are_clear(api: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await cli(capsys, *api.cli_args(), "send", "gpio-nope", "on")
    assert code == 1
    assert "no device 'gpio-nope'" in err and "404 unknown_device" in err
    code, out, _ = await cli(capsys, *api.cli_args(), "send", "gpio-hall-pir", "on", "--json")
    assert code == 1
    assert json.loads(out)["code"] == "unsupported_command"


async def test_queue_and_permit_join(api: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, *api.cli_args(), "queue", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["depth"] > 0 and data["oldest"]["seq"] >= 1
    code, out, _ = await cli(capsys, *api.cli_args(), "queue")
    assert code == 0
    assert "waiting" in out and "oldest waiting: #" in out
    code, _, err = await cli(capsys, *api.cli_args(), "zigbee", "permit-join", "30")
    assert code == 1
    assert "zigbee_unavailable" in err


async def test_a_wrong_token_is_explained(
    api: Running, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    args = ["--state-dir", str(other), "--api-port", str(api.port)]
    # no token there: the hint names the service's log, never a token the service ignores
    code, _, err = await cli(capsys, *args, "devices")
    assert code == 1
    assert "the API refused the token: no API token in" in err
    assert "`migw token` creates" not in err and "--state-dir DIR" in err
    code, out, err = await cli(capsys, *args, "token")
    assert (code, out) == (1, "")
    assert f"no migw state in {other}: is this the service's state directory?" in err
    assert not token_path(other).exists()
    code, _, _ = await cli(capsys, *args, "token", "--create")
    assert code == 0
    code, _, err = await cli(capsys, *args, "devices")
    assert code == 1
    assert f"the API refused the token: the token in {other} is not the running service's" in err


async def test_token_command_creates_and_rotates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s"
    code, out, _ = await cli(capsys, "--state-dir", str(state), "token", "--create")
    assert code == 0
    first = out.strip()
    assert first == read_token(state)
    assert stat.S_IMODE(token_path(state).stat().st_mode) == 0o600
    code, out, _ = await cli(capsys, "--state-dir", str(state), "token")
    assert out.strip() == first
    code, out, _ = await cli(capsys, "--state-dir", str(state), "token", "--rotate", "--json")
    data = json.loads(out)
    assert data["rotated"] is True and data["mode"] == "0600"
    assert data["token"] != first and data["token"] == read_token(state)


async def test_read_only_fallback_when_the_service_is_down(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    async with running(state, mock_pins) as r:
        args = r.cli_args()
        await r.service.command("gpio-hall-relay", Command("on"))
        assert r.service.store is not None
        await r.service.store.flush()
    # the service is stopped: nothing listens on its port any more
    code, out, err = await cli(capsys, *args, "device", "gpio-hall-relay", "--json")
    assert code == 0
    assert json.loads(out)["state"]["switch"]["value"] is True
    assert "showing the saved state" in err
    code, out, err = await cli(capsys, *args, "status", "--json")
    assert code == 3
    assert "not running" in err and "read-only" in err
    data = json.loads(out)
    assert data["service"]["state"] == "not running"
    assert data["devices"]["total"] == 5
    assert data["outbox"]["depth"] > 0

    code, out, err = await cli(capsys, *args, "status")
    assert code == 3
    assert "NOT RUNNING" in out

    code, out, err = await cli(capsys, *args, "devices", "--json")
    assert code == 0 and "read-only" in err
    assert json.loads(out)["count"] == 5

    code, out, err = await cli(capsys, *args, "queue", "--json")
    assert code == 0 and "read-only" in err
    assert json.loads(out)["depth"] > 0

    # commands that need the live service say so
    code, _, err = await cli(capsys, *args, "send", "gpio-hall-relay", "off")
    assert code == 3 and "not running" in err
    code, _, err = await cli(capsys, *args, "tail", "--count", "1")
    assert code == 3 and "tail needs the running service" in err


async def test_no_service_and_no_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--state-dir", str(tmp_path / "empty"), "--api-port", "1"]
    code, _, err = await cli(capsys, *args, "status")
    assert code == 3
    assert "the service is not running" in err
    assert "the saved state cannot be read: no state database" in err
    assert "showing the saved state" not in err


async def test_tail_follows_the_service_through_a_restart(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    async with running(state, mock_pins) as r:
        port = r.port
        args = [*r.cli_args(), "tail", "--device", "gpio-hall-relay", "--count", "1", "--json"]
        tail = asyncio.create_task(asyncio.to_thread(main, args))
        for _ in range(500):
            if r.server.hub.clients:
                break
            await asyncio.sleep(0.01)
        assert r.server.hub.clients
        await r.service.stop()
    await asyncio.sleep(0.5)
    assert not tail.done()
    async with running(state, mock_pins, port=port) as r2:
        # Once back, tail prints the relay's first live reading of the restarted service: its
        # start-up ``switch=false`` when tail reconnects before the relay reports (a loaded
        # machine), else the ``on`` commanded here. Tail replays nothing, and printed nothing
        # while the first service ran (it would have exited), so either comes from r2.
        for _ in range(1000):
            if r2.server.hub.clients or tail.done():
                break
            await asyncio.sleep(0.01)
        assert r2.server.hub.clients or tail.done(), "tail did not reconnect"
        if not tail.done():
            await r2.service.command("gpio-hall-relay", Command("on"))
        assert await asyncio.wait_for(tail, 30) == 0
    out, err = capsys.readouterr()
    got = json.loads(out.splitlines()[-1])
    assert (got["device"], got["metric"]) == ("gpio-hall-relay", "switch")
    assert got["value"] in (False, True)
    assert "the service went away (restarting?)" in err
    assert "the service is back: following again" in err


async def test_tail_of_an_unknown_device_says_so(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await cli(capsys, *api.cli_args(), "tail", "--device", "nope")
    assert (code, out) == (1, "")
    assert "no such device 'nope' (`migw devices` lists them)" in err


async def test_queue_watch_follows_a_drain_to_the_end(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # an uplink is configured (a broker that is down): the backlog waits for it
    async with running(tmp_path / "state", mock_pins, upstream="mqtt://127.0.0.1:9") as api:
        await _follow_a_drain(api, capsys)


async def test_queue_says_there_is_no_uplink(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, *api.cli_args(), "queue", "--json")
    assert code == 0
    assert json.loads(out)["uplink"] is False
    code, out, err = await cli(capsys, *api.cli_args(), "queue", "--watch")
    assert code == 0
    assert "upstream: none configured" in out + err


async def test_queue_offline_says_there_is_no_uplink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.store import Store
    from tests.helpers import reading

    state = tmp_path / "state"
    async with await Store.open(state / "state.db", uplink=lambda: False) as store:
        store.add_reading(reading())
        await store.flush()
    code, out, _ = await cli(capsys, "--state-dir", str(state), "--api-port", "9", "queue")
    assert code == 0
    assert "none configured" in out


async def _follow_a_drain(api: Running, capsys: pytest.CaptureFixture[str]) -> None:
    store = api.service.store
    assert store is not None
    depth = (await store.outbox_stats()).depth
    assert depth >= 3
    watch = asyncio.create_task(
        asyncio.to_thread(main, [*api.cli_args(), "queue", "--watch", "--interval", "0.05"])
    )
    # the uplink acknowledges the backlog in three steps (as the sync agent does)
    for _ in range(3):
        await asyncio.sleep(0.2)
        rows = await store.outbox_fetch(max(1, depth // 3))
        await store.outbox_delete(r.seq for r in rows)
    rows = await store.outbox_fetch(10_000)
    await store.outbox_delete(r.seq for r in rows)
    assert await asyncio.wait_for(watch, 30) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[1:3] == ["waiting", str(depth)]
    assert lines[-1].split()[1:3] == ["waiting", "0"]
    assert any("draining" in line for line in lines)
    assert "the outbox is empty" in err


async def test_where_state_dir_and_api_port_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As docs/api.md says: global options before any command, and options of `migw run`
    too; not options of the other commands."""
    code, out, _ = await cli(capsys, "run", "--help")
    assert code == 0
    assert "--state-dir" in out and "--api-port" in out
    code, _, err = await cli(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 2
    assert "No such option '--state-dir'" in err
    args = ["--state-dir", str(tmp_path / "empty"), "--api-port", "1"]
    code, _, err = await cli(capsys, *args, "status")
    assert code == 3  # the options were taken: nothing runs there


async def test_device_shows_values_with_units_age_and_last_readings(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await api.service.command("gpio-hall-relay", Command("on"))
    assert api.service.store is not None
    await api.service.store.flush()
    code, out, _ = await cli(capsys, *api.cli_args(), "device", "gpio-hall-relay", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["id"] == "gpio-hall-relay" and data["name"] == "hall-relay"
    assert data["state"]["switch"]["value"] is True
    assert [h["metric"] for h in data["history"]][-1] == "switch"
    assert data["history"][-1]["value"] is True
    code, out, _ = await cli(capsys, *api.cli_args(), "device", "gpio-hall-relay")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["gpio-hall-relay", "hall-relay"]
    assert "  key        none" in lines
    assert any(line.split()[:2] == ["switch", "on"] and "ago" in line for line in lines)
    assert "last readings:" in lines
    code, out, err = await cli(capsys, *api.cli_args(), "device", "gpio-nope")
    assert (code, out) == (1, "")
    assert "no device 'gpio-nope'" in err


def test_install_cli_links_migw_into_a_bin_dir_and_says_how_to_reach_it(tmp_path: Path) -> None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    target = tmp_path / "venv-bin-migw"
    target.write_text("#!/bin/sh\necho migw-ok\n")
    target.chmod(0o755)
    bindir = tmp_path / "home" / ".local" / "bin"
    env = {"PATH": "/usr/bin:/bin", "BINDIR": str(bindir), "HOME": str(tmp_path / "home")}
    out = subprocess.run(
        ["sh", str(root / "tools" / "install-cli.sh"), str(target)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (bindir / "migw").resolve() == target.resolve()
    assert f'export PATH="{bindir}:$PATH"' in out
    # a fresh shell with that directory on its PATH finds the command as printed
    env["PATH"] = f"{bindir}:/usr/bin:/bin"
    ran = subprocess.run(["sh", "-c", "migw"], env=env, capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "migw-ok"


def test_start_up_log_names_the_cli_and_the_token_file(tmp_path: Path) -> None:
    from gateway.cli.run_cmd import where_to_look
    from gateway.config import Config
    from gateway.demo import demo_config

    cfg = demo_config(Config(), tmp_path / "st", 8399)
    line = where_to_look(cfg)
    assert f"token in {tmp_path / 'st' / 'api-token'}" in line
    assert f" --state-dir {tmp_path / 'st'} --api-port 8399 status`" in line
    assert "web dashboard and LAN API on http://127.0.0.1:8399/" in line


async def test_name_a_gpio_device_and_forget_is_refused_for_it(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    args = api.cli_args()
    code, out, _ = await cli(
        capsys, *args, "name", "gpio-hall-relay", "Hall light", "--room", "hall"
    )
    assert (code, out) == (0, "gpio-hall-relay is now Hall light in hall\n")
    code, out, _ = await cli(capsys, *args, "device", "gpio-hall-relay", "--json")
    data = json.loads(out)
    assert (data["name"], data["room"]) == ("Hall light", "hall")
    code, out, _ = await cli(capsys, *args, "devices")
    assert "ROOM" in out.splitlines()[0]
    assert any("Hall light" in line and "hall" in line for line in out.splitlines())
    code, out, err = await cli(capsys, *args, "name", "gpio-nope", "X")
    assert (code, out) == (1, "")
    assert "no device 'gpio-nope'" in err
    code, _, err = await cli(capsys, *args, "forget", "gpio-hall-relay")
    assert code == 1
    assert "remove it from [[gpio.devices]]" in err


async def test_device_shows_the_last_events(
    api: Running, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    button = mock_pins.pin(17)  # the demo's hall button, pressed once
    button.drive_low()
    await asyncio.sleep(0.05)
    button.drive_high()
    store = api.service.store
    assert store is not None
    for _ in range(300):  # a single press is known once the double-press window has passed
        await store.flush()
        code, out, _ = await cli(capsys, *api.cli_args(), "device", "gpio-hall-button", "--json")
        if json.loads(out)["events"]:
            break
        await asyncio.sleep(0.05)
    events = json.loads(out)["events"]
    assert [(e["event"], e["action"]) for e in events] == [("button", "single")]
    code, out, _ = await cli(capsys, *api.cli_args(), "device", "gpio-hall-button")
    assert code == 0
    lines = out.splitlines()
    assert "last events:" in lines
    assert any(line.endswith("button: single") for line in lines)
