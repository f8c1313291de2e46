"""Connection guard in front of aiohttp: caps connections (in total and per peer address),
keeps room for the local CLI, and gives every request head a deadline to arrive whole.

aiohttp bounds bodies and idle keep-alive connections, but not a client that opens
connections and trickles header bytes (slowloris), nor a few addresses that open as many
connections as the service allows. :class:`GuardedSite` serves the runner's protocol through
:class:`GuardedProtocol`, which forwards every callback unchanged and follows the request
stream just enough to time each head: the first head from the moment the connection is
accepted, each later head from its first byte. A body announced by ``Content-Length`` is
skipped (its pace is the handler's business, see ``ApiTiming.body_timeout_s``). After a
head it cannot follow (a chunked body, an ``Upgrade``) the guard stops timing: the app
closes such a connection after its response unless it became a WebSocket.

Admission (:meth:`ConnectionLimits.admit`): an address may hold ``max_per_peer``
connections; addresses other than the local CLI's (``127.0.0.1``, ``::1``) share
``max_connections - local_reserved``, so a flood from the LAN never takes the last
``local_reserved`` places. When the places are taken, a newcomer holding at least two
connections fewer than the heaviest address takes the place of that address's oldest
connection still waiting for a request head (else its oldest one past its last head; never
one reading a body or a WebSocket): a few flooding addresses cannot keep anybody else out.
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
from gateway.api.timing import ApiTiming

_LOGGER = logging.getLogger(__name__)

#: Bytes of a request head looked at for its end (aiohttp refuses longer heads anyway).
MAX_HEAD_BYTES = 64 * 1024
#: Peer addresses of the local CLI: room is kept for them.
LOCAL_PEERS = frozenset({"127.0.0.1", "::1"})


@dataclass(slots=True)
class ConnectionLimits:
    """Shared by every connection of one server. ``policy`` gives the numbers
    (``max_connections``, ``max_per_peer``, ``local_reserved``, ``header_timeout_s``): the
    API's one :class:`~gateway.api.timing.ApiTiming`."""

    policy: ApiTiming = field(default_factory=ApiTiming)
    active: int = 0
    per_peer: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    evicted: int = 0
    header_timeouts: int = 0
    #: Admitted connections per peer, oldest first.
    _open: dict[str, list[GuardedProtocol]] = field(default_factory=dict)

    def admit(self, peer: str) -> bool:
        """Whether a new connection from ``peer`` may be served (making room if fair)."""
        policy = self.policy
        mine = self.per_peer[peer]
        if mine >= policy.max_per_peer:
            return False
        return self._has_room(peer) or (self._evict_for(peer, mine) and self._has_room(peer))

    def _has_room(self, peer: str) -> bool:
        policy = self.policy
        if peer in LOCAL_PEERS:
            return self.active < policy.max_connections
        remote = self.active - sum(self.per_peer[p] for p in LOCAL_PEERS)
        return (
            self.active < policy.max_connections
            and remote < policy.max_connections - policy.local_reserved
        )

    def _evict_for(self, peer: str, mine: int) -> bool:
        """Close the oldest waiting connection of the heaviest address holding at least two
        more connections than ``peer`` (a local newcomer may take any address's place; a
        remote one only a remote address's)."""
        local = peer in LOCAL_PEERS
        heavy = sorted(
            (
                (n, p)
                for p, n in self.per_peer.items()
                if n >= mine + 2 and (local or p not in LOCAL_PEERS)
            ),
            reverse=True,
        )
        for idle_too in (False, True):
            for _, victim_peer in heavy:
                for conn in self._open.get(victim_peer, ()):
                    if conn.evictable(idle_too):
                        conn.evict()
                        self.evicted += 1
                        return True
        return False

    def opened(self, peer: str, conn: GuardedProtocol) -> None:
        self.active += 1
        self.per_peer[peer] += 1
        self._open.setdefault(peer, []).append(conn)

    def closed(self, peer: str, conn: GuardedProtocol) -> None:
        self.active -= 1
        self.per_peer[peer] -= 1
        if self.per_peer[peer] <= 0:
            del self.per_peer[peer]
        conns = self._open.get(peer, [])
        if conn in conns:
            conns.remove(conn)
        if not conns:
            self._open.pop(peer, None)


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
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._admitted = False
        self._counted = False
        self._head = b""
        self._phase = _Phase.HEAD
        self._body_left = 0
        self._timer: asyncio.TimerHandle | None = None

    def evictable(self, idle_too: bool) -> bool:
        """Waiting for (the rest of) a request head; with ``idle_too`` also past its last
        head (idle between requests, or its last answer still being written). Never a
        connection reading a body, nor one the guard stopped following (WebSocket)."""
        if not self._counted:
            return False
        return self._phase is _Phase.HEAD or (idle_too and self._phase is _Phase.IDLE)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        limits = self._limits
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not limits.admit(self._peer):
            limits.refused += 1
            if limits.refused == 1:
                _LOGGER.warning("API connection limit reached: refusing connections")
            transport.abort()
            return
        self._admitted = self._counted = True
        self._transport = transport
        limits.opened(self._peer, self)
        self._start_head_timer()
        self._inner.connection_made(transport)

    def _start_head_timer(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(
            self._limits.policy.header_timeout_s, self._too_slow
        )

    def evict(self) -> None:
        """Give this connection's place to a newcomer: closed at once, without an answer."""
        self._release()
        if self._transport is not None:
            self._transport.abort()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._limits.closed(self._peer, self)

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
                self._start_head_timer()
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
        self._release()
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
