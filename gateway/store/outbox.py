"""The outbox and dead-letter tables: every statement on them, the row encoding and its size.

The sync agent decides what to send, drop, expire or dead-letter
(:mod:`gateway.sync.outbox`); this module is the only one that knows how the rows are laid
out (which readings of ``readings`` are in it is :mod:`gateway.store.delivered`'s part).
Statements of :class:`OutboxTable` each run in their own write transaction of the
store (serialised with the ingest writer, so they never see its half-written batch); the
plain functions run on a caller's connection (the read-only views of the API and the CLI).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiosqlite

from gateway.model import Event, Reading
from gateway.store import delivered
from gateway.store.codec import NO_UNIT, encode_value, json_str
from gateway.store.schema import DELIVERED, PENDING_READING, meta_put
from gateway.store.sql import where

OUTBOX_READING = 0
OUTBOX_EVENT = 1

#: What a row costs besides its body (seq, stamps, boot id, SQLite's cell overhead): the
#: unit of the outbox's byte bound.
ROW_OVERHEAD = 48

#: ``meta`` key: "0" when the service runs without an uplink (the outbox is kept small).
META_UPLINK = "outbox.uplink"


class OutboxRow(NamedTuple):
    """One undelivered reading or event. ``body`` is its compact JSON (without seq/ts).

    A named tuple, not a frozen dataclass: the sync agent reads every row of a backlog
    (a million after a long outage), and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost 1.0 us of the 1.4 us a row took to build.
    """

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
    #: False when the service runs without an uplink (the outbox is then kept small).
    uplink: bool = True


def reading_body(r: Reading) -> str:
    """The outbox body of a reading: what the sync agent publishes besides seq/ts/boot/mono."""
    unit = "" if r.unit is None else f',"unit":{json_str(r.unit)}'
    return (
        f'{{"device":{json_str(r.device_id)},"metric":{json_str(r.metric)},'
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


def row_size(body: str) -> int:
    """The size a row counts for in the outbox's byte bound."""
    return len(body) + ROW_OVERHEAD


#: (device, metric, unit) of a series; an event's is (device, "", NO_UNIT).
SeriesKey = tuple[str, str, str]


def reading_series(r: Reading) -> SeriesKey:
    return (r.device_id, r.metric, NO_UNIT if r.unit is None else r.unit)


def event_series(e: Event) -> SeriesKey:
    return (e.device_id, "", NO_UNIT)


def series_size(key: SeriesKey) -> int:
    """``series.size``: the outbox row size of a reading of this series without its value's
    JSON text (a reading's size is this plus the length of that text)."""
    device_id, metric, unit = key
    if not metric:
        return ROW_OVERHEAD  # a device's own series (events): their rows carry their size
    return row_size(_body(OUTBOX_READING, "", device_id, metric, unit))


def event_row(seq: int, e: Event, series: int, boot: int) -> tuple[Any, ...]:
    body = event_body(e)
    stored = _without_device(body, e.device_id)
    s = e.stamp
    return (seq, OUTBOX_EVENT, series, stored, s.wall, boot, s.mono, int(s.synced), row_size(body))


def _device_key(device_id: str) -> str:
    return '{"device":' + json_str(device_id)


def _without_device(body: str, device_id: str) -> str:
    """An event's body as stored: its leading ``"device"`` member is in its series."""
    key = _device_key(device_id)
    if body.startswith(key + ","):
        return "{" + body[len(key) + 1 :]
    if body == key + "}":
        return "{}"
    return body


def _body(kind: int, stored: str, device_id: str, metric: str, unit: str) -> str:
    """The body as published, from a stored row and its series."""
    if metric:
        # a reading: ``stored`` is its value's JSON text
        unit_json = "" if unit == NO_UNIT else f',"unit":{json_str(unit)}'
        return (
            f'{{"device":{json_str(device_id)},"metric":{json_str(metric)},'
            f'"value":{stored}{unit_json}}}'
        )
    if not stored.startswith("{") or stored.startswith('{"device":'):
        return stored  # as written by schema 1, or corrupt: the sync agent dead-letters it
    return _device_key(device_id) + ("," if len(stored) > 2 else "") + stored[1:]


#: The index of ``size`` in a row of :data:`INSERT`'s parameters.
SIZE_COLUMN = 8
#: An event's row (a reading is a row of ``readings``, see :mod:`gateway.store.schema`).
INSERT = (
    "INSERT INTO outbox_items (seq, kind, series, body, ts, boot, mono, synced, size)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)
# LEFT JOINs: a row whose series is missing (a file edited by hand) is still read, and its
# body (not a JSON object then) gets it dead-lettered instead of waiting forever unseen
_NAMES = (
    "coalesce(s.device_id, ''), {t}.{body}, {t}.ts, coalesce(b.boot, ''), {t}.mono, {t}.synced,"
    " {size}, coalesce(s.metric, ''), coalesce(s.unit, char(0)) FROM {table} {t}"
    " LEFT JOIN series s ON s.id = {t}.series LEFT JOIN boots b ON b.id = {t}.boot"
)
#: The outbox's two parts: (alias, columns and tables, condition of a row in the outbox).
_ITEMS = (
    "o",
    "o.seq, o.kind, " + _NAMES.format(t="o", body="body", size="o.size", table="outbox_items"),
    None,
)
_READINGS = (
    "r",
    f"r.seq, {OUTBOX_READING}, "
    + _NAMES.format(
        t="r", body="value", size="length(r.value) + coalesce(s.size, 48)", table="readings"
    ),
    PENDING_READING,
)


#: ``tuple.__new__``: a row built from its fields without the named tuple's ``__new__`` call.
_new_row = tuple.__new__


def _row(r: Sequence[Any]) -> OutboxRow:
    body = _body(r[1], r[3], r[2], r[9], r[10])
    row: OutboxRow = _new_row(
        OutboxRow, (r[0], r[1], r[2], body, r[4], r[5], r[6], bool(r[7]), r[8])
    )
    return row


async def _select(
    db: aiosqlite.Connection,
    limit: int,
    *,
    after: int | None = None,
    before: int | None = None,
    upto: int | None = None,
    kind: int | None = None,
    newest_first: bool = False,
) -> list[Sequence[Any]]:
    """Up to ``limit`` outbox rows (``after < seq < before``, ``seq <= upto``, of one kind),
    in seq order or newest first: each part of the outbox is read in its own seq order
    and the two are merged (a query over the view would sort the whole outbox)."""
    parts = [_ITEMS] if kind == OUTBOX_EVENT else [_ITEMS, _READINGS]
    order = "DESC" if newest_first else "ASC"
    got: list[list[Sequence[Any]]] = []
    for t, cols, pending in parts:
        clause, args = where(
            (f"{t}.seq > ?", after),
            (f"{t}.seq < ?", before),
            (f"{t}.seq <= ?", upto),
            (f"{t}.kind = ?", kind if t == "o" else None),
            *((pending,) if pending else ()),
        )
        sql = f"SELECT {cols}{clause} ORDER BY {t}.seq {order} LIMIT ?"
        async with db.execute(sql, [*args, limit]) as cur:
            got.append(list(await cur.fetchall()))
    merged = heapq.merge(*got, key=lambda r: int(r[0]), reverse=newest_first)
    return list(itertools.islice(merged, limit))


async def fetch(
    db: aiosqlite.Connection,
    limit: int,
    *,
    after: int = 0,
    upto: int | None = None,
    kind: int | None = None,
) -> list[OutboxRow]:
    """The oldest rows with ``after < seq <= upto`` (of one kind), in sequence order."""
    return [_row(r) for r in await _select(db, limit, after=after, upto=upto, kind=kind)]


async def stats(db: aiosqlite.Connection) -> OutboxStats:
    """Exact figures (a full scan of the outbox: call it rarely)."""
    async with db.execute(
        "SELECT count(*), coalesce(sum(size),0), coalesce(sum(kind = 1),0) FROM outbox"
    ) as cur:
        row = await cur.fetchone()
    assert row is not None
    seq, ts = await oldest(db)
    async with db.execute("SELECT value FROM meta WHERE key = ?", (META_UPLINK,)) as cur:
        uplink = await cur.fetchone()
    return OutboxStats(
        depth=int(row[0]),
        bytes=int(row[1]),
        oldest_ts=ts,
        oldest_seq=seq,
        events=int(row[2]),
        uplink=uplink is None or uplink[0] != "0",
    )


async def oldest(db: aiosqlite.Connection) -> tuple[int | None, float | None]:
    rows = await _select(db, 1)
    return (int(rows[0][0]), float(rows[0][4])) if rows else (None, None)


#: After the outbox's newest ``?`` rows: the next row's seq (SQLite merges the outbox's two
#: parts in their seq order: no sort, no rows brought to Python), the delivered watermark,
#: and whether any row of ``outbox_items`` and any range of ``outbox_gone`` lie at or below
#: it (so that a trim with nothing to delete costs one round trip to SQLite's thread).
_TRIM = (
    f"SELECT n.seq, {DELIVERED},"  # noqa: S608 - constant text
    " EXISTS (SELECT 1 FROM outbox_items WHERE seq <= n.seq),"
    " EXISTS (SELECT 1 FROM outbox_gone WHERE first <= n.seq)"
    " FROM (SELECT seq FROM outbox_items UNION ALL"
    f" SELECT r.seq FROM readings r WHERE {PENDING_READING} ORDER BY 1 DESC LIMIT 1 OFFSET ?) n"
)


async def keep_newest(db: aiosqlite.Connection, rows: int) -> None:
    """Take all but the newest ``rows`` rows out of the outbox (inside the caller's
    transaction)."""
    found = list(await db.execute_fetchall(_TRIM, (rows,)))
    if not found:
        return
    cutoff, mark, items, gone = (int(v) for v in found[0])
    if items:
        await db.execute("DELETE FROM outbox_items WHERE seq <= ?", (cutoff,))
    if cutoff > mark:
        await delivered.move_watermark(db, cutoff, gone=bool(gone))


Transaction = Callable[[], contextlib.AbstractAsyncContextManager[aiosqlite.Connection]]
#: A ``meta`` counter to set in the same transaction as a change: (key, value).
MetaCount = tuple[str, int] | None


class OutboxTable:
    """The outbox as the sync agent uses it; each call is one write transaction."""

    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    async def stats(self) -> OutboxStats:
        async with self._transaction() as db:
            return await stats(db)

    async def oldest(self) -> tuple[int | None, float | None]:
        async with self._transaction() as db:
            return await oldest(db)

    async def fetch(self, after: int, limit: int, upto: int | None = None) -> list[OutboxRow]:
        async with self._transaction() as db:
            return await fetch(db, limit, after=after, upto=upto)

    async def counters(self, keys: Iterable[str]) -> tuple[dict[str, int], int]:
        """The persisted ``meta`` counters named (0 when absent), and the dead-letter count."""
        out: dict[str, int] = {}
        async with self._transaction() as db:
            for key in keys:
                async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
                    row = await cur.fetchone()
                out[key] = int(row[0]) if row else 0
            async with db.execute("SELECT count(*) FROM dead_letter") as cur:
                row = await cur.fetchone()
        return out, int(row[0]) if row else 0

    async def delete_ranges(self, ranges: Sequence[tuple[int, int]], count: MetaCount) -> int:
        """Delete the rows of inclusive (first, last) seq ranges. Returns rows deleted."""
        async with self._transaction() as db:
            deleted = await delivered.remove(db, ranges)
            await _put(db, count)
        return deleted

    async def delete(self, seqs: Iterable[int], count: MetaCount = None) -> int:
        """Delete rows by seq. Returns how many were named."""
        seqs = list(seqs)
        if not seqs and count is None:
            return 0
        async with self._transaction() as db:
            await delivered.remove(db, delivered.seq_ranges(seqs))
            await _put(db, count)
        return len(seqs)

    async def scan(
        self, cursor: int | None, newest_first: bool, limit: int
    ) -> list[tuple[int, int, int, str]]:
        """(seq, kind, size, body) of up to ``limit`` rows past ``cursor``, in seq order
        or newest first."""
        after, before = (None, cursor) if newest_first else (cursor, None)
        async with self._transaction() as db:
            got = await _select(db, limit, after=after, before=before, newest_first=newest_first)
        rows = [_row(r) for r in got]
        return [(r.seq, r.kind, r.size, r.body) for r in rows]

    async def scan_stamps(self, after: int, limit: int) -> list[tuple[int, float, int, bool]]:
        """(seq, ts, size, synced) of up to ``limit`` rows with ``seq > after``, in order."""
        async with self._transaction() as db:
            rows = await _select(db, limit, after=after)
        return [(int(r[0]), float(r[4]), int(r[8]), bool(r[7])) for r in rows]

    async def restamp(self, boot: str, offset: float) -> int:
        """``ts = offset + mono, synced = 1`` for the unsynchronised rows of a boot."""
        changed = 0
        async with self._transaction() as db:
            for table, pending in (("outbox_items AS r", "1"), ("readings AS r", PENDING_READING)):
                cur = await db.execute(
                    f"UPDATE {table} SET ts = ? + mono, synced = 1"  # noqa: S608 - constant text
                    f" WHERE synced = 0 AND boot = (SELECT id FROM boots WHERE boot = ?)"
                    f" AND {pending}",
                    (offset, boot),
                )
                changed += max(cur.rowcount, 0)
        return changed

    async def dead_letter(self, rows: Sequence[OutboxRow], reason: str, payload: bytes) -> None:
        """Move rows to the dead-letter table with the reason and the refused payload."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO dead_letter (created, reason, first_seq, last_seq, payload)"
                " VALUES (?,?,?,?,?)",
                (time.time(), reason, rows[0].seq, rows[-1].seq, payload),
            )
            await delivered.remove(db, delivered.seq_ranges(r.seq for r in rows))

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        async with (
            self._transaction() as db,
            db.execute(
                "SELECT id, created, reason, first_seq, last_seq, length(payload)"
                " FROM dead_letter ORDER BY id DESC LIMIT ?",
                (limit,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [
            {
                "id": r[0],
                "created": r[1],
                "reason": r[2],
                "first_seq": r[3],
                "last_seq": r[4],
                "bytes": r[5],
            }
            for r in rows
        ]


async def _put(db: aiosqlite.Connection, count: MetaCount) -> None:
    if count is not None:
        await meta_put(db, count[0], str(count[1]))
