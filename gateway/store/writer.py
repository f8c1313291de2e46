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
import dataclasses
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.config import StoreSection
from gateway.errors import StoreError
from gateway.model import DeviceUpdate, Event, Reading
from gateway.store import devices, files, outbox
from gateway.store.codec import encodable, encode_value, storable
from gateway.store.reader import StateReader
from gateway.store.schema import configure, meta_put, migrate

#: ``meta`` key: what was found wrong with the files at the last open that found something.
META_DAMAGE = "store.damage"

_LOGGER = logging.getLogger(__name__)

#: While commits fail (disk full, I/O errors), pending items are held in memory up to these
#: bounds (about 8 MB; a queued reading costs about ITEM_COST bytes of objects), then new
#: readings are dropped and counted; an event takes the place of the oldest pending reading.
MAX_PENDING = 25_000
MAX_PENDING_BYTES = 8 * 1024 * 1024
ITEM_COST = 320
#: A health reason names the drops for this long after the last one.
DROP_REASON_S = 60.0
#: After a failed commit, the writer retries after this many seconds (doubling, capped).
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0
#: At shutdown, a failing commit is tried this often before pending items are given up.
CLOSE_ATTEMPTS = 3
CLOSE_BUSY_TIMEOUT_MS = 500
#: Sequence numbers are reserved in blocks of this size in a side file (see _commit).
SEQ_RESERVE = 1_000_000
#: Prune the history table every this many commits.
PRUNE_EVERY = 50
#: Without an uplink the outbox keeps only its newest this many items: nothing would ever
#: deliver more, and a newly configured uplink still gets the most recent ones.
NO_UPLINK_MAX_ROWS = 1000


@dataclass(slots=True)
class StoreCounters:
    commits: int = 0
    rows_committed: int = 0
    commit_failures: int = 0
    dropped_backpressure: int = 0
    dropped_invalid: int = 0


@dataclass(slots=True)
class _Pending:
    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    devices: dict[str, DeviceUpdate] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    #: Estimated memory held by ``readings`` and ``events``.
    bytes: int = 0

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)

    def empty(self) -> bool:
        return not (self.readings or self.events or self.devices or self.seen)


@dataclass(frozen=True, slots=True)
class Commit:
    """What one commit stored, as commit listeners see it."""

    readings: Sequence[Reading]
    events: Sequence[Event]
    #: What these rows add to the outbox's byte bound (the sum of their row sizes).
    outbox_bytes: int


CommitListener = Callable[[Commit], None]


def _reading_cost(r: Reading) -> int:
    value = r.value
    return ITEM_COST + len(value) if type(value) is str else ITEM_COST


def _event_cost(e: Event) -> int:
    return ITEM_COST + sum(len(str(v)) for _, v in e.properties)


class Store(StateReader):
    """Owner of the state database. Use ``async with await Store.open(...)`` or open/close."""

    def __init__(
        self,
        path: Path,
        config: StoreSection,
        db: aiosqlite.Connection,
        reader: aiosqlite.Connection,
    ) -> None:
        # Queries run on their own connection: in WAL mode they see committed data only,
        # never the writer's open transaction, and they do not queue behind its commits.
        super().__init__(reader)
        self._db = db
        self.path = path
        self.config = config
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._listeners: list[CommitListener] = []
        self._last_seq = 0
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.counters = StoreCounters()
        self.last_error: str = ""
        self.last_commit_wall: float | None = None
        #: Set when a corrupt database was moved aside at open.
        self.recovered_from: Path | None = None
        #: Numbers below this are covered by the reservation file (see _commit).
        self._reserved = 0
        self._on_disk = files.Reservation(files.ReservationState.NONE)
        #: Kernel boot id -> its number in ``boots``; (device, metric, unit) -> ``series``.
        self._boots: dict[str, int] = {}
        self._series: dict[outbox.SeriesKey, int] = {}
        #: Numbers handed out that no commit has recorded yet.
        self._new_boots: dict[str, int] = {}
        self._new_series: dict[outbox.SeriesKey, int] = {}
        self._next_series = 1
        #: Series number -> a reading's outbox row size without its value's JSON text.
        self._fixed_size: dict[int, int] = {}
        #: Whether an uplink is configured (else the outbox is kept small).
        self._uplink: Callable[[], bool] = lambda: True
        self._uplink_stored: bool | None = None
        #: What was found wrong with the files at open (logged at ERROR, kept for health).
        self.damage: list[str] = []
        self._last_drop = -math.inf
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
        outbox keeps only its newest :data:`NO_UPLINK_MAX_ROWS` items.
        """
        config = config or StoreSection()
        path.parent.mkdir(parents=True, exist_ok=True)
        reservation = await asyncio.to_thread(files.read_reservation, path)
        existed = await asyncio.to_thread(files.has_data, path)
        damage: list[str] = []
        if reservation.state is files.ReservationState.UNREADABLE:
            damage.append(
                f"the sequence reservation file {files.reservation_path(path)} is unreadable"
            )
        elif reservation.state is files.ReservationState.RESERVED and existed:
            # the last run did not close: was its write-ahead log lost or damaged?
            wal = await asyncio.to_thread(files.inspect_wal, path)
            if wal is not None:
                kept = await asyncio.to_thread(files.keep_aside, path)
                where = f" (copied to {', '.join(p.name for p in kept)})" if kept else ""
                damage.append(f"{wal} after an unclean stop{where}")
        moved: Path | None = None
        problem = await asyncio.to_thread(files.check_existing, path)
        if problem is not None:
            moved = files.move_aside(path)
            _LOGGER.error(
                "state database %s is unusable (%s): moved it to %s and started a new one",
                path,
                problem,
                moved,
            )
        elif not existed and reservation.used_up_to > 0:
            damage.append("the database file is missing")
        db = await aiosqlite.connect(path, isolation_level=None)
        reader: aiosqlite.Connection | None = None
        try:
            await configure(db)
            await migrate(db, path)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute("PRAGMA busy_timeout=5000")
            store = cls(path, config, db, reader)
            store.recovered_from = moved
            if uplink is not None:
                store._uplink = uplink
            stored = await store._load_last_seq()
            store._boots = await outbox.boot_ids(db)
            store._series = await outbox.series_ids(db)
            store._next_series = max(store._series.values(), default=0) + 1
            used = reservation.used_up_to
            if reservation.state is files.ReservationState.UNREADABLE:
                used = stored + SEQ_RESERVE  # whatever a lost reservation covered
            if (
                stored < used
                and reservation.state is files.ReservationState.CLOSED
                and existed
                and moved is None
            ):
                damage.append(
                    f"the database ends at #{stored} but numbers up to #{used} were handed"
                    " out (an older copy restored, or writes lost)"
                )
            store._last_seq = max(stored, used)
            store._reserved = store._last_seq + 1
            store._on_disk = reservation
            if damage:
                await store._record_damage(damage)
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
        if time.monotonic() - self._last_drop < DROP_REASON_S:
            out.append(
                f"the pending queue is full (writes failing): {self.counters.dropped_backpressure}"
                " item(s) dropped, readings before events"
            )
        return out

    async def close(self) -> None:
        """Flush everything pending, stop the writer, close the database."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(sqlite3.Error, ValueError):
            await self._db.execute(f"PRAGMA busy_timeout={CLOSE_BUSY_TIMEOUT_MS}")
        self._wake.set()
        if self._writer is not None:
            try:
                await self._writer
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.exception("store writer ended with an error")
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

    async def _load_last_seq(self) -> int:
        async with self._db.execute("SELECT value FROM meta WHERE key='last_seq'") as cur:
            row = await cur.fetchone()
        meta_seq = int(row[0]) if row else 0
        # belt and braces: never below what the tables hold
        async with self._db.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM outbox_items),0),"
            " coalesce((SELECT max(seq) FROM readings),0))"
        ) as cur:
            row = await cur.fetchone()
        return max(meta_seq, int(row[0]) if row and row[0] is not None else 0)

    # ------------------------------------------------------------------ ingest

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def pending(self) -> int:
        return len(self._pending)

    def subscribe(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener(commit)`` after each commit. Returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _admit(self, item: Reading | Event, cost: int) -> int:
        """The item's cost when it may be queued, 0 when it is dropped (counted)."""
        if self._closed:
            raise StoreError("store is closed")
        p = self._pending
        if len(p) < MAX_PENDING and p.bytes + cost <= MAX_PENDING_BYTES:
            return cost
        self.counters.dropped_backpressure += 1
        self._last_drop = time.monotonic()
        if self.counters.dropped_backpressure == 1:
            _LOGGER.error("pending queue full (writes failing?): dropping readings")
        if isinstance(item, Event) and p.readings:
            # events are rare and urgent: one takes the place of the oldest reading
            p.bytes -= _reading_cost(p.readings.pop(0))
            return cost
        return 0

    def add_reading(self, reading: Reading) -> bool:
        """Queue a reading for the next commit. False: dropped (counted) under backpressure."""
        if not storable(reading):
            self.counters.dropped_invalid += 1
            return False
        cost = self._admit(reading, _reading_cost(reading))
        if not cost:
            return False
        self._pending.readings.append(reading)
        self._pending.bytes += cost
        self._pending.seen[reading.device_id] = reading.stamp.wall
        self._kick()
        return True

    def add_event(self, event: Event) -> bool:
        cost = self._admit(event, _event_cost(event))
        if not cost:
            return False
        self._pending.events.append(event)
        self._pending.bytes += cost
        self._pending.seen[event.device_id] = event.stamp.wall
        self._kick()
        return True

    def update_device(self, update: DeviceUpdate, seen: float | None = None) -> None:
        if self._closed:
            raise StoreError("store is closed")
        if not encodable(
            update.id,
            update.model,
            update.name,
            update.manufacturer,
            *(update.attrs or {}).keys(),
            *(update.attrs or {}).values(),
        ):
            self.counters.dropped_invalid += 1
            return
        prev = self._pending.devices.get(update.id)
        self._pending.devices[update.id] = update if prev is None else devices.merge(prev, update)
        if seen is not None:
            self._pending.seen[update.id] = seen
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        while not self._pending.empty() or not self._idle.is_set():
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
        retry = RETRY_INITIAL_S
        close_failures = 0
        isolate = 0
        while True:
            if self._pending.empty():
                self._idle.set()
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # gather for up to max_wait after the first item, or until the batch is full
            deadline = time.monotonic() + max_wait
            while len(self._pending) < max_rows and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._wake.wait()
            # after a permanent failure, commit one item at a time to find the poison
            batch = self._take(1 if isolate > 0 else max_rows)
            isolate = max(0, isolate - len(batch))
            try:
                commit = await self._commit(batch)
            except Exception as exc:  # the writer must outlive any failure
                self.counters.commit_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                transient = _transient(exc)
                if isinstance(exc, sqlite3.IntegrityError):
                    # someone else wrote our sequence numbers? then continue above theirs;
                    # otherwise a constraint refuses the data itself: a permanent failure
                    stored = await self._load_last_seq()
                    transient = stored > self._last_seq
                    self._last_seq = max(stored, self._last_seq)
                if self.counters.commit_failures == 1 or retry >= RETRY_MAX_S:
                    _LOGGER.error("state database write failed (will retry): %s", exc)
                if not isinstance(exc, sqlite3.Error | OSError):
                    _LOGGER.debug("write failure detail", exc_info=exc)
                if not transient:
                    if len(batch) <= 1:
                        # the poison itself: drop it (counted) so ingest goes on
                        self.counters.dropped_invalid += len(batch)
                        _LOGGER.error("dropped an item the database refuses: %s", exc)
                        batch.readings.clear()
                        batch.events.clear()
                    else:
                        isolate = len(batch)
                    retry = 0.0
                self._requeue(batch)
                if self._closed:
                    close_failures += 1
                    if close_failures >= CLOSE_ATTEMPTS:
                        _LOGGER.error(
                            "giving up on %d unsaved items at shutdown", len(self._pending)
                        )
                        self._pending = _Pending()
                        continue
                await asyncio.sleep(retry)
                retry = min(max(retry * 2, RETRY_INITIAL_S), RETRY_MAX_S)
                continue
            retry = RETRY_INITIAL_S
            self.last_error = ""
            for listener in list(self._listeners):
                try:
                    listener(commit)
                except Exception:
                    _LOGGER.exception("commit listener failed")

    def _take(self, max_rows: int) -> _Pending:
        p = self._pending
        if len(p) <= max_rows:
            self._pending = _Pending()
            return p
        # split in arrival order per kind; events first (they are rare and urgent)
        batch = _Pending()
        n_events = min(len(p.events), max_rows)
        batch.events, p.events = p.events[:n_events], p.events[n_events:]
        n_readings = max_rows - n_events
        batch.readings, p.readings = p.readings[:n_readings], p.readings[n_readings:]
        batch.devices, p.devices = p.devices, {}
        batch.seen, p.seen = p.seen, {}
        batch.bytes = sum(map(_reading_cost, batch.readings)) + sum(map(_event_cost, batch.events))
        p.bytes -= batch.bytes
        return batch

    def _requeue(self, batch: _Pending) -> None:
        p = self._pending
        p.readings[:0] = batch.readings
        p.events[:0] = batch.events
        p.bytes += batch.bytes
        for key, upd in batch.devices.items():
            p.devices[key] = upd if key not in p.devices else devices.merge(upd, p.devices[key])
        for key, seen in batch.seen.items():
            p.seen[key] = max(seen, p.seen.get(key, seen))

    async def _commit(self, batch: _Pending) -> Commit:
        seq = self._last_seq
        readings: list[Reading] = []
        events: list[Event] = []
        history_rows: list[tuple[Any, ...]] = []
        state_rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        outbox_rows: list[tuple[Any, ...]] = []
        battery: dict[str, float] = {}
        outbox_bytes = 0
        queue = self._uplink()
        # Numbers follow arrival order per kind; within one batch readings come before
        # events (a consumer orders by seq, and a batch spans at most batch_max_ms).
        for r in batch.readings:
            seq += 1
            value = encode_value(r.value)
            readings.append(_with_seq(r, seq))
            key = outbox.reading_series(r)
            series = self._series_id(key)
            fixed = self._fixed_size.get(series)
            if fixed is None:
                fixed = self._fixed_size[series] = outbox.series_size(key)
            outbox_bytes += fixed + len(value)
            st = r.stamp
            history_rows.append(
                (seq, series, value, st.wall, self._boot_id(st.boot), st.mono, int(st.synced))
            )
            state_rows[(r.device_id, r.metric)] = (
                r.device_id,
                r.metric,
                value,
                r.unit,
                r.stamp.wall,
                seq,
            )
            if r.metric == "battery" and isinstance(r.value, int | float):
                battery[r.device_id] = float(r.value)
        for e in batch.events:
            seq += 1
            events.append(_with_seq(e, seq))
            row = outbox.event_row(
                seq, e, self._series_id(outbox.event_series(e)), self._boot_id(e.stamp.boot)
            )
            outbox_bytes += row[outbox.SIZE_COLUMN]
            outbox_rows.append(row)
        if seq >= self._reserved:
            # the reservation is on disk before any number under it is used; a failure
            # fails this commit, which is retried (the batch stays pending)
            reserved = seq + SEQ_RESERVE
            await asyncio.to_thread(
                files.write_reservation,
                self.path,
                files.Reservation(files.ReservationState.RESERVED, reserved),
            )
            self._reserved = reserved
            self._on_disk = files.Reservation(files.ReservationState.RESERVED, reserved)
        async with self._transaction() as db:
            if self._new_series:
                await db.executemany(
                    outbox.INSERT_SERIES,
                    [(n, *key, outbox.series_size(key)) for key, n in self._new_series.items()],
                )
            if self._new_boots:
                await db.executemany(
                    outbox.INSERT_BOOT, [(n, b) for b, n in self._new_boots.items()]
                )
            for upd in batch.devices.values():
                await db.execute(devices.UPSERT_DEVICE, devices.device_params(upd))
            if history_rows:
                await db.executemany(outbox.INSERT_READING, history_rows)
                await db.executemany(
                    "INSERT INTO state (device_id, metric, value, unit, ts, seq)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT (device_id, metric) DO UPDATE SET"
                    " value=excluded.value, unit=excluded.unit, ts=excluded.ts,"
                    " seq=excluded.seq",
                    list(state_rows.values()),
                )
            if outbox_rows:
                await db.executemany(outbox.INSERT, outbox_rows)
            if batch.seen:
                await db.executemany(
                    devices.SEEN, [(ts, ts, dev) for dev, ts in batch.seen.items()]
                )
            if battery:
                await db.executemany(devices.BATTERY, [(v, dev) for dev, v in battery.items()])
            if seq != self._last_seq:
                await meta_put(db, "last_seq", str(seq))
            if queue is not self._uplink_stored:
                await meta_put(db, outbox.META_UPLINK, "1" if queue else "0")
            if not queue:
                await outbox.keep_newest(db, NO_UPLINK_MAX_ROWS)
            if (self.counters.commits + 1) % PRUNE_EVERY == 0:
                await outbox.prune_history(db, self.config.history_max_rows)
        self._last_seq = seq
        self._uplink_stored = queue
        self._new_series.clear()
        self._new_boots.clear()
        self.counters.commits += 1
        self.counters.rows_committed += len(readings) + len(events)
        self.last_commit_wall = time.time()
        return Commit(readings, events, outbox_bytes)

    def _boot_id(self, boot: str) -> int:
        n = self._boots.get(boot)
        if n is None:
            # recorded in ``boots`` by the next commit that succeeds
            n = self._boots[boot] = self._new_boots[boot] = max(self._boots.values(), default=0) + 1
        return n

    def _series_id(self, key: outbox.SeriesKey) -> int:
        n = self._series.get(key)
        if n is None:
            n = self._series[key] = self._new_series[key] = self._next_series
            self._next_series += 1
        return n

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """A write transaction serialised with the ingest writer."""
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the write lock; ROLLBACK on any exception.

        Cancellation can strike while a statement runs in aiosqlite's thread (the BEGIN may
        then have happened without us knowing): every exit path that did not commit rolls
        back, and a transaction left open by anything else is rolled back before we begin.
        """
        db = self._db
        async with self._write_lock:
            try:
                if db.in_transaction:
                    _LOGGER.warning("rolling back a transaction left open")
                    await db.execute("ROLLBACK")
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # shielded: a second cancellation must not leave the transaction open
                await asyncio.shield(_rollback(db))
                raise

    async def outbox_delete(self, seqs: Iterable[int]) -> int:
        """Delete delivered rows (after the broker acknowledged them). Returns the count."""
        return await self.outbox.delete(seqs)


_T = TypeVar("_T", Reading, Event)


def _with_seq(item: _T, seq: int) -> _T:
    if type(item) is Reading:
        # the hot path: a direct constructor call is several times faster than replace()
        return Reading(
            item.device_id, item.metric, item.value, item.unit, item.stamp, item.source, seq
        )
    return dataclasses.replace(item, seq=seq)


async def _rollback(db: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error, ValueError):
        if db.in_transaction:
            await db.execute("ROLLBACK")


def _transient(exc: BaseException) -> bool:
    """Locked, busy, disk full, I/O: worth retrying. Anything else will fail again."""
    return isinstance(exc, sqlite3.OperationalError | OSError)
