"""Serves an :class:`~gateway.api.http.Application` on asyncio streams: HTTP/1.1 parsed and
framed by h11 (sans-I/O), one task per connection, behind the connection guard
(:mod:`gateway.api.guard`).

Per connection: each request head must arrive whole in ``header_timeout_s`` (the first from
the moment the connection is accepted, a later one from its first byte; else the connection
is closed unanswered and counted in ``header_timeouts``); between requests an idle
connection is closed after ``keepalive_timeout_s``. A head that is not HTTP, or too large
(a line above :data:`MAX_LINE`, the whole above :data:`MAX_HEAD_BYTES`), gets a JSON
``400`` and the connection is closed. A body is read when the handler asks for it
(:meth:`Exchange.read_body`, within the application's limit); one the handler left unread
closes the connection after the answer unless it is already here whole (reading on for at
most :data:`LINGER_S` so that the answer is not lost to a reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import h11

from gateway.api.guard import ConnectionLimits, GuardedConnection, Phase
from gateway.api.http import (
    Application,
    Headers,
    HttpError,
    Request,
    Response,
    StreamResponse,
    json_error,
    reason_phrase,
)
from gateway.api.timing import ApiTiming

_LOGGER = logging.getLogger(__name__)

#: Bytes read from a socket at once; also each connection's stream buffer limit (asyncio
#: stops reading a socket whose unread bytes pass twice this): 32 KiB a connection at most
#: instead of asyncio's default 128 KiB, 16 MB rather than 64 MB at the 512 connections cap.
READ_SIZE = 16 * 1024
#: A request line or header line longer than this is refused (400).
MAX_LINE = 8190
#: A request head larger than this is refused (400) ...
MAX_HEAD_BYTES = 32 * 1024
#: ... as is one with more header lines than this.
MAX_HEADERS = 100
#: Closing after an answer to a request whose body was not read (413, 408, 401 ...), the
#: server reads on for this long and this much at most, discarding, so that the client's
#: last bytes do not make the kernel reset the connection under the answer.
LINGER_S = 1.0
LINGER_BYTES = 256 * 1024


def _bad_request(server: str) -> bytes:
    """The answer to a request that cannot be parsed: JSON, never echoing the request;
    ``HTTP/1.0`` since the client's version is unknown."""
    body = json.dumps({"error": {"code": "bad_request", "message": "malformed HTTP request"}})
    return (
        b"HTTP/1.0 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\nServer: {server}\r\nConnection: close\r\n\r\n".encode()
        + body.encode()
    )


class HttpServer:
    """Starts the application, listens, serves each connection through an
    :class:`Exchange`, and stops: no new connections, the application's shutdown hooks
    (WebSockets are closed), idle connections closed, busy ones given
    ``shutdown_timeout_s``, then the cleanup hooks."""

    def __init__(
        self, app: Application, limits: ConnectionLimits, timing: ApiTiming, server_name: str
    ) -> None:
        self.app = app
        self.limits = limits
        self.timing = timing
        self.bad_request = _bad_request(server_name)
        self._server: asyncio.Server | None = None
        self._exchanges: dict[Exchange, asyncio.Task[None]] = {}
        self._started = False
        #: :meth:`cleanup` has begun: connections are being closed, none is served anew.
        self._stopping = False

    async def setup(self) -> None:
        await self.app.startup()
        self._started = True

    async def listen(self, host: str, port: int) -> int:
        """Listen on ``host:port``; the bound port (OSError when it cannot be bound)."""
        self._server = await asyncio.start_server(
            self._connected, host, port, reuse_address=True, backlog=128, limit=READ_SIZE
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        if self.stopping():  # accepted just before the listener closed
            transport.abort()
            return
        guard = GuardedConnection(self.limits, transport)
        if not guard.admit():
            return
        task = asyncio.current_task()
        exchange = Exchange(self, reader, writer, guard)
        if task is not None:
            self._exchanges[exchange] = task
        try:
            await exchange.serve()
        except asyncio.CancelledError:
            if not self.stopping():
                raise
            # cancelled by cleanup(): the task ends normally, since asyncio's own callback on
            # this task (3.11) logs "Exception in callback" for a cancelled one; a busy one
            # may have an answer stuck in a client that does not read: dropped
            if exchange.busy:
                exchange.abort()
        except Exception:
            _LOGGER.exception("API connection failed")
        finally:
            guard.release()
            self._exchanges.pop(exchange, None)
            if exchange.aborted:
                transport.abort()
            else:
                writer.close()

    def stopping(self) -> bool:
        """Whether :meth:`cleanup` has begun (a method: it changes across awaits)."""
        return self._stopping

    async def cleanup(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
            self._server = None
        if not self._started:
            return
        self._started = False
        try:
            await self.app.shutdown()
        finally:
            for exchange, task in list(self._exchanges.items()):
                if not exchange.busy:
                    task.cancel()
            tasks = list(self._exchanges.values())
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.timing.shutdown_timeout_s)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=self.timing.shutdown_timeout_s)
            await self.app.cleanup()


class Exchange:
    """One connection's requests and answers, in order (h11 keeps the framing)."""

    def __init__(
        self,
        server: HttpServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        guard: GuardedConnection,
    ) -> None:
        self._server = server
        self._reader = reader
        self.writer = writer
        self._guard = guard
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        #: Running a handler (shutdown waits for it).
        self.busy = False
        #: The connection became a WebSocket.
        self.upgraded = False
        #: Close without flushing (a client that does not read its answer).
        self.aborted = False

    async def serve(self) -> None:
        first = True
        while True:
            head = await self._read_head(first)
            if head is None:
                return
            first = False
            request = self._request(head)
            if request is None:
                self.writer.write(self._server.bad_request)
                return
            self.busy = True
            try:
                response = await self._dispatch(request)
                if self.upgraded:
                    return  # the WebSocket handler has run its course
                if not await self._respond(request, response):
                    return
            finally:
                self.busy = False
            if not self._next_cycle():
                if self._h11.their_state is h11.SEND_BODY and not self.aborted:
                    await self._linger()
                return

    async def _recv(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except ConnectionError:
            return b""

    async def _linger(self) -> None:
        """Read and discard what the client still sends (bounded)."""
        left = LINGER_BYTES
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while left > 0:
                    data = await self._recv()
                    if not data:
                        return
                    left -= len(data)

    async def _read_head(self, first: bool) -> h11.Request | None:
        """The next request head, or None when the connection is to close (timed out, the
        client is gone; a malformed head is answered here)."""
        loop = asyncio.get_running_loop()
        timing = self._server.timing
        conn = self._h11
        deadline: float | None = None
        if first or conn.trailing_data[0]:
            deadline = loop.time() + timing.header_timeout_s
            self._guard.phase = Phase.HEAD
        else:
            self._guard.phase = Phase.IDLE
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                _LOGGER.debug("malformed request head from %s", self._guard.peer)
                self.writer.write(self._server.bad_request)
                return None
            if isinstance(event, h11.Request):
                return event
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed
            wait = timing.keepalive_timeout_s if deadline is None else deadline - loop.time()
            try:
                async with asyncio.timeout(wait):
                    data = await self._recv()
            except TimeoutError:
                if deadline is not None:  # a head too slow; else an idle kept-alive one
                    self._server.limits.header_timeouts += 1
                return None
            if not data:
                return None
            if deadline is None:
                deadline = loop.time() + timing.header_timeout_s
                self._guard.phase = Phase.HEAD
            conn.receive_data(data)

    def _request(self, head: h11.Request) -> Request | None:
        """The handlers' view of ``head``; None when it is beyond the limits."""
        if len(head.target) > MAX_LINE or len(head.headers) > MAX_HEADERS:
            return None
        if any(len(name) + len(value) + 2 > MAX_LINE for name, value in head.headers):
            return None
        target = head.target.decode("ascii", "replace")
        if target.startswith(("http://", "https://")):  # absolute form: the path only
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        raw_path, _, query = target.partition("?")
        headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
        )
        # h11 checked Content-Length is digits; "00" is no body either
        has_body = (
            "transfer-encoding" in headers or headers.get("content-length", "0").strip("0") != ""
        )
        self._guard.phase = Phase.BODY if has_body else Phase.IDLE
        return Request(
            self._server.app, head.method.decode("ascii"), raw_path, query, headers, self
        )

    async def _dispatch(self, request: Request) -> StreamResponse:
        try:
            return await self._server.app.handle(request)
        except Exception:
            # the error middleware answers every failure of a handler; this is a bug in a
            # middleware: still an answer, never a traceback
            _LOGGER.exception("API %s %s failed", request.method, request.path)
            return json_error(500, "internal_error", "internal error (logged on the gateway)")

    async def _respond(self, request: Request, response: StreamResponse) -> bool:
        """Send ``response``; whether the connection may serve another request."""
        if not isinstance(response, Response):
            _LOGGER.error("API %s %s: a response without a body", request.method, request.path)
            response = json_error(500, "internal_error", "internal error (logged on the gateway)")
        if not self._body_in():
            response.force_close()  # the client is told: it does not send on this connection
        await self._server.app.prepare(request, response)
        headers = [(name, value) for name, value in response.headers.items()]
        headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "connection")]
        status = response.status
        if status not in (204, 304):
            headers.append(("Content-Length", str(len(response.body))))
        if response.closes:
            headers.append(("Connection", "close"))
        conn = self._h11
        try:
            data = conn.send(
                h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))
            )
            if response.body and request.method != "HEAD" and status not in (204, 304):
                data += conn.send(h11.Data(data=response.body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            _LOGGER.exception("API %s %s: cannot send the answer", request.method, request.path)
            return False
        return await self.write(data) and not response.closes

    async def write(self, data: bytes) -> bool:
        """Write ``data``; False when the client is gone, or does not take it in
        ``keepalive_timeout_s`` (then the connection is dropped)."""
        self.writer.write(data)
        try:
            async with asyncio.timeout(self._server.timing.keepalive_timeout_s):
                await self.writer.drain()
        except TimeoutError:
            self.abort()
            return False
        except ConnectionError:
            return False
        return True

    def abort(self) -> None:
        """Drop the connection at once (what is still buffered for the client is lost)."""
        self.aborted = True
        self.writer.transport.abort()

    def _body_in(self) -> bool:
        """Whether the request's body is all here (the rest of an unread one is discarded
        when it is already received; more is not waited for)."""
        conn = self._h11
        try:
            while conn.their_state is h11.SEND_BODY:
                if not isinstance(conn.next_event(), h11.Data | h11.EndOfMessage):
                    return False
        except h11.RemoteProtocolError:
            return False
        return True

    def _next_cycle(self) -> bool:
        """Ready for the next request on this connection: the answer is out and the
        request's body is in."""
        conn = self._h11
        if not self._body_in():
            return False
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False  # Connection: close, HTTP/1.0 ...
        conn.start_next_cycle()
        return True

    async def read_body(self, limit: int) -> bytes:
        """The request's body: :class:`HttpError` 413 beyond ``limit`` bytes, 408 when it
        has not all arrived in ``body_timeout_s`` (whoever reads it: a handler, the
        WebSocket handshake), 400 when it is malformed or the client goes away."""
        try:
            async with asyncio.timeout(self._server.timing.body_timeout_s):
                return await self._read_body(limit)
        except TimeoutError:
            raise HttpError(408) from None

    async def _read_body(self, limit: int) -> bytes:
        conn = self._h11
        if conn.they_are_waiting_for_100_continue:
            await self.write(
                conn.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                raise HttpError(400) from None
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise HttpError(413)
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if self._guard.phase is Phase.BODY:
                    self._guard.phase = Phase.IDLE
                return b"".join(chunks)
            elif event is h11.NEED_DATA:
                data = await self._recv()
                if not data:
                    raise HttpError(400)
                conn.receive_data(data)
            else:
                raise HttpError(400)

    async def upgrade(
        self, request: Request, response: StreamResponse
    ) -> tuple[asyncio.StreamReader, bytes]:
        """Answer ``101 Switching Protocols`` with ``response``'s headers and hand the
        connection over: its reader and the bytes already received after the request."""
        await self.read_body(self._server.app.client_max_size)
        await self._server.app.prepare(request, response)
        headers = list(response.headers.items())
        try:
            data = self._h11.send(
                h11.InformationalResponse(
                    status_code=101, headers=headers, reason=b"Switching Protocols"
                )
            )
        except h11.LocalProtocolError:
            raise HttpError(400) from None
        self.upgraded = True
        self._guard.phase = Phase.UNTRACKED
        if not await self.write(data):
            raise ConnectionResetError("the client went away during the upgrade")
        return self._reader, self._h11.trailing_data[0]
