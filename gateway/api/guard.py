"""Connection guard of the LAN API's server: caps connections (in total and per peer
address) and keeps room for the local CLI, so that a few addresses opening as many
connections as the service allows cannot keep anybody else out. The server
(:mod:`gateway.api.httpd`) gives every request head a deadline to arrive whole (slowloris)
and counts it in :attr:`ConnectionLimits.header_timeouts`.

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

from gateway.api.timing import ApiTiming

_LOGGER = logging.getLogger(__name__)

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
    _open: dict[str, list[GuardedConnection]] = field(default_factory=dict)

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

    def opened(self, peer: str, conn: GuardedConnection) -> None:
        self.active += 1
        self.per_peer[peer] += 1
        self._open.setdefault(peer, []).append(conn)

    def closed(self, peer: str, conn: GuardedConnection) -> None:
        self.active -= 1
        self.per_peer[peer] -= 1
        if self.per_peer[peer] <= 0:
            del self.per_peer[peer]
        conns = self._open.get(peer, [])
        if conn in conns:
            conns.remove(conn)
        if not conns:
            self._open.pop(peer, None)


class Phase(Enum):
    HEAD = auto()  # waiting for (the rest of) a request head: its deadline runs
    BODY = auto()  # a request whose body has not all arrived
    IDLE = auto()  # between requests, or answering one whose body is in
    UNTRACKED = auto()  # a WebSocket


class GuardedConnection:
    """One admitted connection as the limits see it: its peer, its phase (set by
    :class:`gateway.api.httpd.Exchange`), and how to close it to make room."""

    __slots__ = ("_counted", "_limits", "_transport", "peer", "phase")

    def __init__(self, limits: ConnectionLimits, transport: asyncio.Transport) -> None:
        self._limits = limits
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.phase = Phase.HEAD
        self._counted = False

    def admit(self) -> bool:
        """Count this connection in, or refuse it (closed at once, unanswered)."""
        limits = self._limits
        if not limits.admit(self.peer):
            limits.refused += 1
            if limits.refused == 1:
                _LOGGER.warning("API connection limit reached: refusing connections")
            self._transport.abort()
            return False
        self._counted = True
        limits.opened(self.peer, self)
        return True

    def evictable(self, idle_too: bool) -> bool:
        """Waiting for (the rest of) a request head; with ``idle_too`` also past its last
        head (idle between requests, or its last answer still being made). Never a
        connection reading a body, nor a WebSocket."""
        if not self._counted:
            return False
        return self.phase is Phase.HEAD or (idle_too and self.phase is Phase.IDLE)

    def evict(self) -> None:
        """Give this connection's place to a newcomer: closed at once, without an answer."""
        self.release()
        self._transport.abort()

    def release(self) -> None:
        if self._counted:
            self._counted = False
            self._limits.closed(self.peer, self)
