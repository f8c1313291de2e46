"""The sync agent's live figures: per-link state, counters, and the outbox depth tracked
between exact recounts. Read by ``SyncAgent.health()`` / ``stats()`` (metrics, API, CLI)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.store import OutboxRow

if TYPE_CHECKING:
    from gateway.sync.settings import BrokerSettings


@dataclass(slots=True)
class LinkState:
    """Live figures of one broker connection."""

    settings: BrokerSettings
    connected: bool = False
    connected_since: float | None = None
    connects: int = 0
    last_error: str = ""
    max_packet_size: int | None = None


@dataclass(slots=True)
class SyncCounters:
    batches_sent: int = 0
    readings_sent: int = 0
    rows_acked: int = 0
    refused: int = 0
    splits: int = 0
    commands: int = 0
    command_errors: int = 0
    discovery_published: int = 0
    #: Shielded work (store writes, goodbye) that failed after its caller was cancelled.
    late_failures: int = 0
    last_publish: float | None = None
    last_ack: float | None = None

    def late(self) -> None:
        self.late_failures += 1


@dataclass(slots=True)
class OutboxFigures:
    """Outbox depth: exact after a recount, tracked in between (commits add, acks and
    dead letters subtract)."""

    rows: int = 0
    bytes: int = 0
    events: int = 0
    oldest_seq: int | None = None
    oldest_ts: float | None = None
    #: Backlog rows the pump has not read yet on this connection.
    backlog_left: int = 0

    def removed(self, rows: Sequence[OutboxRow]) -> None:
        """Rows left the outbox (dead-lettered)."""
        self.rows -= len(rows)
        self.bytes -= sum(r.size for r in rows)
