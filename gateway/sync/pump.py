"""The telemetry pump: live and backlog scheduling over one connection.

Runs inside a connection session (:mod:`gateway.sync.session`); sending a message, its
PUBACK and the one split-or-dead-letter path are :mod:`gateway.sync.send`'s, the book of
messages in flight and the deletion of acknowledged rows :mod:`gateway.sync.acks`'.

* **Live**: rows committed after the connection came up (:meth:`Pump.note_commit`) go out as
  soon as a batch is full, ``batch_max_ms`` passed, or a priority reading/event arrives.
* **Backlog**: older rows are drained at ``drain_rate`` rows/s, a few batches per query.
* **Poison**: a connection that broke with messages in flight is reported to the
  :class:`~gateway.sync.poison.PoisonTracker` (:meth:`Pump.connection_lost`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from drivers.aio import wait_event
from gateway.metrics import base_name
from gateway.model import Event, Reading
from gateway.store import OutboxRow
from gateway.sync.acks import Acks
from gateway.sync.deps import SyncDeps
from gateway.sync.mqtt import Link
from gateway.sync.outbox import PRIORITY_METRICS
from gateway.sync.poison import POISON_STRIKES, PoisonTracker, Verdict
from gateway.sync.send import Sender, dead_letter

_LOGGER = logging.getLogger(__name__)

#: Backlog batches read per outbox query while draining.
BACKLOG_FETCH_BATCHES = 4
#: "No live boundary": every row counts as backlog until a connection sets one.
_NO_BOUNDARY = 1 << 62


class _LiveRows:
    """Rows committed after the live boundary and not sent yet (counted, never held:
    they are read back from the outbox)."""

    def __init__(self) -> None:
        self.boundary = _NO_BOUNDARY
        self.reset()

    def reset(self) -> None:
        self.pending = 0
        #: When the oldest pending row was committed (monotonic).
        self.first: float | None = None
        #: A priority reading or an event is pending: send without waiting.
        self.urgent = False

    def add(self, readings: Sequence[Reading], events: Sequence[Event]) -> int:
        """Count the committed rows past the boundary; how many there were."""
        boundary = self.boundary
        live = 0
        for r in readings:
            if r.seq > boundary:
                live += 1
                if base_name(r.metric) in PRIORITY_METRICS:
                    self.urgent = True
        for e in events:
            if e.seq > boundary:
                live += 1
                self.urgent = True
        if live and self.pending == 0:
            self.first = time.monotonic()
        self.pending += live
        return live

    def due(self, now: float, n_max: int, t_max: float) -> bool:
        """A live batch goes out now: urgent, full, or its oldest row waited ``t_max``."""
        return bool(self.pending) and (
            self.urgent or self.pending >= n_max or now - (self.first or now) >= t_max
        )

    def taken(self, n: int, now: float) -> None:
        """``n`` pending rows were read for sending (0: none left in the outbox)."""
        self.pending = max(0, self.pending - n)
        if not n or self.pending == 0:
            self.reset()
        else:
            self.first = now


class Pump:
    """See the module docstring. One per agent; :meth:`run` once per connection."""

    def __init__(self, deps: SyncDeps, poison: PoisonTracker | None = None) -> None:
        self._deps = deps
        #: Messages in flight (watched by the poison tracker) and acknowledged rows
        #: awaiting deletion.
        self.acks = Acks(deps, poison or PoisonTracker())
        self._live = _LiveRows()
        self._wake = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Messages of the current connection awaiting their PUBACK."""
        return self.acks.in_flight

    @property
    def live(self) -> bool:
        """A connection is up and the pump streams new rows as they are committed."""
        return self._live.boundary < _NO_BOUNDARY

    def note_commit(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        """From the store's commit listener: schedule live rows (cheap, never raises)."""
        lv = self._live
        live = lv.add(readings, events)
        if live and (
            lv.urgent or lv.pending == live or lv.pending >= self._deps.cfg.batch_max_readings
        ):
            self._wake.set()

    async def connection_lost(self) -> None:
        """The connection broke with messages in flight (not a refusal, quota or timeout):
        tell the poison tracker about the oldest; dead-letter it when it says so."""
        rows = self.acks.oldest_in_flight()
        if rows is None:
            return
        poison = self.acks.poison
        verdict = poison.connection_lost(rows[0].seq, len(rows))
        if verdict is Verdict.SPLIT:
            self._deps.counters.splits += 1
            _LOGGER.debug(
                "connection lost with seq %d in flight: %d row(s) per message",
                rows[0].seq,
                poison.cautious,
            )
        elif verdict is Verdict.DEAD_LETTER:
            await dead_letter(
                self._deps,
                rows,
                f"the connection broke {POISON_STRIKES} times while this message was the"
                " oldest in flight (the broker refuses it: message size limit?)",
            )

    async def run(self, link: Link) -> None:
        """Send until the connection ends (an exception) or the task is cancelled."""
        deps = self._deps
        outbox, cfg, figures = deps.outbox, deps.cfg, deps.figures
        n_cfg = cfg.batch_max_readings
        t_max = cfg.batch_max_ms / 1000
        # rows acknowledged before this connection are deleted before anything is fetched
        await self.acks.flush()
        lv = self._live
        boundary = deps.store.last_seq
        lv.boundary = boundary
        lv.reset()
        live_cursor = boundary
        backlog_cursor = 0
        backlog_done = False
        figures.backlog_left = figures.rows
        next_backlog = time.monotonic()
        prefetch: asyncio.Task[list[OutboxRow]] | None = None
        self.acks.end_connection()
        self.acks.poison.new_connection()
        try:
            async with asyncio.TaskGroup() as tg:
                sender = Sender(deps, self.acks, link, tg)
                slots = sender.slots
                while True:
                    now = time.monotonic()
                    n_max = self.acks.poison.batch_limit(n_cfg)
                    if lv.due(now, n_max, t_max):
                        await slots.acquire()
                        rows = await outbox.fetch(live_cursor, n_max)
                        lv.taken(len(rows), now)
                        if rows:
                            live_cursor = rows[-1].seq
                            await sender.send(rows, False)
                        else:
                            slots.release()
                        continue
                    if not backlog_done and now >= next_backlog:
                        # a few batches per query: fewer transactions while draining
                        per_query = max(1, min(BACKLOG_FETCH_BATCHES, int(cfg.drain_rate // n_max)))
                        limit = n_max * per_query
                        await slots.acquire()
                        if prefetch is not None:
                            rows, prefetch = await prefetch, None
                        else:
                            rows = await outbox.fetch(backlog_cursor, limit, upto=boundary)
                        if not rows:
                            slots.release()
                            backlog_done = True
                            figures.backlog_left = 0
                            continue
                        backlog_cursor = rows[-1].seq
                        if len(rows) >= limit:
                            # read the next chunk while this one is encoded and sent
                            prefetch = tg.create_task(
                                outbox.fetch(backlog_cursor, limit, upto=boundary),
                                name="sync-prefetch",
                            )
                        figures.backlog_left = max(0, figures.backlog_left - len(rows))
                        for i in range(0, len(rows), n_max):
                            if i:
                                await slots.acquire()
                            await sender.send(rows[i : i + n_max], True)
                        next_backlog = max(now, next_backlog) + len(rows) / cfg.drain_rate
                        continue
                    waits: list[float] = []
                    if lv.pending:
                        waits.append((lv.first or now) + t_max - now)
                    if not backlog_done:
                        waits.append(next_backlog - now)
                    self._wake.clear()
                    await wait_event(self._wake, max(0.0, min(waits)) if waits else None)
        finally:
            lv.boundary = _NO_BOUNDARY
