"""The CLI through main(argv) against a real running service (API on loopback), and
against a stopped one (read-only fallback on the state database)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from api_support import Running, running

from gateway.api.token import read_token, token_path
from gateway.cli import main
from gateway.model import Command


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
    code, _, _ = await cli(capsys, "--state-dir", str(other), "token")
    assert code == 0
    args = ["--state-dir", str(other), "--api-port", str(api.port)]
    code, _, err = await cli(capsys, *args, "devices")
    assert code == 1
    assert "the API refused the token" in err


async def test_token_command_creates_and_rotates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s"
    code, out, _ = await cli(capsys, "--state-dir", str(state), "token")
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


async def test_tail_ends_when_the_service_stops(
    tmp_path: Path, mock_pins: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(tmp_path / "state", mock_pins) as r:
        tail = asyncio.create_task(asyncio.to_thread(main, [*r.cli_args(), "tail"]))
        for _ in range(500):
            if r.server.hub.clients:
                break
            await asyncio.sleep(0.01)
        assert r.server.hub.clients
        await r.service.stop()
        assert await asyncio.wait_for(tail, 30) == 3
    _, err = capsys.readouterr()
    assert "the service is stopping: the stream ended" in err


async def test_queue_watch_follows_a_drain_to_the_end(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
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
