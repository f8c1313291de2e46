"""Telemetry messages in flight and acknowledged: the pump's book of PUBACKs.

A message sent is recorded in flight (:meth:`Acks.sent`) until its PUBACK; an accepted one
is queued for deletion (:meth:`Acks.accepted`) and its outbox rows are deleted in small
transactions (:meth:`Acks.loop`, ``sync-acks``, for the agent's whole life, and
:meth:`Acks.flush`). Rows are deleted only after the PUBACK of the message that carried
them: a crash at any moment resends at most the messages that were in flight.

The book feeds the :class:`~gateway.sync.poison.PoisonTracker` (:attr:`Acks.poison`) with
every message sent and accepted: it numbers the messages it watches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from drivers.aio import wait_event
from gateway.store import OutboxRow
from gateway.sync.deps import SyncDeps
from gateway.sync.payload import classify_refusal
from gateway.sync.poison import PoisonTracker

#: Acknowledged messages that trigger a deletion before the next ack flush tick.
ACK_FLUSH_MESSAGES = 50


class Acks:
    """See the module docstring. One per agent, shared by its connections one at a time."""

    def __init__(self, deps: SyncDeps, poison: PoisonTracker) -> None:
        self._deps = deps
        self.poison = poison
        #: Messages awaiting their PUBACK on the current connection, oldest first, with
        #: their rows and the poison tracker's message number.
        self._flight: dict[asyncio.Future[int], tuple[Sequence[OutboxRow], int]] = {}
        #: Acknowledged messages not yet deleted: (first seq, last seq, rows, bytes).
        self._acked: list[tuple[int, int, int, int]] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Messages of the current connection awaiting their PUBACK."""
        return len(self._flight)

    def oldest_in_flight(self) -> Sequence[OutboxRow] | None:
        """The rows of the oldest message still awaiting its PUBACK."""
        oldest = next(iter(self._flight.values()), None)
        return oldest[0] if oldest is not None else None

    def sent(self, fut: asyncio.Future[int], rows: Sequence[OutboxRow]) -> int:
        """A message went out: in flight until ``fut`` has its PUBACK. Its number (the
        poison tracker's)."""
        number = self.poison.sent_message(rows[0].seq, rows[-1].seq)
        self._flight[fut] = (rows, number)
        return number

    def answered(self, fut: asyncio.Future[int]) -> None:
        """The PUBACK of ``fut`` came (whatever it says): no longer in flight."""
        self._flight.pop(fut, None)

    def accepted(self, rows: Sequence[OutboxRow], number: int) -> None:
        """The broker took message ``number``, carrying ``rows``: they go at the next
        flush."""
        self._acked.append(_ack_entry(rows))
        self.poison.acknowledged(rows[0].seq, rows[-1].seq, number)
        if len(self._acked) >= ACK_FLUSH_MESSAGES:
            self._wake.set()

    def end_connection(self) -> None:
        """This connection's messages are no longer in flight: never struck by a later one."""
        self._flight = {}

    async def loop(self) -> None:
        """Deletes acknowledged rows in small transactions (runs for the agent's life)."""
        while True:
            await wait_event(self._wake, self._deps.timing.ack_flush_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Delete the rows of every message acknowledged so far."""
        async with self._lock:
            if not self._acked:
                return
            batch, self._acked = self._acked, []
            deps = self._deps
            deleted = await deps.outbox.ack([(first, last) for first, last, _, _ in batch])
            deps.counters.rows_acked += deleted
            f = deps.figures
            if deleted == sum(n for _, _, n, _ in batch):
                f.rows = max(0, f.rows - deleted)
                f.bytes = max(0, f.bytes - sum(z for _, _, _, z in batch))
            # else: rows were dropped meanwhile; the next recount fixes the figures

    async def drain_inflight(self) -> None:
        """At a clean stop: collect the PUBACKs of messages still in flight (their waiters
        may be gone), at most ``goodbye_s``."""
        flight, self._flight = self._flight, {}
        if not flight:
            return
        done, _ = await asyncio.wait(flight, timeout=self._deps.timing.goodbye_s)
        for fut in done:
            if fut.cancelled() or fut.exception() is not None:
                continue
            if classify_refusal(fut.result()) is None:
                self._acked.append(_ack_entry(flight[fut][0]))


def _ack_entry(rows: Sequence[OutboxRow]) -> tuple[int, int, int, int]:
    return rows[0].seq, rows[-1].seq, len(rows), sum(r.size for r in rows)
