"""Connection guard in front of aiohttp: caps connections (in total and per peer address)
and gives a new connection :data:`HEADER_TIMEOUT_S` to send its first request head.

aiohttp bounds bodies and idle keep-alive connections, but not a client that opens
connections and trickles header bytes (slowloris). :class:`GuardedSite` serves the runner's
protocol through :class:`GuardedProtocol`, which forwards every callback unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

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


class GuardedProtocol(asyncio.Protocol):
    """Wraps one aiohttp RequestHandler; refuses or times out connections per the limits."""

    def __init__(self, inner: asyncio.Protocol, limits: ConnectionLimits) -> None:
        self._inner = inner
        self._limits = limits
        self._transport: asyncio.BaseTransport | None = None
        self._peer = ""
        self._admitted = False
        self._head = b""
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
        if self._timer is not None:
            self._head = (self._head + data)[-MAX_HEAD_BYTES:]
            if b"\r\n\r\n" in self._head:
                self._timer.cancel()
                self._timer = None
                self._head = b""
        self._inner.data_received(data)

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
            return GuardedProtocol(inner, limits)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self._host, self._port, reuse_address=True, backlog=128
        )
