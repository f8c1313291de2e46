"""Queries over a state database connection: the service's read connection, or the CLI's
read-only view when the service is down."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import StoreCorruptError, StoreError
from gateway.model import Device, Value
from gateway.store import outbox
from gateway.store.codec import decode_value
from gateway.store.devices import DEVICE_COLS, device_from_row
from gateway.store.outbox import OutboxRow, OutboxStats
from gateway.store.schema import APPLICATION_ID, SCHEMA_VERSION, STATE_AFTER, meta_get

#: The ``state`` table's rows of a device, and its readings since the table was written.
_STATE = (
    "SELECT metric, value, unit, ts, seq FROM state WHERE device_id = ? UNION ALL"  # noqa: S608 - constant text
    " SELECT s.metric, r.value, nullif(s.unit, char(0)), r.ts, r.seq"
    f" FROM readings r JOIN series s ON s.id = r.series WHERE r.seq > {STATE_AFTER}"
    " AND s.device_id = ? AND s.metric != ''"
)


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
        return await outbox.fetch(self._rdb, limit, after=after_seq, kind=kind)

    async def outbox_stats(self) -> OutboxStats:
        return await outbox.stats(self._rdb)

    async def meta_get(self, key: str) -> str | None:
        return await meta_get(self._rdb, key)

    async def devices(self) -> list[Device]:
        async with self._rdb.execute(
            f"SELECT {DEVICE_COLS} FROM devices ORDER BY id"  # noqa: S608 - constant columns
        ) as cur:
            rows = await cur.fetchall()
        return [device_from_row(r) for r in rows]

    async def device_ids(self) -> set[str]:
        """The devices the database holds a record or a state of (what ingest counts)."""
        async with self._rdb.execute(
            "SELECT id FROM devices UNION SELECT device_id FROM state"
        ) as cur:
            rows = await cur.fetchall()
        return {str(r[0]) for r in rows}

    async def device(self, device_id: str) -> Device | None:
        async with self._rdb.execute(
            f"SELECT {DEVICE_COLS} FROM devices WHERE id = ?",  # noqa: S608 - constant columns
            (device_id,),
        ) as cur:
            row = await cur.fetchone()
        return device_from_row(row) if row else None

    async def state(self, device_id: str) -> dict[str, tuple[Value, str | None, float, int]]:
        """Latest value of every metric of a device: metric -> (value, unit, ts, seq)."""
        async with self._rdb.execute(_STATE, (device_id, device_id)) as cur:
            rows = await cur.fetchall()
        latest: dict[str, Any] = {}
        for r in rows:
            if r[0] not in latest or r[4] > latest[r[0]][4]:
                latest[r[0]] = r
        return {m: (decode_value(r[1]), r[2], r[3], r[4]) for m, r in sorted(latest.items())}

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
        async with db.execute("PRAGMA user_version") as cur:
            version_row = await cur.fetchone()
    except sqlite3.Error as exc:
        await db.close()
        raise StoreCorruptError(f"cannot read {path}: {exc}") from exc
    if row is None or row[0] != APPLICATION_ID:
        await db.close()
        raise StoreCorruptError(f"{path} is not a migw state database")
    version = int(version_row[0]) if version_row else 0
    if version != SCHEMA_VERSION:
        # read-only: the service migrates the file when it opens it (never the CLI)
        await db.close()
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{path} is from an earlier migw (schema {version}, this one reads"
                f" {SCHEMA_VERSION}); start the service once to upgrade it"
            )
        raise StoreError(
            f"{path} is from a newer migw (schema {version}, this one reads {SCHEMA_VERSION})"
        )
    return StateReader(db)
