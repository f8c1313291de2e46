"""The sync agent's timing: one frozen dataclass passed to its constructor.

Tests shorten it there (``Service(..., timing=ServiceTiming(sync=SyncTiming(...)))``) instead of
patching module constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.timing import check_timing
from gateway.sync.outbox import OutboxLimits


@dataclass(frozen=True, slots=True)
class SyncTiming:
    """Seconds."""

    #: Wait for CONNACK / SUBACK / a status or command-result PUBACK.
    connect_timeout_s: float = 10.0
    #: Wait for the PUBACK of a telemetry batch before the connection is recycled.
    ack_timeout_s: float = 30.0
    #: A clean stop waits this long for in-flight PUBACKs, for the ``offline`` status and
    #: for the DISCONNECT.
    goodbye_s: float = 1.0
    #: Acknowledged rows are deleted every this many seconds (or sooner when many).
    ack_flush_s: float = 0.1
    #: Outbox upkeep tick; TTL checks and exact depth recounts are rarer.
    maintain_s: float = 1.0
    ttl_check_s: float = 60.0
    recount_s: float = 300.0
    #: Home Assistant state publishing tick, device availability refresh, and the first
    #: refresh after connecting (picks up devices registered meanwhile).
    ha_tick_s: float = 0.5
    ha_availability_s: float = 30.0
    ha_first_refresh_s: float = 1.0
    #: A link supervisor waits this long for its session to end at a stop.
    stop_timeout_s: float = 3.0
    #: How the outbox policy scans for rows to drop or expire.
    outbox: OutboxLimits = field(default_factory=OutboxLimits)

    def __post_init__(self) -> None:
        check_timing(self)
