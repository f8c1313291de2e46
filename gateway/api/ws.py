"""The server side of a WebSocket (RFC 6455) on a connection of :mod:`gateway.api.httpd`:
the handshake checks and the ``101`` answer, then frames by wsproto (sans-I/O).

A handler makes a :class:`WebSocketResponse`, checks :meth:`~WebSocketResponse.can_prepare`,
awaits :meth:`~WebSocketResponse.prepare`, then iterates over it (the client's messages, until
the connection closes) while another task may :meth:`~WebSocketResponse.send_str` and
:meth:`~WebSocketResponse.close`. With ``heartbeat`` the server pings a client that has been
quiet that long and drops it when no answer comes in half that time.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from enum import IntEnum

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from gateway.api.http import HttpError, Request, StreamResponse

#: Bytes read from the socket at once.
READ_SIZE = 16 * 1024
#: A close handshake may take this long before the connection is simply dropped.
CLOSE_TIMEOUT_S = 10.0


class WSCloseCode(IntEnum):
    OK = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    MESSAGE_TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class WebSocketReady:
    ok: bool
    protocol: str | None


class WebSocketResponse(StreamResponse):
    __slots__ = (
        "_closed",
        "_conn",
        "_heartbeat",
        "_max_msg_size",
        "_protocols",
        "_reader",
        "_request",
        "close_code",
    )

    def __init__(
        self,
        *,
        heartbeat: float | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
        protocols: tuple[str, ...] = (),
    ) -> None:
        super().__init__(status=101)
        self._heartbeat = heartbeat
        self._max_msg_size = max_msg_size
        self._protocols = protocols
        self._conn: Connection | None = None
        self._reader: asyncio.StreamReader | None = None
        self._request: Request | None = None
        self._closed = asyncio.Event()
        #: The code of the close frame received (or 1006 when the connection was lost).
        self.close_code: int | None = None

    def can_prepare(self, request: Request) -> WebSocketReady:
        """Whether ``request`` is a WebSocket handshake this response can accept, and the
        subprotocol it would answer with (the client's first one that is ours)."""
        h = request.headers
        ok = (
            request.method == "GET"
            and h.get("Upgrade", "").strip().lower() == "websocket"
            and "upgrade" in {t.strip().lower() for t in h.get("Connection", "").split(",")}
            and h.get("Sec-WebSocket-Version", "").strip() == "13"
            and bool(h.get("Sec-WebSocket-Key", "").strip())
        )
        protocol = None
        for offered in h.get("Sec-WebSocket-Protocol", "").split(","):
            if offered.strip() in self._protocols:
                protocol = offered.strip()
                break
        return WebSocketReady(ok, protocol)

    async def prepare(self, request: Request) -> None:
        """Answer the handshake (``101``); the connection is a WebSocket from here."""
        ready = self.can_prepare(request)
        if not ready.ok:
            raise HttpError(400)
        key = request.headers["Sec-WebSocket-Key"].strip().encode()
        self.headers["Upgrade"] = "websocket"
        self.headers["Connection"] = "Upgrade"
        self.headers["Sec-WebSocket-Accept"] = generate_accept_token(key).decode()
        if ready.protocol is not None:
            self.headers["Sec-WebSocket-Protocol"] = ready.protocol
        self._request = request
        self._reader, trailing = await request.exchange.upgrade(request, self)
        self._conn = Connection(ConnectionType.SERVER)
        if trailing:
            self._conn.receive_data(trailing)

    @property
    def closed(self) -> bool:
        return self._conn is None or self._conn.state is not ConnectionState.OPEN

    async def _send(self, data: bytes) -> None:
        assert self._request is not None
        if not await self._request.exchange.write(data):
            raise ConnectionResetError("the WebSocket client is gone or too slow")

    async def send_str(self, text: str) -> None:
        """Send one text message (ConnectionResetError once the WebSocket is closing)."""
        if self._conn is None or self._conn.state is not ConnectionState.OPEN:
            raise ConnectionResetError("the WebSocket is closed")
        await self._send(self._conn.send(TextMessage(data=text)))

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"") -> bool:
        """Start the close handshake and wait for the client's answer (at most
        :data:`CLOSE_TIMEOUT_S`; then the connection is dropped). False when it was closing
        already."""
        conn = self._conn
        if conn is None or conn.state is not ConnectionState.OPEN:
            return False
        data = conn.send(CloseConnection(code=code, reason=message.decode(errors="replace")))
        answered = False
        try:
            await self._send(data)
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._closed.wait()
            answered = True
        except (ConnectionError, TimeoutError):
            pass
        finally:
            if not answered:  # also when the caller's own deadline cancelled us
                self._abort()
        return True

    def _abort(self) -> None:
        assert self._request is not None
        self._request.exchange.abort()
        self._closed.set()

    async def _recv(self, wait_s: float | None) -> bytes | None:
        """Bytes from the client; None when none came in ``wait_s``."""
        assert self._reader is not None
        try:
            async with asyncio.timeout(wait_s):
                return await self._reader.read(READ_SIZE)
        except TimeoutError:
            return None
        except ConnectionError:
            return b""

    def __aiter__(self) -> WebSocketResponse:
        return self

    async def __anext__(self) -> str | bytes:
        """The client's next message; the iteration ends when the connection closes."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("iterate over a WebSocketResponse after prepare()")
        pinged = False
        size = 0
        parts: list[str | bytes] = []
        while not self._closed.is_set():
            for event in conn.events():
                if isinstance(event, Message):
                    # a frame counts one byte at least: endless empty fragments are refused
                    # as too big, and no part is kept for them
                    size += len(event.data) or 1
                    if size > self._max_msg_size:
                        await self._refuse(WSCloseCode.MESSAGE_TOO_BIG)
                        break
                    if event.data:
                        parts.append(event.data)
                    if event.message_finished:
                        if isinstance(event, TextMessage):
                            return "".join(p for p in parts if isinstance(p, str))
                        if isinstance(event, BytesMessage):
                            return b"".join(p for p in parts if isinstance(p, bytes))
                elif isinstance(event, Ping):
                    with contextlib.suppress(ConnectionError, LocalProtocolError):
                        await self._send(conn.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    if conn.state is ConnectionState.REMOTE_CLOSING:
                        with contextlib.suppress(ConnectionError, LocalProtocolError):
                            await self._send(conn.send(event.response()))
                    self._closed.set()
                    break
            if self._closed.is_set():
                break
            wait_s = self._heartbeat
            if wait_s is not None and pinged:
                wait_s /= 2
            data = await self._recv(wait_s)
            if data is None:
                if pinged or conn.state is not ConnectionState.OPEN:
                    self._abort()  # no answer to our ping: the client is gone
                    break
                pinged = True
                with contextlib.suppress(ConnectionError, LocalProtocolError):
                    await self._send(conn.send(Ping()))
                continue
            pinged = False
            if not data:
                self.close_code = self.close_code or 1006
                self._closed.set()
                break
            conn.receive_data(data)
        raise StopAsyncIteration

    async def _refuse(self, code: WSCloseCode) -> None:
        conn = self._conn
        assert conn is not None
        if conn.state is ConnectionState.OPEN:
            with contextlib.suppress(ConnectionError):
                await self._send(conn.send(CloseConnection(code=code)))
        self._abort()
