"""The telemetry pump: live and backlog scheduling, send, acknowledge, split or dead-letter.

Runs inside a connection session (:mod:`gateway.sync.session`). Outbox rows are deleted only
after the PUBACK of the message that carried them (:meth:`Pump.flush_acks`); a crash at any
moment loses nothing and resends at most the messages that were in flight.

* **Live**: rows committed after the connection came up (:meth:`Pump.note_commit`) go out as
  soon as a batch is full, ``batch_max_ms`` passed, or a priority reading/event arrives.
* **Backlog**: older rows are drained at ``drain_rate`` rows/s, a few batches per query.
* **Window**: at most :data:`INFLIGHT` messages (never more than the broker's Receive
  Maximum) await their PUBACK.
* **Too big, or refused** (PUBACK 0x80 and up that is not a configuration problem nor a
  quota): a message of several rows is split in halves, a single row is dead-lettered —
  one path, :meth:`Pump._split_or_dead_letter`.
* **Poison**: a connection that broke with messages in flight is reported to the
  :class:`~gateway.sync.poison.PoisonTracker` (:meth:`Pump.connection_lost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from drivers.errors import NeedsHumanError, TransientError
from gateway.config import UpstreamSection
from gateway.metrics import base_name
from gateway.model import Event, Reading
from gateway.store import OutboxRow
from gateway.sync.figures import OutboxFigures, SyncCounters
from gateway.sync.mqtt import Link, publish_properties
from gateway.sync.outbox import PRIORITY_METRICS, Outbox
from gateway.sync.payload import (
    ClockFix,
    Refusal,
    Topics,
    classify_refusal,
    encode_batch,
    is_corrupt,
)
from gateway.sync.poison import POISON_STRIKES, PoisonTracker, Verdict
from gateway.sync.timing import SyncTiming

_LOGGER = logging.getLogger(__name__)

#: Messages in flight (never more than the broker's Receive Maximum).
INFLIGHT = 8
#: Backlog batches read per outbox query while draining.
BACKLOG_FETCH_BATCHES = 4
#: Acknowledged messages that trigger a deletion before the next ack flush tick.
ACK_FLUSH_MESSAGES = 50
#: Bytes reserved for the PUBLISH header, topic and properties of a batch.
PUBLISH_OVERHEAD = 96
#: "No live boundary": every row counts as backlog until a connection sets one.
_NO_BOUNDARY = 1 << 62


class TransientRefusal(TransientError):
    """The broker answered a PUBLISH with a retry-later reason code (quota, busy)."""


class Pump:
    """See the module docstring. One per agent; :meth:`run` once per connection."""

    def __init__(
        self,
        cfg: UpstreamSection,
        gateway_id: str,
        topics: Topics,
        outbox: Outbox,
        *,
        figures: OutboxFigures,
        counters: SyncCounters,
        poison: PoisonTracker,
        clock_fix: Callable[[], ClockFix],
        last_seq: Callable[[], int],
        timing: SyncTiming,
    ) -> None:
        self._cfg = cfg
        self._gateway_id = gateway_id
        self._topics = topics
        self._outbox = outbox
        self._figures = figures
        self._counters = counters
        self._poison = poison
        self._clock_fix = clock_fix
        self._last_seq = last_seq
        self._timing = timing
        # live stream
        self._wake = asyncio.Event()
        self._live_boundary = _NO_BOUNDARY
        self._live_pending = 0
        self._live_first: float | None = None
        self._live_urgent = False
        #: Messages awaiting their PUBACK on the current connection, oldest first.
        self._flight: dict[asyncio.Future[int], tuple[Sequence[OutboxRow], int]] = {}
        #: Acknowledged messages not yet deleted: (first seq, last seq, rows, bytes).
        self._acked: list[tuple[int, int, int, int]] = []
        self._ack_lock = asyncio.Lock()
        self._ack_wake = asyncio.Event()

    # ------------------------------------------------------------------ public seams

    @property
    def in_flight(self) -> int:
        """Messages of the current connection awaiting their PUBACK."""
        return len(self._flight)

    @property
    def live(self) -> bool:
        """A connection is up and the pump streams new rows as they are committed."""
        return self._live_boundary < _NO_BOUNDARY

    def note_commit(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        """From the store's commit listener: schedule live rows (cheap, never raises)."""
        boundary = self._live_boundary
        live = 0
        urgent = False
        for r in readings:
            if r.seq > boundary:
                live += 1
                if base_name(r.metric) in PRIORITY_METRICS:
                    urgent = True
        for e in events:
            if e.seq > boundary:
                live += 1
                urgent = True
        if not live:
            return
        if self._live_pending == 0:
            self._live_first = time.monotonic()
        self._live_pending += live
        self._live_urgent = self._live_urgent or urgent
        if (
            urgent
            or self._live_pending == live
            or self._live_pending >= self._cfg.batch_max_readings
        ):
            self._wake.set()

    # ------------------------------------------------------------------ acknowledgements

    async def ack_loop(self) -> None:
        """Deletes acknowledged rows in small transactions (runs for the agent's life)."""
        while True:
            await wait_event(self._ack_wake, self._timing.ack_flush_s)
            self._ack_wake.clear()
            await self.flush_acks()

    async def flush_acks(self) -> None:
        async with self._ack_lock:
            if not self._acked:
                return
            batch, self._acked = self._acked, []
            deleted = await self._outbox.ack([(first, last) for first, last, _, _ in batch])
            self._counters.rows_acked += deleted
            f = self._figures
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
        done, _ = await asyncio.wait(flight, timeout=self._timing.goodbye_s)
        for fut in done:
            if fut.cancelled() or fut.exception() is not None:
                continue
            if classify_refusal(fut.result()) is None:
                self._acked.append(_ack_entry(flight[fut][0]))

    def end_connection(self) -> None:
        """This connection's messages are no longer in flight: never struck by a later one."""
        self._flight = {}

    async def connection_lost(self) -> None:
        """The connection broke with messages in flight (not a refusal, quota or timeout):
        tell the poison tracker about the oldest; dead-letter it when it says so."""
        oldest = next(iter(self._flight.values()), None)
        if oldest is None:
            return
        rows = oldest[0]
        verdict = self._poison.connection_lost(rows[0].seq, len(rows))
        if verdict is Verdict.SPLIT:
            self._counters.splits += 1
            _LOGGER.debug(
                "connection lost with seq %d in flight: %d row(s) per message",
                rows[0].seq,
                self._poison.cautious,
            )
        elif verdict is Verdict.DEAD_LETTER:
            await self._dead_letter(
                rows,
                f"the connection broke {POISON_STRIKES} times while this message was the"
                " oldest in flight (the broker refuses it: message size limit?)",
            )

    # ------------------------------------------------------------------ the pump

    def _packet_limit(self, link: Link) -> int:
        limit = self._cfg.max_message_bytes
        if link.max_packet_size:
            limit = min(limit, link.max_packet_size)
        return limit

    async def run(self, link: Link) -> None:
        """Send until the connection ends (an exception) or the task is cancelled."""
        outbox = self._outbox
        cfg = self._cfg
        figures = self._figures
        n_cfg = cfg.batch_max_readings
        t_max = cfg.batch_max_ms / 1000
        window = min(INFLIGHT, link.receive_maximum or INFLIGHT)
        slots = asyncio.Semaphore(window)
        # rows acknowledged before this connection are deleted before anything is fetched
        await self.flush_acks()
        boundary = self._last_seq()
        self._live_boundary = boundary
        self._live_pending = 0
        self._live_first = None
        self._live_urgent = False
        live_cursor = boundary
        backlog_cursor = 0
        backlog_done = False
        figures.backlog_left = figures.rows
        next_backlog = time.monotonic()
        prefetch: asyncio.Task[list[OutboxRow]] | None = None
        self._flight = {}
        self._poison.new_connection()
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    now = time.monotonic()
                    n_max = self._poison.batch_limit(n_cfg)
                    if self._live_pending and (
                        self._live_urgent
                        or self._live_pending >= n_max
                        or now - (self._live_first or now) >= t_max
                    ):
                        await slots.acquire()
                        rows = await outbox.fetch(live_cursor, n_max)
                        if rows:
                            live_cursor = rows[-1].seq
                        self._live_pending = max(0, self._live_pending - len(rows))
                        if not rows or self._live_pending == 0:
                            self._live_pending = 0
                            self._live_urgent = False
                            self._live_first = None
                        else:
                            self._live_first = now
                        if rows:
                            await self._send(link, rows, False, slots, tg)
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
                            await self._send(link, rows[i : i + n_max], True, slots, tg)
                        next_backlog = max(now, next_backlog) + len(rows) / cfg.drain_rate
                        continue
                    waits: list[float] = []
                    if self._live_pending:
                        waits.append((self._live_first or now) + t_max - now)
                    if not backlog_done:
                        waits.append(next_backlog - now)
                    self._wake.clear()
                    await wait_event(self._wake, max(0.0, min(waits)) if waits else None)
        finally:
            self._live_boundary = _NO_BOUNDARY

    async def _send(
        self,
        link: Link,
        rows: Sequence[OutboxRow],
        backlog: bool,
        slots: asyncio.Semaphore,
        tg: asyncio.TaskGroup,
    ) -> None:
        """Publish rows as one message (or several when too large); one slot is held."""
        held = True  # the caller acquired one slot for this message

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        try:
            rows = await self._drop_corrupt(rows)
            if not rows:
                release()
                return
            self._outbox.counters.batch += 1
            enc = encode_batch(
                self._gateway_id,
                self._outbox.counters.batch,
                rows,
                self._clock_fix(),
                backlog=backlog,
                compress=self._cfg.compress,
            )
            limit = self._packet_limit(link)
            size = len(enc.payload) + len(self._topics.telemetry) + PUBLISH_OVERHEAD
            if size > limit:
                release()
                await self._split_or_dead_letter(
                    link,
                    rows,
                    backlog,
                    slots,
                    tg,
                    f"message of {size} bytes exceeds the maximum packet size ({limit} bytes)",
                    enc.payload,
                )
                return
            fut = link.send(
                self._topics.telemetry,
                enc.payload,
                qos=1,
                properties=publish_properties(link.v5, enc.content_type),
            )
        except BaseException:
            release()
            raise
        number = self._poison.sent_message(rows[0].seq, rows[-1].seq)
        self._flight[fut] = (rows, number)
        c = self._counters
        c.batches_sent += 1
        c.readings_sent += len(rows)
        c.last_publish = time.time()
        tg.create_task(self._await_ack(link, fut, rows, number, backlog, slots, tg, enc.payload))

    async def _split_or_dead_letter(
        self,
        link: Link,
        rows: Sequence[OutboxRow],
        backlog: bool,
        slots: asyncio.Semaphore,
        tg: asyncio.TaskGroup,
        reason: str,
        payload: bytes,
    ) -> None:
        """The one path for a message the broker will not take: halves for several rows
        (each sent on a slot of its own), the dead-letter table for one row. No slot held."""
        if len(rows) > 1:
            self._counters.splits += 1
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                await slots.acquire()
                await self._send(link, part, backlog, slots, tg)
        else:
            await self._dead_letter(rows, reason, payload)

    async def _dead_letter(
        self, rows: Sequence[OutboxRow], reason: str, payload: bytes | None = None
    ) -> None:
        await self._outbox.dead_letter(rows, reason, payload)
        self._figures.removed(rows)

    async def _drop_corrupt(self, rows: Sequence[OutboxRow]) -> Sequence[OutboxRow]:
        bad = [r for r in rows if is_corrupt(r)]
        for r in bad:
            await self._dead_letter([r], "corrupt outbox row (body is not a JSON object)")
        if not bad:
            return rows
        return [r for r in rows if r not in bad]

    async def _await_ack(
        self,
        link: Link,
        fut: asyncio.Future[int],
        rows: Sequence[OutboxRow],
        number: int,
        backlog: bool,
        slots: asyncio.Semaphore,
        tg: asyncio.TaskGroup,
        payload: bytes,
    ) -> None:
        try:
            code = await link.wait_ack(fut, self._timing.ack_timeout_s)
        finally:
            # a cancelled waiter leaves its entry: a clean stop still collects the PUBACK
            slots.release()
        self._flight.pop(fut, None)
        refusal = classify_refusal(code)
        if refusal is None:
            self._acked.append(_ack_entry(rows))
            self._poison.acknowledged(rows[0].seq, rows[-1].seq, number)
            self._counters.last_ack = time.time()
            if len(self._acked) >= ACK_FLUSH_MESSAGES:
                self._ack_wake.set()
            return
        self._counters.refused += 1
        what = f"the broker refused the message (reason code 0x{code:02X})"
        if refusal is Refusal.CONFIG:
            self._poison.refused_topic()
            raise NeedsHumanError(f"{what}: check the broker's ACL for {self._topics.telemetry}")
        if refusal is Refusal.TRANSIENT:
            raise TransientRefusal(what)
        _LOGGER.warning("%s for %d row(s) (seq %d-%d)", what, len(rows), rows[0].seq, rows[-1].seq)
        await self._split_or_dead_letter(link, rows, backlog, slots, tg, what, payload)


def _ack_entry(rows: Sequence[OutboxRow]) -> tuple[int, int, int, int]:
    return rows[0].seq, rows[-1].seq, len(rows), sum(r.size for r in rows)


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> None:
    """Until ``event`` is set or ``timeout_s`` passes."""
    if timeout_s is None:
        await event.wait()
    else:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
