"""The LAN API over real HTTP and WebSocket on a loopback port, against a real Service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.events import EventFilter, EventHub
from gateway.api.timing import ApiTiming
from gateway.api.token import rotate_token, token_path
from gateway.service import ServiceTiming
from gateway.store import Commit
from tests.api_support import Running, api_timing, running, with_limits
from tests.helpers import event, reading

PROTECTED = [
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/devices"),
    ("GET", "/api/v1/devices/gpio-hall-relay"),
    ("GET", "/api/v1/devices/gpio-hall-relay/history"),
    ("GET", "/api/v1/radios"),
    ("GET", "/api/v1/outbox"),
    ("POST", "/api/v1/devices/gpio-hall-relay/commands"),
    ("POST", "/api/v1/zigbee/permit-join"),
    ("POST", "/api/v1/zigbee/backup"),
    ("GET", "/api/v1/events"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/no-such-thing"),
]


@pytest.fixture
async def api(tmp_path: Path, mock_pins: Any, request: pytest.FixtureRequest) -> Any:
    """The service with its API; a test parametrizes it (indirect) with other API limits."""
    async with running(tmp_path / "state", mock_pins, timing=api_timing(request)) as r:
        yield r


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, api: Running, path: str, status: int = 200) -> Any:
    async with http.get(api.base + path, headers=api.auth) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


async def post_json(
    http: aiohttp.ClientSession, api: Running, path: str, data: Any, status: int = 200
) -> Any:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    async with http.post(api.base + path, headers=api.auth, data=raw) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


async def assert_healthy(http: aiohttp.ClientSession, api: Running) -> None:
    async with http.get(f"{api.base}/api/v1/health") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert (body["status"], body["reasons"]) == ("ok", []), body


def strip_times(device: dict[str, Any]) -> dict[str, Any]:
    out = dict(device)
    for key in ("last_seen", "last_seen_age_s"):
        assert out.pop(key) is not None
    return out


async def test_health_needs_no_token(api: Running, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.base}/api/v1/health") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok", body
    assert body["reasons"] == []
    assert body["uptime_s"] >= 0


async def test_token_file_is_generated_with_mode_0600(api: Running) -> None:
    path = token_path(api.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == api.token
    assert len(api.token) >= 40


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer ünïcode"},
    ],
    ids=["none", "wrong", "basic", "empty", "non-ascii"],
)
async def test_every_endpoint_but_health_needs_the_token(
    api: Running, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for method, path in PROTECTED:
        async with http.request(method, api.base + path, headers=headers) as resp:
            assert resp.status == 401, (method, path)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            body = await resp.json()
        assert body["error"]["code"] == "unauthorized"
    await assert_healthy(http, api)


async def test_a_rotated_token_takes_effect_without_restart(
    api: Running, http: aiohttp.ClientSession
) -> None:
    await get_json(http, api, "/api/v1/radios")
    new = rotate_token(api.state_dir)
    assert stat.S_IMODE(token_path(api.state_dir).stat().st_mode) == 0o600
    async with http.get(f"{api.base}/api/v1/radios", headers=api.auth) as resp:
        assert resp.status == 401
    headers = {"Authorization": f"Bearer {new}"}
    async with http.get(f"{api.base}/api/v1/radios", headers=headers) as resp:
        assert resp.status == 200


async def test_devices_with_filters(api: Running, http: aiohttp.ClientSession) -> None:
    body = await get_json(http, api, "/api/v1/devices")
    assert body["count"] == 5
    ids = [d["id"] for d in body["devices"]]
    assert ids == sorted(ids)
    relay = next(d for d in body["devices"] if d["id"] == "gpio-hall-relay")
    assert strip_times(relay) == {
        "id": "gpio-hall-relay",
        "name": "hall-relay",
        "room": "",
        "transport": "gpio",
        "model": "gpio-relay",
        "manufacturer": "GPIO",
        "status": "ok",
        "key_status": "none",
        "battery": None,
        "rssi": None,
        "lqi": None,
        "sleepy": True,
        "stale": False,
        "attrs": {"kind": "relay", "pin": "23"},
    }
    assert (await get_json(http, api, "/api/v1/devices?transport=gpio"))["count"] == 5
    assert (await get_json(http, api, "/api/v1/devices?transport=ble,zigbee"))["count"] == 0
    only = await get_json(http, api, "/api/v1/devices?model=gpio-relay")
    assert [d["id"] for d in only["devices"]] == ["gpio-hall-relay"]
    assert (await get_json(http, api, "/api/v1/devices?stale=true"))["count"] == 0
    assert (await get_json(http, api, "/api/v1/devices?status=ok&stale=false"))["count"] == 5
    bad = await get_json(http, api, "/api/v1/devices?transport=lora", status=400)
    assert bad["error"]["code"] == "invalid_query"
    bad = await get_json(http, api, "/api/v1/devices?stale=maybe", status=400)
    assert bad["error"]["code"] == "invalid_query"


async def test_device_detail_command_and_history(api: Running, http: aiohttp.ClientSession) -> None:
    detail = await get_json(http, api, "/api/v1/devices/gpio-hall-relay")
    assert detail["state"]["switch"]["value"] is False
    assert detail["state"]["switch"]["unit"] is None

    ok = await post_json(http, api, "/api/v1/devices/gpio-hall-relay/commands", {"switch": True})
    assert ok == {
        "device": "gpio-hall-relay",
        "command": "on",
        "status": "ok",
        "state": {"switch": True},
    }
    ok = await post_json(
        http, api, "/api/v1/devices/gpio-hall-relay/commands", {"command": "toggle"}
    )
    assert ok["state"] == {"switch": False}
    assert api.service.store is not None
    await api.service.store.flush()

    hist = await get_json(http, api, "/api/v1/devices/gpio-hall-relay/history?metric=switch")
    assert [r["value"] for r in hist["readings"]] == [False, True, False]
    assert [r["metric"] for r in hist["readings"]] == ["switch"] * 3
    seqs = [r["seq"] for r in hist["readings"]]
    assert seqs == sorted(seqs)
    assert hist["truncated"] is False
    since = hist["readings"][1]["ts"]
    later = await get_json(
        http, api, f"/api/v1/devices/gpio-hall-relay/history?metric=switch&since={since}"
    )
    assert [r["value"] for r in later["readings"]] == [True, False]
    iso = await get_json(
        http, api, "/api/v1/devices/gpio-hall-relay/history?until=2001-01-01T00:00:00Z"
    )
    assert iso["readings"] == []
    one = await get_json(http, api, "/api/v1/devices/gpio-hall-relay/history?limit=1")
    assert len(one["readings"]) == 1 and one["truncated"] is True
    bad = await get_json(
        http, api, "/api/v1/devices/gpio-hall-relay/history?since=yesterday", status=400
    )
    assert bad["error"]["code"] == "invalid_query"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("gpio-hall-relay", b"{not json", 400, "malformed_json"),
        ("gpio-hall-relay", b"", 400, "malformed_json"),
        ("gpio-hall-relay", b"[" * 5000 + b"]" * 5000, 400, "malformed_json"),
        ("gpio-hall-relay", b"\xff\xfe\x00", 400, "malformed_json"),
        ("gpio-hall-relay", {"switch": "yes"}, 422, "invalid_command"),
        ("gpio-hall-relay", {"command": "explode"}, 422, "invalid_command"),
        ("gpio-hall-relay", {"command": "pulse", "seconds": -1}, 422, "invalid_command"),
        ("gpio-hall-relay", {"command": "pulse", "seconds": 1e400}, 422, "invalid_command"),
        ("gpio-hall-relay", ["on"], 422, "invalid_command"),
        ("gpio-hall-relay", 42, 422, "invalid_command"),
        ("gpio-hall-button", {"command": "on"}, 422, "unsupported_command"),
        ("gpio-nope", {"command": "on"}, 404, "unknown_device"),
        ("x" * 500, {"command": "on"}, 404, "unknown_device"),
    ],
)
async def test_bad_commands_get_the_right_4xx(
    api: Running, http: aiohttp.ClientSession, path: str, body: Any, status: int, code: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(
        f"{api.base}/api/v1/devices/{path}/commands", headers=api.auth, data=raw
    ) as resp:
        got = await resp.json()
        assert resp.status == status, got
    assert got["error"]["code"] == code
    assert "Traceback" not in json.dumps(got)
    await assert_healthy(http, api)


async def test_oversized_bodies_are_refused(api: Running, http: aiohttp.ClientSession) -> None:
    big = json.dumps({"command": "on", "pad": "x" * 70_000}).encode()
    async with http.post(
        f"{api.base}/api/v1/devices/gpio-hall-relay/commands", headers=api.auth, data=big
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(40):
            yield b" " * 4096

    async with http.post(
        f"{api.base}/api/v1/devices/gpio-hall-relay/commands", headers=api.auth, data=chunks()
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"
    await assert_healthy(http, api)


async def test_unknown_device_and_routes(api: Running, http: aiohttp.ClientSession) -> None:
    body = await get_json(http, api, "/api/v1/devices/gpio-nope", status=404)
    assert body["error"]["code"] == "unknown_device"
    body = await get_json(http, api, "/api/v1/devices/gpio-nope/history", status=404)
    assert body["error"]["code"] == "unknown_device"
    body = await get_json(http, api, "/api/v1/nothing", status=404)
    assert body["error"]["code"] == "not_found"
    async with http.delete(f"{api.base}/api/v1/devices", headers=api.auth) as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_radios_status_and_outbox(api: Running, http: aiohttp.ClientSession) -> None:
    radios = (await get_json(http, api, "/api/v1/radios"))["radios"]
    by_name = {r["name"]: r for r in radios}
    assert by_name["gpio"]["kind"] == "radio"
    assert by_name["gpio"]["health"] == "ok"
    assert by_name["gpio"]["restarts"] == 0
    assert by_name["api"]["kind"] == "component"
    assert by_name["api"]["info"] == {"listen": f"127.0.0.1:{api.port}"}

    outbox = await get_json(http, api, "/api/v1/outbox")
    assert api.service.store is not None
    stats = await api.service.store.outbox_stats()
    # the sync agent runs (upstream disabled): its figures overlay the store's
    assert (outbox["source"], outbox["upstream"]) == ("sync", "disabled")
    assert (outbox["dropped"], outbox["expired"]) == (0, 0)
    assert outbox["sync"]["enabled"] is False
    assert outbox["depth"] == stats.depth > 0
    assert outbox["oldest"]["seq"] == stats.oldest_seq
    assert outbox["oldest_age_s"] >= 0

    status = await get_json(http, api, "/api/v1/status")
    assert status["service"]["status"] == "ok"
    assert status["service"]["state"] == "running"
    assert status["devices"]["total"] == 5
    assert status["disk"]["free_bytes"] > 0
    assert isinstance(status["clock"]["synchronized"], bool)
    assert status["store"]["last_seq"] >= stats.depth


async def test_permit_join_without_zigbee_is_a_conflict(
    api: Running, http: aiohttp.ClientSession
) -> None:
    body = await post_json(http, api, "/api/v1/zigbee/permit-join", {"seconds": 60}, status=409)
    assert body["error"]["code"] == "zigbee_unavailable"
    body = await post_json(http, api, "/api/v1/zigbee/permit-join", {"seconds": 999}, status=422)
    assert body["error"]["code"] == "invalid_body"
    body = await post_json(http, api, "/api/v1/zigbee/permit-join", {"s": 1}, status=422)
    assert body["error"]["code"] == "invalid_body"
    body = await post_json(http, api, "/api/v1/zigbee/backup", b"", status=409)
    assert body["error"]["code"] == "zigbee_unavailable"


async def test_metrics_in_prometheus_text_format(api: Running, http: aiohttp.ClientSession) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(f"{api.base}/metrics") as resp:
        assert resp.status == 401
    async with http.get(f"{api.base}/metrics", headers=api.auth) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("migw_up", ())] == 1
    assert samples[("migw_health_ok", ())] == 1
    assert samples[("migw_ingest_readings_total", (("source", "gpio"),))] >= 2
    assert samples[("migw_radio_up", (("radio", "gpio"),))] == 1
    assert samples[("migw_radio_restarts_total", (("radio", "gpio"),))] == 0
    assert samples[("migw_devices", (("status", "ok"), ("transport", "gpio")))] == 5
    assert samples[("migw_outbox_depth", ())] > 0
    assert samples[("process_resident_memory_bytes", ())] > 1e6
    assert ("migw_store_commits_total", ()) in samples
    assert samples[("migw_api_auth_failures_total", ())] == 1
    assert samples[("migw_api_requests_total", (("code", "4xx"),))] == 1
    # levels reported among a component's counters are gauges, not counters
    assert ("migw_radio_value", (("name", "outbox_rows"), ("radio", "sync"))) in samples
    assert not [k for k in samples if k[0] == "migw_radio_counter_total" and "outbox" in str(k)]


async def test_websocket_streams_live_readings_with_a_filter(
    api: Running, http: aiohttp.ClientSession
) -> None:
    url = f"{api.base}/api/v1/events?device=gpio-hall-relay&metric=switch"
    async with http.ws_connect(url, headers=api.auth) as ws:
        hello = await asyncio.wait_for(ws.receive_json(), 10)
        assert hello["type"] == "hello"
        assert hello["filter"] == {
            "device": ["gpio-hall-relay"],
            "metric": ["switch"],
            "type": ["event", "reading", "status"],
        }
        await post_json(http, api, "/api/v1/devices/gpio-hall-relay/commands", {"switch": True})
        # the LED toggles too, but the filter keeps only the relay's switch
        await post_json(http, api, "/api/v1/devices/gpio-status-led/commands", {"switch": False})
        await post_json(http, api, "/api/v1/devices/gpio-hall-relay/commands", {"switch": False})
        got: list[dict[str, Any]] = []
        while len(got) < 2:
            msg = await asyncio.wait_for(ws.receive_json(), 10)
            if msg["type"] == "reading":
                got.append(msg)
        assert [(m["device"], m["metric"], m["value"], m["unit"]) for m in got] == [
            ("gpio-hall-relay", "switch", True, None),
            ("gpio-hall-relay", "switch", False, None),
        ]
        assert got[0]["seq"] < got[1]["seq"]


async def test_websocket_needs_the_token_and_an_upgrade(
    api: Running, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        async with http.ws_connect(f"{api.base}/api/v1/events"):
            pass
    assert err.value.status == 401
    body = await get_json(http, api, "/api/v1/events", status=400)
    assert body["error"]["code"] == "websocket_required"
    body = await get_json(http, api, "/api/v1/events?type=gossip", status=400)
    assert body["error"]["code"] == "invalid_query"


async def test_stopping_the_service_closes_event_streams(
    api: Running, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{api.base}/api/v1/events", headers=api.auth) as ws:
        assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "hello"
        await api.service.stop()
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


@with_limits(ws_send_timeout_s=0.3)
async def test_an_event_client_that_does_not_read_is_dropped(api: Running) -> None:
    # a small receive window and a client that never reads: the server's sends block
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", api.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(
            b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {api.token}\r\n".encode()
            + b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        hub = api.server.hub
        for _ in range(500):
            if hub.clients:
                break
            await asyncio.sleep(0.01)
        (sub,) = hub.clients
        big = json.dumps({"type": "status", "pad": "x" * 60_000})
        for _ in range(200):  # 12 MB, within the client's queue: only sending blocks
            sub.offer(big)
        for _ in range(1000):
            if not hub.clients:
                break
            await asyncio.sleep(0.01)
        assert not hub.clients  # dropped, not waited for
        await _wait_active(api, 0)  # its connection too
    finally:
        writer.close()


async def test_a_half_sent_request_does_not_block_others(
    api: Running, http: aiohttp.ClientSession
) -> None:
    async with raw_connection(api.port, b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nX-Slow: "):
        for _ in range(3):
            await assert_healthy(http, api)
            await get_json(http, api, "/api/v1/devices")


async def test_a_slow_body_gets_408(tmp_path: Path, mock_pins: Any) -> None:
    timing = ServiceTiming(api=ApiTiming(body_timeout_s=0.3))
    async with running(tmp_path / "state", mock_pins, timing=timing) as api:
        await _slow_body_gets_408(api)


async def _slow_body_gets_408(api: Running) -> None:
    async with raw_connection(api.port, command_head(api, 100) + b'{"sw') as conn:
        status_line = await asyncio.wait_for(conn.reader.readline(), 10)
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
    async with aiohttp.ClientSession() as http:
        await assert_healthy(http, api)


async def test_a_slow_event_client_loses_messages_and_is_dropped() -> None:
    hub = EventHub(queue_size=3, lag_limit=5)
    slow = hub.add(EventFilter())
    other = hub.add(EventFilter(devices=frozenset({"gpio-b"})))
    hub.on_commit(Commit([reading(device="gpio-a") for _ in range(7)], [event(device="gpio-b")], 0))
    assert slow.queue.qsize() == 3
    assert slow.dropped == 5
    assert slow.too_slow.is_set()
    assert other.queue.qsize() == 1
    assert json.loads(other.queue.get_nowait())["action"] == "single"
    assert (hub.sent, hub.dropped) == (4, 5)


def test_a_root_rotation_keeps_the_service_users_ownership(tmp_path: Path) -> None:
    import os

    from gateway.api.token import ensure_token

    state = tmp_path / "state"
    state.mkdir()
    first = ensure_token(state)
    if os.geteuid() == 0:
        os.chown(state, 4242, 4243)
        os.chown(token_path(state), 4242, 4243)
    before = token_path(state).stat()
    new = rotate_token(state)
    after = token_path(state).stat()
    assert new != first
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert stat.S_IMODE(after.st_mode) == 0o600


HEALTH_THEN_CLOSE = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class RawConnection:
    """A TCP connection to the API, bytes as a hostile or slow client sends them."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


@contextlib.asynccontextmanager
async def raw_connection(
    port: int, first: bytes = b"", *, local_addr: str | None = None
) -> AsyncIterator[RawConnection]:
    """A new connection (from ``local_addr``, a loopback address) with ``first`` sent on it;
    closed when the block ends."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(local_addr, 0) if local_addr else None
    )
    try:
        conn = RawConnection(reader, writer)
        if first:
            await conn.send(first)
        yield conn
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def command_head(api: Running, content_length: int) -> bytes:
    """The head of an authorized JSON command to the demo relay."""
    return (
        b"POST /api/v1/devices/gpio-hall-relay/commands HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token}\r\n".encode()
        + f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n".encode()
    )


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""


async def answer_then_closed(port: int, request: bytes) -> bytes:
    """Sends ``request`` on a new connection; returns the answer's head and body after
    asserting that the server then closes the connection."""
    async with raw_connection(port, request) as conn:
        answer = await read_response(conn.reader)
        assert await read_until_closed(conn.reader) == b""
        return answer


@with_limits(header_timeout_s=0.3)
async def test_a_trickled_request_head_is_cut_off(
    api: Running, http: aiohttp.ClientSession
) -> None:
    async with raw_connection(api.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n") as conn:
        assert await read_until_closed(conn.reader) == b""  # closed without an answer
    assert api.server.limits.header_timeouts == 1
    assert api.server.health().counters["header_timeouts"] == 1
    # a client that sends its head in time is not affected by the deadline
    async with raw_connection(api.port, HEALTH_THEN_CLOSE) as conn:
        await asyncio.sleep(0.5)
        answer = await read_until_closed(conn.reader)
    assert answer.startswith(b"HTTP/1.1 200")
    await assert_healthy(http, api)


@with_limits(max_per_peer=3)
async def test_connections_are_capped_per_peer(api: Running, http: aiohttp.ClientSession) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(3)]
    for _ in range(100):  # the server has accepted all three
        if api.server.limits.active >= 3:
            break
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await read_until_closed(reader) == b""
    writer.close()
    assert api.server.limits.refused == 1
    for _, w in idle:
        w.close()
    for _ in range(100):
        if api.server.limits.active == 0:
            break
        await asyncio.sleep(0.01)
    await assert_healthy(http, api)


async def _wait_active(api: Running, n: int) -> None:
    for _ in range(500):
        if api.server.limits.active == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{api.server.limits.active} connections, expected {n}")


async def _health_from(api: Running, local_addr: str) -> bytes:
    async with raw_connection(api.port, HEALTH_THEN_CLOSE, local_addr=local_addr) as conn:
        return await read_until_closed(conn.reader)


@with_limits(max_connections=24, max_per_peer=4, local_reserved=4)
async def test_health_and_the_cli_stay_reachable_under_a_connection_flood(
    api: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    # issue 14: a few LAN addresses opening connections that never send a head kept
    # /api/v1/health and the CLI out. 127.0.0.2-9 stand in for LAN hosts; the CLI is
    # 127.0.0.1. Small numbers, same shape as the defaults (docs/api.md).
    from gateway.cli import main

    flooders = [f"127.0.0.{i}" for i in range(2, 10)]
    flood: list[asyncio.StreamWriter] = []
    try:
        for addr in flooders:  # each tries twice its share
            for _ in range(8):
                _, w = await asyncio.open_connection("127.0.0.1", api.port, local_addr=(addr, 0))
                flood.append(w)
        await asyncio.sleep(0.2)
        limits = api.server.limits
        # the LAN may fill its places (24 - 4 reserved), 4 per address at most, and a late
        # flooder takes places from the heavier ones: they end up sharing
        assert limits.active == 20, limits
        assert sorted(limits.per_peer) == flooders
        assert max(limits.per_peer.values()) - min(limits.per_peer.values()) <= 1
        assert limits.refused + limits.evicted == 64 - 20
        evicted = limits.evicted
        # the local CLI gets through on the reserved room
        assert await _health_from(api, "127.0.0.1") != b""
        capsys.readouterr()
        assert await asyncio.to_thread(main, [*api.cli_args(), "status", "--json"]) == 0
        service = json.loads(capsys.readouterr().out)["service"]
        assert (service["state"], service["status"]) == ("running", "ok")
        # a LAN newcomer takes the place of a flooder's waiting connection
        answer = await _health_from(api, "127.0.0.20")
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert limits.evicted == evicted + 1
        assert await _health_from(api, "127.0.0.21") != b""
        # a flooder gains nothing by evicting a peer of its own weight
        refused = limits.refused
        _, w = await asyncio.open_connection("127.0.0.1", api.port, local_addr=(flooders[0], 0))
        flood.append(w)
        await asyncio.sleep(0.1)
        assert limits.refused >= refused
        assert limits.active <= 24
    finally:
        for w in flood:
            w.close()
    await _wait_active(api, 0)
    assert api.server.limits.per_peer == {}


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


@with_limits(header_timeout_s=0.3)
async def test_every_request_head_on_a_kept_alive_connection_is_timed(
    api: Running, http: aiohttp.ClientSession
) -> None:
    # a POST with a body, then a GET: both heads in time, the body is not a head
    body = b'{"nothing": 1}'
    async with raw_connection(api.port, command_head(api, len(body)) + body) as conn:
        assert (await read_response(conn.reader)).startswith(b"HTTP/1.1 4")
        await asyncio.sleep(0.5)  # idle between requests is not head time
        await conn.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(conn.reader)).startswith(b"HTTP/1.1 200")
        assert api.server.limits.header_timeouts == 0
        # the third head trickles in: cut off without an answer
        await conn.send(b"GET /api/v1/health HTTP/1.1\r\n")
        assert await read_until_closed(conn.reader) == b""
    assert api.server.limits.header_timeouts == 1
    await assert_healthy(http, api)


async def test_pipelined_requests_are_answered(api: Running) -> None:
    body = b"{}"
    pipelined = (
        b"POST /api/v1/zigbee/permit-join HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    async with raw_connection(api.port, pipelined) as conn:
        assert (await read_response(conn.reader)).startswith(b"HTTP/1.1 409")
        assert (await read_response(conn.reader)).startswith(b"HTTP/1.1 200")
    assert api.server.limits.header_timeouts == 0


async def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path, mock_pins: Any) -> None:
    assert ApiTiming().keepalive_timeout_s <= 30
    timing = ServiceTiming(api=ApiTiming(keepalive_timeout_s=0.3))
    async with running(tmp_path / "state", mock_pins, timing=timing) as api:
        request = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        assert (await answer_then_closed(api.port, request)).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "request_head",
    [
        b"POST /api/v1/zigbee/permit-join HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ],
    ids=["chunked", "refused-upgrade"],
)
async def test_a_request_the_guard_cannot_follow_closes_its_connection(
    api: Running, request_head: bytes
) -> None:
    assert (await answer_then_closed(api.port, request_head)).startswith(b"HTTP/1.1 401")


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["bad-header-line", "header-too-long", "tls-hello", "bad-content-length"],
)
async def test_malformed_requests_get_a_json_400_without_versions(api: Running, raw: bytes) -> None:
    answer = await answer_then_closed(api.port, raw)  # and the connection is closed
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert lines[0].split(" ", 1)[1] == "400 Bad Request"  # HTTP/1.0: the version is unknown
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["server"] == "migw"
    assert json.loads(body) == {
        "error": {"code": "bad_request", "message": "malformed HTTP request"}
    }


async def test_every_answer_says_server_migw(api: Running, http: aiohttp.ClientSession) -> None:
    answers = []
    for path, headers in [
        ("/api/v1/health", {}),
        ("/api/v1/devices", {}),  # 401
        ("/api/v1/nothing", api.auth),  # 404
        ("/metrics", api.auth),
    ]:
        async with http.get(api.base + path, headers=headers) as resp:
            answers.append((resp.status, resp.headers["Server"]))
    async with http.head(f"{api.base}/api/v1/health") as resp:
        answers.append((resp.status, resp.headers["Server"]))
    assert answers == [(200, "migw"), (401, "migw"), (404, "migw"), (200, "migw"), (200, "migw")]
