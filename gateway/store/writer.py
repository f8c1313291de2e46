"""The owner of the state database: the pending queue, batched durable commits and the
sequence numbers.

Durability contract: a reading is *reported stored* (it gets its sequence number and commit
listeners see it) only after the transaction holding it has committed with
``synchronous=FULL`` in WAL mode; from then on it survives a crash or a power cut. Writes are
batched into one transaction per at most ``batch_max_ms`` milliseconds or ``batch_max_rows``
readings, to spare the SD card.

Every reading and event gets a gateway-wide sequence number: strictly increasing, persisted in
the same transaction, never reused across restarts or crashes (numbers of a batch that never
committed were never visible to anyone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import aiosqlite

from gateway.config import StoreSection
from gateway.errors import StoreError
from gateway.model import DeviceUpdate, Event, Reading
from gateway.store import delivered, files, outbox, txn
from gateway.store.limits import StoreLimits
from gateway.store.pending import Batch, PendingQueue, StoreCounters
from gateway.store.reader import StateReader
from gateway.store.rows import (
    Commit,
    CommitListener,
    Numbering,
    state_behind,
    stored_last_seq,
    write_state,
)
from gateway.store.schema import CACHE_KIB, configure, meta_put, migrate
from gateway.store.txn import WriteTransactions

#: ``meta`` key: what was found wrong with the files at the last open that found something.
META_DAMAGE = "store.damage"

_LOGGER = logging.getLogger(__name__)

__all__ = ["Commit", "CommitListener", "Store", "StoreCounters", "StoreLimits"]


class Store(StateReader):
    """Owner of the state database. Use ``async with await Store.open(...)`` or open/close."""

    def __init__(
        self,
        path: Path,
        config: StoreSection,
        db: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        limits: StoreLimits,
    ) -> None:
        # Queries run on their own connection: in WAL mode they see committed data only,
        # never the writer's open transaction, and they do not queue behind its commits.
        super().__init__(reader)
        self._db = db
        self.path = path
        self.config = config
        self.limits = limits
        self.counters = StoreCounters()
        self._queue = PendingQueue(limits, self.counters)
        self._wake = asyncio.Event()
        #: The writer gathers a batch until its deadline: only a full batch wakes it early.
        self._gathering = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._listeners: list[CommitListener] = []
        self._last_seq = 0
        self._writer: asyncio.Task[None] | None = None
        self._transaction = WriteTransactions(db)
        self.last_error: str = ""
        self.last_commit_wall: float | None = None
        #: Set when a corrupt database was moved aside at open.
        self.recovered_from: Path | None = None
        #: Numbers below this are covered by the reservation file (see _commit).
        self._reserved = 0
        self._on_disk = files.Reservation(files.ReservationState.NONE)
        self._numbers = Numbering({}, {})
        #: Series -> the seq of its newest reading committed since the ``state`` table was
        #: last written (the rows are read back from ``readings`` when it is written).
        self._state: dict[int, int] = {}
        #: Whether an uplink is configured (else the outbox is kept small).
        self._uplink: Callable[[], bool] = lambda: True
        self._uplink_stored: bool | None = None
        #: What was found wrong with the files at open (logged at ERROR, kept for health).
        self.damage: list[str] = []
        #: The outbox's statements (for the sync agent), in write transactions of this store.
        self.outbox = outbox.OutboxTable(self.transaction)

    # ------------------------------------------------------------------ open / close

    @classmethod
    async def open(
        cls,
        path: Path,
        config: StoreSection | None = None,
        *,
        uplink: Callable[[], bool] | None = None,
        limits: StoreLimits | None = None,
    ) -> Store:
        """Open (creating or migrating) the database at ``path`` and start the writer.

        A file that is not a migw database, or fails ``PRAGMA quick_check``, is moved aside
        to ``<name>.corrupt-<UTC time>`` (never deleted) and a fresh one is created;
        :attr:`recovered_from` names the moved file. A database from a newer migw is refused.

        The sequence reservation file is consulted at every open: numbering continues above
        every number it says was handed out. A write-ahead log that a crashed run left
        missing, garbled or truncated, and a database behind the numbers handed out (an
        older copy restored), are logged at ERROR, listed in :attr:`damage` and in
        ``meta`` (``store.damage``); a damaged log is copied aside first.

        ``uplink`` says whether an uplink is configured (default: yes); without one the
        outbox keeps only its newest ``limits.no_uplink_max_rows`` items. ``limits``: the
        writer's bounds and timings (:class:`~gateway.store.limits.StoreLimits`).
        """
        config = config or StoreSection()
        path.parent.mkdir(parents=True, exist_ok=True)
        limits = limits or StoreLimits()
        check = await asyncio.to_thread(files.check_at_open, path)
        db = await aiosqlite.connect(path, isolation_level=None)
        reader: aiosqlite.Connection | None = None
        try:
            await configure(db)
            await migrate(db, path)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            store = cls(path, config, db, reader, limits)
            store.recovered_from = check.moved
            if uplink is not None:
                store._uplink = uplink
            stored = await stored_last_seq(db)
            store._numbers = await Numbering.load(db)
            store._state = await state_behind(db)
            store._last_seq = check.numbers_used(path, stored, limits.seq_reserve)
            store._reserved = store._last_seq + 1
            store._on_disk = check.reservation
            if check.damage:
                await store._record_damage(check.damage)
            if store._last_seq > stored:
                _LOGGER.info("sequence numbers continue after %d", store._last_seq)
        except BaseException:
            if reader is not None:
                await reader.close()
            await db.close()
            raise
        store._writer = asyncio.create_task(store._write_loop(), name="store-writer")
        return store

    async def _record_damage(self, damage: list[str]) -> None:
        for text in damage:
            _LOGGER.error(
                "state database %s: %s; readings committed before the damage may be lost;"
                " sequence numbers continue after %d",
                self.path,
                text,
                self._last_seq,
            )
        self.damage = damage
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        async with self._transaction() as db:
            await meta_put(db, META_DAMAGE, f"{stamp} {'; '.join(damage)}")

    def problems(self) -> list[str]:
        """Why the store is degraded (for health): failing writes, drops, damaged files."""
        out: list[str] = []
        if self.last_error:
            out.append(self.last_error)
        if self.recovered_from is not None:
            out.append(f"the database was unusable and was moved to {self.recovered_from}")
        out.extend(self.damage)
        if time.monotonic() - self._queue.last_drop < self.limits.drop_reason_s:
            out.append(
                f"the pending queue is full (writes failing): {self.counters.dropped_backpressure}"
                " item(s) dropped, readings before events"
            )
        return out

    async def close(self) -> None:
        """Flush everything pending, stop the writer, close the database."""
        if self._queue.closed:
            return
        self._queue.closed = True
        with contextlib.suppress(sqlite3.Error, ValueError):
            await self._db.execute(f"PRAGMA busy_timeout={self.limits.close_busy_timeout_ms}")
        self._wake.set()
        if self._writer is not None:
            try:
                await self._writer
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("store writer ended with an error")
        if self._state:
            try:
                async with self._transaction() as db:
                    await write_state(db, self._state.values(), self._last_seq)
            except (sqlite3.Error, OSError) as exc:  # the readings hold it: nothing is lost
                _LOGGER.warning("cannot write the state table at close: %s", exc)
        closed = files.Reservation(files.ReservationState.CLOSED, self._last_seq)
        if self._on_disk != closed:
            # every number handed out is at most last_seq: the next open continues right
            # after it instead of above the reservation, and knows this run ended cleanly
            try:
                await asyncio.to_thread(files.write_reservation, self.path, closed)
            except OSError as exc:
                _LOGGER.warning("cannot record the clean close (%s): numbers will jump", exc)
        await self._rdb.close()
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ ingest

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def pending(self) -> int:
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        """Estimated memory held by the pending readings and events."""
        return self._queue.items.bytes

    def subscribe(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener(commit)`` after each commit. Returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def add_reading(self, reading: Reading) -> bool:
        """Queue a reading for the next commit. False: dropped (counted) under backpressure."""
        if not self._queue.add_reading(reading):
            return False
        self._kick()
        return True

    def add_event(self, event: Event) -> bool:
        if not self._queue.add_event(event):
            return False
        self._kick()
        return True

    def update_device(self, update: DeviceUpdate, seen: float | None = None) -> None:
        if self._queue.update_device(update, seen):
            self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        # while a batch gathers, waking the writer for each item would only have it wait
        # again (a timer and a future per item): it waits for its deadline or a full batch
        if not self._gathering:
            self._wake.set()
            return
        items = self._queue.items
        if len(items.readings) + len(items.events) >= self.config.batch_max_rows:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        while not self._queue.items.empty() or not self._idle.is_set():
            writer = self._writer
            if writer is None or writer.done():
                raise StoreError("store writer is not running")
            idle = asyncio.ensure_future(self._idle.wait())
            try:
                await asyncio.wait({idle, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                idle.cancel()

    # ------------------------------------------------------------------ writer

    async def _write_loop(self) -> None:
        max_rows = self.config.batch_max_rows
        max_wait = self.config.batch_max_ms / 1000
        limits = self.limits
        queue = self._queue
        retry = limits.retry_initial_s
        close_failures = 0
        isolate = 0
        #: Isolating: the batch's device updates and last-seen times are committed alone first.
        devices_first = False
        while True:
            if queue.items.empty():
                self._idle.set()
                if queue.closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # gather for up to max_wait after the first item, or until the batch is full
            deadline = time.monotonic() + max_wait
            self._gathering = True
            while len(queue) < max_rows and not queue.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._wake.wait()
            self._gathering = False
            # after a permanent failure, commit the device updates alone, then one item at
            # a time, to find the poison
            isolating = isolate > 0
            pending = queue.items
            if isolating and devices_first and (pending.devices or pending.seen):
                batch = queue.take(0)
            else:
                batch = queue.take(1 if isolating else max_rows)
            devices_first = False
            isolate = max(0, isolate - len(batch))
            try:
                commit = await self._commit(batch)
            except Exception as exc:  # the writer must outlive any failure
                # the numbers this commit handed out are not recorded: read them again
                self._numbers.stale = True
                self.counters.commit_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                transient = txn.transient(exc)
                if isinstance(exc, sqlite3.IntegrityError):
                    # someone else wrote our sequence numbers? then continue above theirs;
                    # otherwise a constraint refuses the data itself: a permanent failure
                    stored = await stored_last_seq(self._db)
                    transient = stored > self._last_seq
                    self._last_seq = max(stored, self._last_seq)
                if self.counters.commit_failures == 1 or retry >= limits.retry_max_s:
                    _LOGGER.error("state database write failed (will retry): %s", exc)
                if not isinstance(exc, sqlite3.Error | OSError):
                    _LOGGER.debug("write failure detail", exc_info=exc)
                if not transient:
                    if len(batch) and not isolating:
                        isolate, devices_first = len(batch), True
                    elif len(batch):
                        # the poison itself: drop it (counted) so ingest goes on
                        self.counters.dropped_invalid += len(batch)
                        _LOGGER.error("dropped an item the database refuses: %s", exc)
                        batch.clear_items()
                    else:
                        # device updates or last-seen times alone: requeued, they would
                        # fail again forever (and every item after them with them)
                        self.counters.dropped_invalid += len(batch.devices)
                        _LOGGER.error(
                            "dropped %d device update(s) the database refuses: %s",
                            len(batch.devices),
                            exc,
                        )
                        batch = Batch()
                    retry = 0.0
                queue.requeue(batch)
                if queue.closed:
                    close_failures += 1
                    if close_failures >= limits.close_attempts:
                        _LOGGER.error("giving up on %d unsaved items at shutdown", len(queue))
                        queue.give_up()
                        continue
                await asyncio.sleep(retry)
                retry = min(max(retry * 2, limits.retry_initial_s), limits.retry_max_s)
                continue
            retry = limits.retry_initial_s
            self.last_error = ""
            for listener in list(self._listeners):
                try:
                    listener(commit)
                except Exception:
                    _LOGGER.exception("commit listener failed")

    async def _commit(self, batch: Batch) -> Commit:
        if self._numbers.stale:
            # after a failed commit: the numbers it handed out were rolled back with it
            self._numbers = await Numbering.load(self._db)
        rows = self._numbers.rows(batch, self._last_seq)
        seq = rows.seq
        queue = self._uplink()
        if seq >= self._reserved:
            # the reservation is on disk before any number under it is used; a failure
            # fails this commit, which is retried (the batch stays pending)
            reserved = seq + self.limits.seq_reserve
            await asyncio.to_thread(
                files.write_reservation,
                self.path,
                files.Reservation(files.ReservationState.RESERVED, reserved),
            )
            self._reserved = reserved
            self._on_disk = files.Reservation(files.ReservationState.RESERVED, reserved)
        n = self.counters.commits + 1
        prune = n % self.limits.prune_every == 0
        # the state table is written every few commits (and before a prune, which deletes
        # readings): until then the readings since its last write tell the newer values
        state = prune or n % self.limits.state_every == 0
        async with self._transaction() as db:
            await self._numbers.write(db, batch, rows)
            if state:
                await write_state(db, {**self._state, **rows.state}.values(), seq)
            if seq != self._last_seq:
                await meta_put(db, "last_seq", str(seq))
            if queue is not self._uplink_stored:
                await meta_put(db, outbox.META_UPLINK, "1" if queue else "0")
            if not queue:
                await outbox.keep_newest(db, self.limits.no_uplink_max_rows)
            if prune:
                await delivered.prune_history(db, self.config.history_max_rows)
        if state:
            self._state = {}
        else:
            self._state.update(rows.state)
        self._last_seq = seq
        self._uplink_stored = queue
        self._numbers.recorded()
        self.counters.commits += 1
        self.counters.rows_committed += len(rows.readings) + len(rows.events)
        self.last_commit_wall = time.time()
        return rows.commit()

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """A write transaction serialised with the ingest writer."""
        return self._transaction()

    async def outbox_delete(self, seqs: Iterable[int]) -> int:
        """Delete delivered rows (after the broker acknowledged them). Returns the count."""
        return await self.outbox.delete(seqs)
