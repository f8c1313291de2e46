"""What one commit writes: the rows of a batch, numbered, and the statements that store
them. The :class:`Numbering` also hands out the numbers of series and boot ids, recorded by
the first commit that uses them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite

from gateway.model import Event, Reading
from gateway.store import devices, outbox
from gateway.store.codec import encode_value
from gateway.store.outbox import SeriesKey
from gateway.store.pending import Batch
from gateway.store.schema import META_STATE, STATE_AFTER, meta_put

INSERT_READING = (
    "INSERT INTO readings (seq, series, value, ts, boot, mono, synced) VALUES (?,?,?,?,?,?,?)"
)

#: Records a series' or a boot id's number (inside the commit that first uses it).
INSERT_SERIES = (
    "INSERT OR IGNORE INTO series (id, device_id, metric, unit, size) VALUES (?, ?, ?, ?, ?)"
)
INSERT_BOOT = "INSERT OR IGNORE INTO boots (id, boot) VALUES (?, ?)"


async def series_ids(db: aiosqlite.Connection) -> dict[SeriesKey, int]:
    async with db.execute("SELECT device_id, metric, unit, id FROM series") as cur:
        return {(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in await cur.fetchall()}


async def boot_ids(db: aiosqlite.Connection) -> dict[str, int]:
    async with db.execute("SELECT boot, id FROM boots") as cur:
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


#: The state row of the reading numbered ``?`` (none when the reading is gone: its device
#: forgotten since it was committed), unless the table holds a newer one.
UPSERT_STATE = (
    "INSERT INTO state (device_id, metric, value, unit, ts, seq)"
    " SELECT s.device_id, s.metric, r.value, nullif(s.unit, char(0)), r.ts, r.seq"
    " FROM readings r JOIN series s ON s.id = r.series WHERE r.seq = ?"
    " ON CONFLICT (device_id, metric) DO UPDATE SET"
    " value=excluded.value, unit=excluded.unit, ts=excluded.ts, seq=excluded.seq"
    " WHERE excluded.seq > state.seq"
)


@dataclass(frozen=True, slots=True)
class Commit:
    """What one commit stored, as commit listeners see it."""

    readings: Sequence[Reading]
    events: Sequence[Event]
    #: What these rows add to the outbox's byte bound (the sum of their row sizes).
    outbox_bytes: int


CommitListener = Callable[[Commit], None]


@dataclass(slots=True)
class Rows:
    """A batch's rows; ``seq`` is the last number they use."""

    seq: int
    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    #: Series -> the seq of its newest reading in the batch.
    state: dict[int, int] = field(default_factory=dict)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    battery: dict[str, float] = field(default_factory=dict)
    outbox_bytes: int = 0

    def commit(self) -> Commit:
        return Commit(self.readings, self.events, self.outbox_bytes)


class Numbering:
    """Series and boot-id numbers: the known ones, and those handed out that no commit has
    recorded yet."""

    def __init__(self, boots: dict[str, int], series: dict[SeriesKey, int]) -> None:
        self._boots = boots
        self._series = series
        self._new_boots: dict[str, int] = {}
        self._new_series: dict[SeriesKey, int] = {}
        self._next_series = max(series.values(), default=0) + 1
        #: Series number -> a reading's outbox row size without its value's JSON text.
        self._fixed_size: dict[int, int] = {}
        #: Set when a commit failed: the numbers it handed out were not recorded (and one
        #: the database refuses would fail every later commit), so the writer loads the
        #: numbers again from the database before its next commit.
        self.stale = False

    @classmethod
    async def load(cls, db: aiosqlite.Connection) -> Numbering:
        return cls(await boot_ids(db), await series_ids(db))

    def boot_id(self, boot: str) -> int:
        n = self._boots.get(boot)
        if n is None:
            # recorded in ``boots`` by the next commit that succeeds
            n = self._boots[boot] = self._new_boots[boot] = max(self._boots.values(), default=0) + 1
        return n

    def series_id(self, key: SeriesKey) -> int:
        n = self._series.get(key)
        if n is None:
            n = self._series[key] = self._new_series[key] = self._next_series
            self._next_series += 1
        return n

    def rows(self, batch: Batch, last_seq: int) -> Rows:
        """Number the batch's items after ``last_seq``: in arrival order per kind, readings
        before events (a consumer orders by seq, and a batch spans at most batch_max_ms)."""
        out = Rows(last_seq)
        seq = last_seq
        fixed_size = self._fixed_size
        known = self._series
        # the hot loop (once per reading): bound methods and the last boot id held locally
        add_reading, add_history, state = out.readings.append, out.history.append, out.state
        boot, boot_n = "", 0
        outbox_bytes = 0
        for r in batch.readings:
            seq += 1
            value = encode_value(r.value)
            add_reading(_with_seq(r, seq))
            key = outbox.reading_series(r)
            series = known.get(key)
            if series is None:
                series = self.series_id(key)
            fixed = fixed_size.get(series)
            if fixed is None:
                fixed = fixed_size[series] = outbox.series_size(key)
            outbox_bytes += fixed + len(value)
            st = r.stamp
            if st.boot != boot:
                boot, boot_n = st.boot, self.boot_id(st.boot)
            add_history((seq, series, value, st.wall, boot_n, st.mono, int(st.synced)))
            state[series] = seq
            if r.metric == "battery" and isinstance(r.value, int | float):
                out.battery[r.device_id] = float(r.value)
        out.outbox_bytes = outbox_bytes
        for e in batch.events:
            seq += 1
            out.events.append(_with_seq(e, seq))
            row = outbox.event_row(
                seq, e, self.series_id(outbox.event_series(e)), self.boot_id(e.stamp.boot)
            )
            out.outbox_bytes += row[outbox.SIZE_COLUMN]
            out.outbox.append(row)
        out.seq = seq
        return out

    async def write(self, db: aiosqlite.Connection, batch: Batch, rows: Rows) -> None:
        """Store the rows, the numbers they use first and the batch's device updates
        (inside the caller's transaction)."""
        if self._new_series:
            await db.executemany(
                INSERT_SERIES,
                [(n, *key, outbox.series_size(key)) for key, n in self._new_series.items()],
            )
        if self._new_boots:
            await db.executemany(INSERT_BOOT, [(n, b) for b, n in self._new_boots.items()])
        for upd in batch.devices.values():
            await db.execute(devices.UPSERT_DEVICE, devices.device_params(upd))
        if rows.history:
            await db.executemany(INSERT_READING, rows.history)
        if rows.outbox:
            await db.executemany(outbox.INSERT, rows.outbox)
        if batch.seen:
            await db.executemany(devices.SEEN, [(ts, ts, dev) for dev, ts in batch.seen.items()])
        if rows.battery:
            await db.executemany(devices.BATTERY, [(v, dev) for dev, v in rows.battery.items()])

    def recorded(self) -> None:
        """The commit that wrote the new numbers succeeded."""
        self._new_series.clear()
        self._new_boots.clear()


async def stored_last_seq(db: aiosqlite.Connection) -> int:
    """The last sequence number the database has recorded (``meta``, and never below what
    the tables hold)."""
    async with db.execute("SELECT value FROM meta WHERE key='last_seq'") as cur:
        row = await cur.fetchone()
    meta_seq = int(row[0]) if row else 0
    async with db.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM outbox_items),0),"
        " coalesce((SELECT max(seq) FROM readings),0))"
    ) as cur:
        row = await cur.fetchone()
    return max(meta_seq, int(row[0]) if row and row[0] is not None else 0)


async def write_state(db: aiosqlite.Connection, seqs: Iterable[int], seq: int) -> None:
    """Write the state rows of the readings numbered ``seqs`` (the newest of each series
    since the table was last written) and that it now holds every reading up to ``seq``
    (inside the caller's transaction)."""
    await db.executemany(UPSERT_STATE, [(n,) for n in seqs])
    await meta_put(db, META_STATE, str(seq))


async def state_behind(db: aiosqlite.Connection) -> dict[int, int]:
    """Series -> its newest reading committed after the state table was last written (by
    a run that stopped before writing it)."""
    sql = f"SELECT series, max(seq) FROM readings WHERE seq > {STATE_AFTER} GROUP BY series"  # noqa: S608 - constant text
    return {int(r[0]): int(r[1]) for r in await db.execute_fetchall(sql)}


_T = TypeVar("_T", Reading, Event)


def _with_seq(item: _T, seq: int) -> _T:
    if type(item) is Reading:
        # the hot path: a direct constructor call is several times faster than replace()
        return Reading(
            item.device_id, item.metric, item.value, item.unit, item.stamp, item.source, seq
        )
    return dataclasses.replace(item, seq=seq)
