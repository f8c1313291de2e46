"""Connection guard in front of aiohttp: caps connections (in total and per peer address)
and gives every request head :data:`HEADER_TIMEOUT_S` to arrive whole.

aiohttp bounds bodies and idle keep-alive connections, but not a client that opens
connections and trickles header bytes (slowloris). :class:`GuardedSite` serves the runner's
protocol through :class:`GuardedProtocol`, which forwards every callback unchanged and
follows the request stream just enough to time each head: the first head from the moment
the connection is accepted, each later head from its first byte. A body announced by
``Content-Length`` is skipped (its pace is the handler's business, see ``BODY_TIMEOUT_S``).
After a head it cannot follow (a chunked body, an ``Upgrade``) the guard stops timing: the
app closes such a connection after its response unless it became a WebSocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from aiohttp import web

from gateway.api.errors import JsonErrorRequestHandler

_LOGGER = logging.getLogger(__name__)

#: Connections served at once, in total and from one peer address.
MAX_CONNECTIONS = 512
MAX_PER_PEER = 64
#: A new connection must deliver its first request head within this many seconds.
HEADER_TIMEOUT_S = 10.0
#: Bytes of a request head looked at for its end (aiohttp refuses longer heads anyway).
MAX_HEAD_BYTES = 64 * 1024


@dataclass(slots=True)
class ConnectionLimits:
    active: int = 0
    per_peer: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    header_timeouts: int = 0


class _Phase(Enum):
    HEAD = auto()  # reading a request head, the deadline runs
    BODY = auto()  # skipping a Content-Length body
    IDLE = auto()  # between requests (aiohttp's keep-alive timeout applies)
    UNTRACKED = auto()  # chunked body or upgrade: the app closes or it is a WebSocket


def _after_head(head: bytes) -> tuple[_Phase, int]:
    """What follows a complete request head: a body of so many bytes, nothing, or unknown."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"upgrade" or (name == b"transfer-encoding" and value.strip()):
            return _Phase.UNTRACKED, 0
        if name == b"content-length":
            try:
                length = max(0, int(value.strip()))
            except ValueError:
                length = 0  # aiohttp answers 400 and closes
    return (_Phase.BODY, length) if length else (_Phase.IDLE, 0)


class GuardedProtocol(asyncio.Protocol):
    """Wraps one aiohttp RequestHandler; refuses or times out connections per the limits."""

    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self._inner = inner
        self._limits = limits
        self._transport: asyncio.BaseTransport | None = None
        self._peer = ""
        self._admitted = False
        self._head = b""
        self._phase = _Phase.HEAD
        self._body_left = 0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if limits.active >= MAX_CONNECTIONS or limits.per_peer[self._peer] >= MAX_PER_PEER:
            limits.refused += 1
            if limits.refused == 1:
                _LOGGER.warning("API connection limit reached: refusing connections")
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        self._admitted = True
        self._transport = transport
        limits.active += 1
        limits.per_peer[self._peer] += 1
        self._timer = asyncio.get_running_loop().call_later(HEADER_TIMEOUT_S, self._too_slow)
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._timer = None
        self._limits.header_timeouts += 1
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._follow(data)
        self._inner.data_received(data)

    def _follow(self, data: bytes) -> None:
        """Advance through heads and bodies in ``data`` (pipelined requests included)."""
        while data and self._phase is not _Phase.UNTRACKED:
            if self._phase is _Phase.IDLE:
                self._phase = _Phase.HEAD
                self._timer = asyncio.get_running_loop().call_later(
                    HEADER_TIMEOUT_S, self._too_slow
                )
            if self._phase is _Phase.BODY:
                taken = min(self._body_left, len(data))
                self._body_left -= taken
                data = data[taken:]
                if not self._body_left:
                    self._phase = _Phase.IDLE
                continue
            seen = len(self._head)
            buffered = self._head + data
            end = buffered.find(b"\r\n\r\n", max(0, seen - 3))
            if end < 0:
                self._head = buffered[-MAX_HEAD_BYTES:]
                return
            data = buffered[end + 4 :]
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._phase, self._body_left = _after_head(buffered[: end + 4])
            self._head = b""

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        limits = self._limits
        limits.active -= 1
        limits.per_peer[self._peer] -= 1
        if limits.per_peer[self._peer] <= 0:
            del limits.per_peer[self._peer]
        self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through :class:`GuardedProtocol`."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, limits: ConnectionLimits
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limits = limits

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        limits = self._limits

        def factory() -> asyncio.Protocol:
            inner: Any = server()
            # same handler, but aiohttp's own errors (unparsable requests) answer as JSON
            inner.__class__ = JsonErrorRequestHandler
            return GuardedProtocol(inner, limits)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self._host, self._port, reuse_address=True, backlog=128
        )
