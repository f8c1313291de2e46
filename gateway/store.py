"""The local state cache and telemetry outbox: one SQLite file through aiosqlite.

Durability contract: a reading is *reported stored* (it gets its sequence number and commit
listeners see it) only after the transaction holding it has committed with
``synchronous=FULL`` in WAL mode; from then on it survives a crash or a power cut. Writes are
batched into one transaction per at most ``batch_max_ms`` milliseconds or ``batch_max_rows``
readings, to spare the SD card.

Every reading and event gets a gateway-wide sequence number: strictly increasing, persisted in
the same transaction, never reused across restarts or crashes (numbers of a batch that never
committed were never visible to anyone).

Tables (schema version :data:`SCHEMA_VERSION`, migrated by ``PRAGMA user_version``):
``devices``; ``state`` (latest value per device and metric); ``history`` (bounded recent
readings); ``outbox`` (what the sync agent has not yet delivered); ``dead_letter``; ``meta``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.config import StoreSection
from gateway.errors import StoreCorruptError, StoreError
from gateway.model import Device, DeviceStatus, DeviceUpdate, Event, Reading, Transport, Value

_LOGGER = logging.getLogger(__name__)

#: ``PRAGMA application_id``: tells our database from a foreign SQLite file ("MiGW").
APPLICATION_ID = 0x4D694757
SCHEMA_VERSION = 1
#: Pending items beyond this are dropped (and counted) rather than exhausting memory when
#: the disk stalls: at 20,000 readings/s that is many seconds of buffering.
MAX_PENDING = 200_000
#: After a failed commit, the writer retries after this many seconds (doubling, capped).
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0
#: At shutdown, a failing commit is tried this often before pending items are given up.
CLOSE_ATTEMPTS = 3
CLOSE_BUSY_TIMEOUT_MS = 500
#: Sequence numbers are reserved in blocks of this size in a side file (see _reserve).
SEQ_RESERVE = 1_000_000
#: Prune the history table every this many commits.
PRUNE_EVERY = 50

OUTBOX_READING = 0
OUTBOX_EVENT = 1

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: the initial schema
    (
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            transport TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            manufacturer TEXT NOT NULL DEFAULT '',
            first_seen REAL,
            last_seen REAL,
            battery REAL,
            rssi INTEGER,
            lqi INTEGER,
            status TEXT NOT NULL DEFAULT 'unknown',
            sleepy INTEGER NOT NULL DEFAULT 0,
            attrs TEXT NOT NULL DEFAULT '{}'
        ) WITHOUT ROWID""",
        """CREATE TABLE state (
            device_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            value TEXT NOT NULL,
            unit TEXT,
            ts REAL NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (device_id, metric)
        ) WITHOUT ROWID""",
        """CREATE TABLE history (
            seq INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            value TEXT NOT NULL,
            ts REAL NOT NULL
        )""",
        # no (device, metric) index on history: on every batch it would dirty leaf pages
        # all over the B-tree (SD card wear); per-device queries scan the bounded table.
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            kind INTEGER NOT NULL,
            device_id TEXT NOT NULL,
            body TEXT NOT NULL,
            ts REAL NOT NULL,
            boot TEXT NOT NULL,
            mono REAL NOT NULL,
            synced INTEGER NOT NULL,
            size INTEGER NOT NULL
        )""",
        "CREATE INDEX outbox_kind ON outbox (kind, seq)",
        """CREATE TABLE dead_letter (
            id INTEGER PRIMARY KEY,
            created REAL NOT NULL,
            reason TEXT NOT NULL,
            first_seq INTEGER,
            last_seq INTEGER,
            payload BLOB NOT NULL
        )""",
    ),
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One undelivered reading or event. ``body`` is its compact JSON (without seq/ts)."""

    seq: int
    kind: int
    device_id: str
    body: str
    ts: float
    boot: str
    mono: float
    synced: bool
    size: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_ts: float | None
    oldest_seq: int | None
    events: int


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

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)

    def empty(self) -> bool:
        return not (self.readings or self.events or self.devices or self.seen)


CommitListener = Callable[[Sequence[Reading], Sequence[Event]], None]


_json_str = json.encoder.encode_basestring


def encode_value(value: Value) -> str:
    """JSON text of a value (the hot path of ingest: no generic encoder for numbers)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))  # finite floats only reach the store
    return str(_json_str(value))


def decode_value(text: str) -> Value:
    value = json.loads(text)
    if isinstance(value, bool | int | float | str):
        return value
    raise StoreError(f"unexpected stored value {text!r}")


def reading_body(r: Reading) -> str:
    """The outbox body of a reading: what the sync agent publishes besides seq/ts/boot/mono."""
    unit = "" if r.unit is None else f',"unit":{_json_str(r.unit)}'
    return (
        f'{{"device":{_json_str(r.device_id)},"metric":{_json_str(r.metric)},'
        f'"value":{encode_value(r.value)}{unit}}}'
    )


#: Keys of a published event that an event's extra properties may never take.
_RESERVED_EVENT_KEYS = frozenset(
    {"device", "event", "action", "button", "seq", "ts", "boot", "mono", "clock"}
)


def event_body(e: Event) -> str:
    body: dict[str, Any] = {"device": e.device_id, "event": e.event, "action": e.action}
    if e.button is not None:
        body["button"] = e.button
    for key, value in e.properties:
        if key not in _RESERVED_EVENT_KEYS:
            body.setdefault(key, value)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class StateReader:
    """Queries over a state database connection (the service's, or a read-only one)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._rdb = db

    async def close(self) -> None:
        await self._rdb.close()

    async def outbox_fetch(
        self, limit: int, *, after_seq: int = 0, kind: int | None = None
    ) -> list[OutboxRow]:
        """The oldest undelivered rows with ``seq > after_seq``, in sequence order."""
        sql = "SELECT seq, kind, device_id, body, ts, boot, mono, synced, size FROM outbox"
        sql += " WHERE seq > ?"
        args: list[Any] = [after_seq]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        async with self._rdb.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8]) for r in rows]

    async def outbox_stats(self) -> OutboxStats:
        async with self._rdb.execute(
            "SELECT count(*), coalesce(sum(size),0), min(ts), min(seq),"
            " coalesce(sum(kind = 1),0) FROM outbox"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return OutboxStats(
            depth=int(row[0]),
            bytes=int(row[1]),
            oldest_ts=row[2],
            oldest_seq=row[3],
            events=int(row[4]),
        )

    async def meta_get(self, key: str) -> str | None:
        async with self._rdb.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def devices(self) -> list[Device]:
        async with self._rdb.execute(
            f"SELECT {_DEVICE_COLS} FROM devices ORDER BY id"  # noqa: S608 - constant columns
        ) as cur:
            rows = await cur.fetchall()
        return [_device_from_row(r) for r in rows]

    async def device(self, device_id: str) -> Device | None:
        async with self._rdb.execute(
            f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?",  # noqa: S608 - constant columns
            (device_id,),
        ) as cur:
            row = await cur.fetchone()
        return _device_from_row(row) if row else None

    async def state(self, device_id: str) -> dict[str, tuple[Value, str | None, float, int]]:
        """Latest value of every metric of a device: metric -> (value, unit, ts, seq)."""
        async with self._rdb.execute(
            "SELECT metric, value, unit, ts, seq FROM state WHERE device_id = ? ORDER BY metric",
            (device_id,),
        ) as cur:
            rows = await cur.fetchall()
        return {r[0]: (decode_value(r[1]), r[2], r[3], r[4]) for r in rows}

    async def history(
        self,
        device_id: str,
        metric: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[tuple[int, str, Value, float]]:
        """Recent readings (seq, metric, value, ts), oldest first."""
        sql = "SELECT seq, metric, value, ts FROM history WHERE device_id = ?"
        args: list[Any] = [device_id]
        if metric is not None:
            sql += " AND metric = ?"
            args.append(metric)
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if until is not None:
            sql += " AND ts <= ?"
            args.append(until)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        async with self._rdb.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [(r[0], r[1], decode_value(r[2]), r[3]) for r in reversed(list(rows))]

    async def integrity_check(self) -> str:
        async with self._rdb.execute("PRAGMA quick_check") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else "no answer"


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
        #: Every sequence number handed out is below this (persisted in a side file).
        self._reserved = 0

    # ------------------------------------------------------------------ open / close

    @classmethod
    async def open(cls, path: Path, config: StoreSection | None = None) -> Store:
        """Open (creating or migrating) the database at ``path`` and start the writer.

        A file that is not a migw database, or fails ``PRAGMA quick_check``, is moved aside
        to ``<name>.corrupt-<UTC time>`` (never deleted) and a fresh one is created;
        :attr:`recovered_from` names the moved file. A database from a newer migw is refused.
        """
        config = config or StoreSection()
        path.parent.mkdir(parents=True, exist_ok=True)
        moved: Path | None = None
        existed = await asyncio.to_thread(_has_data, path)
        problem = await asyncio.to_thread(_check_existing, path)
        if problem is not None:
            moved = _move_aside(path)
            _LOGGER.error(
                "state database %s is unusable (%s): moved it to %s and started a new one",
                path,
                problem,
                moved,
            )
        db = await aiosqlite.connect(path, isolation_level=None)
        reader: aiosqlite.Connection | None = None
        try:
            await _configure(db)
            await _migrate(db, path)
            reader = await aiosqlite.connect(path, isolation_level=None)
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute("PRAGMA busy_timeout=5000")
            store = cls(path, config, db, reader)
            store.recovered_from = moved
            store._last_seq = await store._load_last_seq()
            store._reserved = await asyncio.to_thread(_read_reservation, path)
            if (moved is not None or not existed) and store._reserved > store._last_seq:
                # the database holding our numbers is gone: never hand them out again
                _LOGGER.warning(
                    "continuing sequence numbers after %d (the previous database is gone)",
                    store._reserved,
                )
                store._last_seq = store._reserved
        except BaseException:
            if reader is not None:
                await reader.close()
            await db.close()
            raise
        store._writer = asyncio.create_task(store._write_loop(), name="store-writer")
        return store

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
            "SELECT max(coalesce((SELECT max(seq) FROM outbox),0),"
            " coalesce((SELECT max(seq) FROM history),0))"
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
        """Call ``listener(readings, events)`` after each commit. Returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _admit(self) -> bool:
        if self._closed:
            raise StoreError("store is closed")
        if len(self._pending) >= MAX_PENDING:
            self.counters.dropped_backpressure += 1
            return False
        return True

    def add_reading(self, reading: Reading) -> bool:
        """Queue a reading for the next commit. False: dropped (counted) under backpressure."""
        if not _storable(reading):
            self.counters.dropped_invalid += 1
            return False
        if not self._admit():
            return False
        self._pending.readings.append(reading)
        self._pending.seen[reading.device_id] = reading.stamp.wall
        self._kick()
        return True

    def add_event(self, event: Event) -> bool:
        if not self._admit():
            return False
        self._pending.events.append(event)
        self._pending.seen[event.device_id] = event.stamp.wall
        self._kick()
        return True

    def update_device(self, update: DeviceUpdate, seen: float | None = None) -> None:
        if self._closed:
            raise StoreError("store is closed")
        if not _encodable(
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
        self._pending.devices[update.id] = update if prev is None else _merge(prev, update)
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
                readings, events = await self._commit(batch)
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
                    listener(readings, events)
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
        return batch

    def _requeue(self, batch: _Pending) -> None:
        p = self._pending
        p.readings[:0] = batch.readings
        p.events[:0] = batch.events
        for key, upd in batch.devices.items():
            p.devices[key] = upd if key not in p.devices else _merge(upd, p.devices[key])
        for key, seen in batch.seen.items():
            p.seen[key] = max(seen, p.seen.get(key, seen))

    async def _commit(self, batch: _Pending) -> tuple[list[Reading], list[Event]]:
        seq = self._last_seq
        readings: list[Reading] = []
        events: list[Event] = []
        history_rows: list[tuple[Any, ...]] = []
        state_rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        outbox_rows: list[tuple[Any, ...]] = []
        battery: dict[str, float] = {}
        # Numbers follow arrival order per kind; within one batch readings come before
        # events (a consumer orders by seq, and a batch spans at most batch_max_ms).
        for r in batch.readings:
            seq += 1
            value = encode_value(r.value)
            readings.append(_with_seq(r, seq))
            history_rows.append((seq, r.device_id, r.metric, value, r.stamp.wall))
            state_rows[(r.device_id, r.metric)] = (
                r.device_id,
                r.metric,
                value,
                r.unit,
                r.stamp.wall,
                seq,
            )
            body = reading_body(r)
            outbox_rows.append(
                (
                    seq,
                    OUTBOX_READING,
                    r.device_id,
                    body,
                    r.stamp.wall,
                    r.stamp.boot,
                    r.stamp.mono,
                    int(r.stamp.synced),
                    len(body) + 48,
                )
            )
            if r.metric == "battery" and isinstance(r.value, int | float):
                battery[r.device_id] = float(r.value)
        for e in batch.events:
            seq += 1
            events.append(_with_seq(e, seq))
            body = event_body(e)
            outbox_rows.append(
                (
                    seq,
                    OUTBOX_EVENT,
                    e.device_id,
                    body,
                    e.stamp.wall,
                    e.stamp.boot,
                    e.stamp.mono,
                    int(e.stamp.synced),
                    len(body) + 48,
                )
            )
        if seq > self._reserved:
            self._reserved = seq + SEQ_RESERVE
            await asyncio.to_thread(_write_reservation, self.path, self._reserved)
        async with self._transaction() as db:
            for upd in batch.devices.values():
                await db.execute(_UPSERT_DEVICE, _device_params(upd))
            if history_rows:
                await db.executemany(
                    "INSERT INTO history (seq, device_id, metric, value, ts) VALUES (?,?,?,?,?)",
                    history_rows,
                )
                await db.executemany(
                    "INSERT INTO state (device_id, metric, value, unit, ts, seq)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT (device_id, metric) DO UPDATE SET"
                    " value=excluded.value, unit=excluded.unit, ts=excluded.ts,"
                    " seq=excluded.seq",
                    list(state_rows.values()),
                )
            if outbox_rows:
                await db.executemany(
                    "INSERT INTO outbox (seq, kind, device_id, body, ts, boot, mono,"
                    " synced, size) VALUES (?,?,?,?,?,?,?,?,?)",
                    outbox_rows,
                )
            if batch.seen:
                await db.executemany(
                    "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), ?),"
                    " first_seen = coalesce(first_seen, ?) WHERE id = ?",
                    [(ts, ts, dev) for dev, ts in batch.seen.items()],
                )
            if battery:
                await db.executemany(
                    "UPDATE devices SET battery = ? WHERE id = ?",
                    [(v, dev) for dev, v in battery.items()],
                )
            if seq != self._last_seq:
                await db.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_seq', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(seq),),
                )
            if (self.counters.commits + 1) % PRUNE_EVERY == 0:
                await self._prune_history()
        self._last_seq = seq
        self.counters.commits += 1
        self.counters.rows_committed += len(readings) + len(events)
        self.last_commit_wall = time.time()
        return readings, events

    async def _prune_history(self) -> None:
        keep = self.config.history_max_rows
        await self._db.execute(
            "DELETE FROM history WHERE seq <= (SELECT seq FROM history ORDER BY seq DESC"
            " LIMIT 1 OFFSET ?)",
            (keep,),
        )

    # ------------------------------------------------------------------ outbox (sync agent)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """A write transaction serialised with the ingest writer (for the sync agent)."""
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
        params = [(s,) for s in seqs]
        if not params:
            return 0
        async with self.transaction() as db:
            await db.executemany("DELETE FROM outbox WHERE seq = ?", params)
        return len(params)

    async def meta_set(self, key: str, value: str) -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


# ---------------------------------------------------------------------- helpers

_DEVICE_COLS = (
    "id, transport, model, name, manufacturer, last_seen, battery, rssi, lqi, status, sleepy, attrs"
)

_UPSERT_DEVICE = """
INSERT INTO devices (id, transport, model, name, manufacturer, rssi, lqi, status, sleepy, attrs)
VALUES (:id, :transport, coalesce(:model, ''), coalesce(:name, ''), coalesce(:manufacturer, ''),
        :rssi, :lqi, coalesce(:status, 'unknown'), coalesce(:sleepy, 0), coalesce(:attrs, '{}'))
ON CONFLICT (id) DO UPDATE SET
    model = coalesce(:model, model),
    name = coalesce(:name, name),
    manufacturer = coalesce(:manufacturer, manufacturer),
    rssi = coalesce(:rssi, rssi),
    lqi = coalesce(:lqi, lqi),
    status = coalesce(:status, status),
    sleepy = coalesce(:sleepy, sleepy),
    attrs = coalesce(:attrs, attrs)
"""


def _device_params(u: DeviceUpdate) -> dict[str, Any]:
    return {
        "id": u.id,
        "transport": u.transport.value,
        "model": u.model,
        "name": u.name,
        "manufacturer": u.manufacturer,
        "rssi": u.rssi,
        "lqi": u.lqi,
        "status": u.status.value if u.status is not None else None,
        "sleepy": None if u.sleepy is None else int(u.sleepy),
        "attrs": None if u.attrs is None else json.dumps(u.attrs, sort_keys=True),
    }


def _device_from_row(r: Sequence[Any]) -> Device:
    try:
        attrs = json.loads(r[11])
    except (TypeError, ValueError):
        attrs = {}
    return Device(
        id=r[0],
        transport=Transport(r[1]),
        model=r[2],
        name=r[3],
        manufacturer=r[4],
        last_seen=r[5],
        battery=r[6],
        rssi=r[7],
        lqi=r[8],
        status=DeviceStatus(r[9])
        if r[9] in DeviceStatus.__members__.values()
        else DeviceStatus.UNKNOWN,
        sleepy=bool(r[10]),
        attrs={str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {},
    )


def _merge(old: DeviceUpdate, new: DeviceUpdate) -> DeviceUpdate:
    def pick(a: Any, b: Any) -> Any:
        return b if b is not None else a

    attrs = old.attrs
    if new.attrs is not None:
        attrs = {**(old.attrs or {}), **new.attrs}
    return DeviceUpdate(
        id=new.id,
        transport=new.transport,
        model=pick(old.model, new.model),
        name=pick(old.name, new.name),
        manufacturer=pick(old.manufacturer, new.manufacturer),
        rssi=pick(old.rssi, new.rssi),
        lqi=pick(old.lqi, new.lqi),
        status=pick(old.status, new.status),
        sleepy=pick(old.sleepy, new.sleepy),
        attrs=attrs,
    )


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


async def _configure(db: aiosqlite.Connection) -> None:
    mode = await (await db.execute("PRAGMA journal_mode=WAL")).fetchone()
    if not mode or str(mode[0]).lower() != "wal":
        raise StoreError(f"cannot enable WAL mode (got {mode[0] if mode else None!r})")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA busy_timeout=5000")
    # a smaller autocheckpoint keeps the WAL (and the SD card writes) bounded
    await db.execute("PRAGMA wal_autocheckpoint=1000")


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    row = await (await db.execute("PRAGMA user_version")).fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this migw understands"
            f" ({SCHEMA_VERSION}): upgrade migw or move the file away"
        )
    while version < SCHEMA_VERSION:
        steps = _MIGRATIONS[version]
        await db.execute("BEGIN IMMEDIATE")
        try:
            for sql in steps:
                await db.execute(sql)
            version += 1
            await db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            await db.execute(f"PRAGMA user_version={version}")
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
        _LOGGER.info("state database %s migrated to schema %d", path, version)


_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def _transient(exc: BaseException) -> bool:
    """Locked, busy, disk full, I/O: worth retrying. Anything else will fail again."""
    return isinstance(exc, sqlite3.OperationalError | OSError)


def _encodable(*texts: str | None) -> bool:
    try:
        for text in texts:
            if text is not None:
                text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(r: Reading) -> bool:
    """Values SQLite and JSON can hold: finite numbers, text that encodes as UTF-8."""
    value = r.value
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return _encodable(r.device_id, r.metric, value if isinstance(value, str) else None)


def _reservation_path(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


def _read_reservation(path: Path) -> int:
    """The sequence reservation: every number ever handed out is below it (0: none)."""
    try:
        text = _reservation_path(path).read_text(encoding="ascii").strip()
        return max(0, int(text))
    except (OSError, ValueError):
        return 0


def _write_reservation(path: Path, value: int) -> None:
    """Durably record a new reservation (once per SEQ_RESERVE numbers: no SD card wear)."""
    target = _reservation_path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{value}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dirfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _check_existing(path: Path) -> str | None:
    """Why an existing file cannot be our database, or None when it can (or is absent)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    if not header.startswith(b"SQLite format 3\x00"):
        return "not an SQLite database"
    try:
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            tables = con.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table'"
            ).fetchone()[0]
            if app_id != APPLICATION_ID and tables:
                return f"a foreign SQLite database (application_id {app_id:#x})"
            check = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) in _CORRUPT_CODES:
            return f"corrupt ({exc})"
        # locked, busy, cannot open, I/O: the file may be fine; never move it aside for that
        raise StoreError(f"cannot open the state database {path}: {exc}") from exc
    if check != "ok":
        return f"corrupt (quick_check: {check})"
    return None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


async def open_readonly(path: Path) -> StateReader:
    """A read-only view for the CLI when the service is down."""
    if not await asyncio.to_thread(path.exists):
        raise StoreError(f"no state database at {path}")
    try:
        db = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreCorruptError(f"cannot open {path} read-only: {exc}") from exc
    try:
        # the connection is lazy: find a foreign or corrupt file now, not at the first query
        async with db.execute("PRAGMA application_id") as cur:
            row = await cur.fetchone()
    except sqlite3.Error as exc:
        await db.close()
        raise StoreCorruptError(f"cannot read {path}: {exc}") from exc
    if row is None or row[0] != APPLICATION_ID:
        await db.close()
        raise StoreCorruptError(f"{path} is not a migw state database")
    return StateReader(db)
