"""The LAN API's own HTTP/1.1 and WebSocket server (gateway.api.httpd, gateway.api.ws) against
hostile clients, on real sockets against the real service: request smuggling, pipelining,
HEAD, odd targets and methods, WebSocket abuse, shutdown with clients that do not cooperate.
Every test ends with no connection slot left taken."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from gateway.api import http
from gateway.api.guard import ConnectionLimits
from gateway.api.httpd import HttpServer
from gateway.api.timing import ApiTiming
from gateway.service import ServiceTiming
from tests.api_support import Running, api_timing, running, with_limits
from tests.test_api_server import (
    _wait_active,
    answer_then_closed,
    raw_connection,
    read_response,
    read_until_closed,
)

HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
async def api(tmp_path: Path, mock_pins: Any, request: pytest.FixtureRequest) -> Any:
    async with running(tmp_path / "state", mock_pins, timing=api_timing(request)) as r:
        yield r
        await _wait_active(r, 0)  # no connection slot leaked, whatever the test did


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def ws_head(api: Running, extra: bytes = b"") -> bytes:
    return (
        b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {api.token}\r\n".encode()
        + b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + b"\r\n"
    )


# ------------------------------------------------------------------ HTTP framing


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
        b"\r\nhello",
        b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n",
        b"GET /api/v1/h\xc3\xa9alth HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/health HTTP/1.1\r\n\r\n",  # no Host
    ],
    ids=[
        "two-lengths",
        "te-not-chunked",
        "space-before-colon",
        "signed-length",
        "raw-utf8",
        "no-host",
    ],
)
async def test_ambiguous_framing_gets_400_and_a_close(api: Running, raw: bytes) -> None:
    answer = await answer_then_closed(api.port, raw + HEALTH)  # the smuggled GET unanswered
    assert status_of(answer) == 400, answer
    assert answer.count(b"HTTP/1.") == 1


async def test_length_and_chunked_together_close_after_the_answer(api: Running) -> None:
    # Transfer-Encoding wins (RFC 9112 6.3) and the connection closes after the answer: what
    # follows the chunked body is never read as a request
    raw = (
        b"POST /api/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HEALTH
    )
    answer = await answer_then_closed(api.port, raw)
    assert status_of(answer) == 405, answer
    assert b"connection: close" in answer.lower()
    assert answer.count(b"HTTP/1.") == 1


async def test_pipelined_head_answers_carry_no_body(api: Running) -> None:
    head = b"HEAD /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    async with raw_connection(api.port, head + HEALTH + head + HEALTH) as conn:
        for method in ("HEAD", "GET", "HEAD", "GET"):
            async with asyncio.timeout(10):
                answer = await conn.reader.readuntil(b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 200"), answer
            length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert length > 0
            if method == "GET":
                body = await conn.reader.readexactly(length)
                assert json.loads(body)["status"] == "ok"


async def test_http_1_0_is_answered_then_closed(api: Running) -> None:
    for keep_alive in (b"", b"Connection: keep-alive\r\n"):
        raw = b"GET /api/v1/health HTTP/1.0\r\n" + keep_alive + b"\r\n"
        answer = await answer_then_closed(api.port, raw + HEALTH)
        assert status_of(answer) == 200
        assert b"connection: close" in answer.lower()
        assert answer.count(b"HTTP/1.") == 1


@pytest.mark.parametrize(
    ("target", "method", "status"),
    [
        (b"http://gateway.local/api/v1/health?x=1", b"GET", 200),
        (b"HTTP://gateway.local/api/v1/health", b"GET", 401),
        (b"/api/v1/devices/%C3%28%FF%00", b"GET", 404),
        (b"/api/v1/devices?device=%FF%FE&metric=%ZZ", b"GET", 200),
        (b"/api/v1/health?%FF=%FF", b"GET", 200),
        (b"*", b"OPTIONS", 401),
        (b"gateway.local:443", b"CONNECT", 401),
        (b"/api/v1/health", b"CONNECT", 405),
        (b"/api/v1/health", b"BREW", 405),
        (b"/api/v1/health", b"get", 405),
    ],
)
async def test_odd_targets_and_methods_get_json(
    api: Running, target: bytes, method: bytes, status: int
) -> None:
    raw = method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
    raw += f"Authorization: Bearer {api.token}\r\n".encode() if status != 401 else b""
    async with raw_connection(api.port, raw + b"\r\n" + HEALTH) as conn:
        answer = await read_response(conn.reader)
        assert status_of(answer) == status, answer
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert ("error" in body) == (status >= 400), body
        # the connection is still usable (or closed, never confused)
        after = await read_response(conn.reader)
        assert after.startswith(b"HTTP/1.1 200"), after


# ------------------------------------------------------------------ bodies


@with_limits(body_timeout_s=0.3)
async def test_a_websocket_handshake_with_a_slow_body_gets_408(api: Running) -> None:
    # the handshake's body is read before the upgrade: within the body deadline, like any
    # other (before, nothing timed it: the connection, unevictable, was held for ever)
    raw = ws_head(api, b"Content-Length: 10\r\n") + b"abc"
    answer = await answer_then_closed(api.port, raw)
    assert status_of(answer) == 408, answer
    assert not api.server.hub.clients


# ------------------------------------------------------------------ WebSocket


class WsClient:
    """A WebSocket client on a raw connection, frames by wsproto."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = Connection(ConnectionType.CLIENT)

    @classmethod
    async def open(cls, api: Running, rcvbuf: int | None = None) -> WsClient:
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", api.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(ws_head(api))
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        for _ in range(500):
            if api.server.hub.clients:
                break
            await asyncio.sleep(0.01)
        return cls(reader, writer)

    async def events_until_closed(self) -> list[object]:
        """What the server sends until the connection ends."""
        events: list[object] = []
        async with asyncio.timeout(10):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    return events
                self.ws.receive_data(data)
                events.extend(self.ws.events())


async def test_endless_empty_fragments_are_refused_as_too_big(api: Running) -> None:
    # empty continuation frames add nothing to a message's size: before, each one still
    # added a part to the message being assembled, without bound
    client = await WsClient.open(api)
    try:
        frames = client.ws.send(TextMessage(data="a", message_finished=False))
        empty = client.ws.send(TextMessage(data="", message_finished=False))
        frames += empty * 20_000
        client.writer.write(frames)
        events = await client.events_until_closed()
        closes = [e for e in events if isinstance(e, CloseConnection)]
        assert [c.code for c in closes] == [1009], events
    finally:
        client.writer.close()
    assert not api.server.hub.clients


async def test_a_ping_flood_is_answered_and_the_service_stays_healthy(api: Running) -> None:
    from wsproto.events import Ping, Pong

    client = await WsClient.open(api)
    try:
        client.writer.write(b"".join(client.ws.send(Ping(payload=b"%d" % i)) for i in range(2000)))
        client.writer.write(client.ws.send(CloseConnection(code=1000)))
        events = await client.events_until_closed()
        pongs = [e.payload for e in events if isinstance(e, Pong)]
        assert pongs == [b"%d" % i for i in range(2000)]
        assert [e.code for e in events if isinstance(e, CloseConnection)] == [1000]
    finally:
        client.writer.close()
    async with raw_connection(api.port, HEALTH) as conn:
        assert (await read_response(conn.reader)).startswith(b"HTTP/1.1 200")


async def test_an_abrupt_websocket_disconnect_logs_no_error(
    api: Running, caplog: pytest.LogCaptureFixture
) -> None:
    client = await WsClient.open(api)
    # half a frame, then a reset
    client.writer.write(client.ws.send(TextMessage(data="x" * 100))[:10])
    await client.writer.drain()
    client.writer.transport.abort()
    for _ in range(500):
        if not api.server.hub.clients:
            break
        await asyncio.sleep(0.01)
    assert not api.server.hub.clients
    await _wait_active(api, 0)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_client_gone_during_the_websocket_handshake_logs_no_error(
    api: Running, caplog: pytest.LogCaptureFixture
) -> None:
    # the upgrade request, then a reset before the 101 can be written: the handshake's write
    # fails; the handler ends quietly (before: an ERROR with a traceback, and a 500 answer
    # prepared for a connection that was already a WebSocket)
    struct_linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # l_onoff=1, l_linger=0: close = RST
    for _ in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct_linger)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", api.port))
        await asyncio.get_running_loop().sock_sendall(sock, ws_head(api))
        sock.close()
    await _wait_active(api, 0)
    assert not api.server.hub.clients
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    async with raw_connection(api.port, HEALTH) as conn:
        assert (await read_response(conn.reader)).startswith(b"HTTP/1.1 200")


async def test_stop_is_clean_with_a_websocket_client_that_neither_reads_nor_closes(
    tmp_path: Path, mock_pins: Any
) -> None:
    # the close frame cannot be sent (the client's window is full) and would wait an hour:
    # the service's stop still ends cleanly, nothing abandoned, no slot left taken
    timing = ServiceTiming(
        api=ApiTiming(ws_send_timeout_s=3600, keepalive_timeout_s=3600, shutdown_timeout_s=0.3)
    )
    async with running(tmp_path / "state", mock_pins, timing=timing) as api:
        client = await WsClient.open(api, rcvbuf=4096)
        try:
            (sub,) = api.server.hub.clients
            big = json.dumps({"type": "status", "pad": "x" * 60_000})
            for _ in range(100):  # 6 MB: the server's sends block
                sub.offer(big)
            for _ in range(500):
                if sub.queue.qsize() < 99:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            assert await api.service.stop() is True
        finally:
            client.writer.close()
        assert api.server.limits.active == 0


# ------------------------------------------------------------------ the server alone


@contextlib.asynccontextmanager
async def bare_server(
    app: http.Application, **timing: Any
) -> AsyncIterator[tuple[HttpServer, int]]:
    """gateway.api.httpd serving ``app`` alone on a loopback port: the server and its port."""
    server = HttpServer(app, ConnectionLimits(ApiTiming(**timing)), ApiTiming(**timing), "migw")
    await server.setup()
    try:
        yield server, await server.listen("127.0.0.1", 0)
    finally:
        await server.cleanup()


async def _boom(request: http.Request) -> http.StreamResponse:
    raise RuntimeError("secret detail /etc/migw")


async def _no_body(request: http.Request) -> http.StreamResponse:
    return http.StreamResponse(status=200)


async def _hang(request: http.Request) -> http.StreamResponse:
    started.set()
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


started = asyncio.Event()


async def test_failing_handlers_get_a_json_500_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # no error middleware: the server's own last resort answers, and logs
    app = http.Application()
    app.router.add_get("/boom", _boom)
    app.router.add_get("/no-body", _no_body)
    async with bare_server(app) as (server, port):
        raw = b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /no-body HTTP/1.1\r\nHost: x\r\n\r\n"
        async with raw_connection(port, raw) as conn:
            for _ in range(2):
                answer = await read_response(conn.reader)
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 500"), answer
                assert json.loads(body)["error"]["code"] == "internal_error"
                assert b"secret" not in answer and b"Traceback" not in answer
        for _ in range(500):
            if server.limits.active == 0:
                break
            await asyncio.sleep(0.01)
        assert server.limits.active == 0
    assert any("secret detail" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_cleanup_with_a_hung_handler_and_idle_connections_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started.clear()
    app = http.Application()
    app.router.add_get("/hang", _hang)
    async with contextlib.AsyncExitStack() as stack:
        server, port = await stack.enter_async_context(bare_server(app, shutdown_timeout_s=0.2))
        busy = await stack.enter_async_context(
            raw_connection(port, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        idle = await stack.enter_async_context(raw_connection(port))
        half = await stack.enter_async_context(raw_connection(port, b"GET /hang HTTP/1.1\r\n"))
        async with asyncio.timeout(10):
            await started.wait()
        assert server.limits.active == 3
        await server.cleanup()
        assert server.limits.active == 0
        for conn in (busy, idle, half):
            assert await read_until_closed(conn.reader) == b""
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
