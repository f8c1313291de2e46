"""The LAN API's timing and limits: one frozen dataclass the service passes in (tests shorten
it through ``ServiceTiming(api=ApiTiming(...))``)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.timing import check_timing


@dataclass(frozen=True, slots=True)
class ApiTiming:
    """Seconds and connection counts (docs/api.md, "Slow and hostile clients")."""

    #: A connection must deliver each request head within this (else closed unanswered) ...
    header_timeout_s: float = 10.0
    #: ... and a request body within this (slow clients get 408).
    body_timeout_s: float = 10.0
    #: Sending one WebSocket message may take this long before the client is dropped.
    ws_send_timeout_s: float = 10.0
    ws_heartbeat_s: float = 30.0
    #: permit_join on the Zigbee coordinator must answer within this.
    permit_join_timeout_s: float = 15.0
    #: A network backup (NV reads) must finish within this.
    backup_timeout_s: float = 60.0
    #: Open connections get this long to finish when the service stops.
    shutdown_timeout_s: float = 1.0
    #: Idle keep-alive connections are closed after this.
    keepalive_timeout_s: float = 30.0
    #: Connections served at once, in total, from one peer address, and the places of the
    #: total that only the local CLI's addresses may take (see :mod:`gateway.api.guard`).
    max_connections: int = 512
    max_per_peer: int = 32
    local_reserved: int = 32

    def __post_init__(self) -> None:
        check_timing(self)
        if self.local_reserved >= self.max_connections:
            raise ValueError("need local_reserved < max_connections")
