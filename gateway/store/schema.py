"""The state database's schema, its migrations and the connection settings.

Tables (schema version :data:`SCHEMA_VERSION`, migrated by ``PRAGMA user_version``):
``devices``; ``state`` (latest value per device and metric); ``readings`` (bounded recent
readings, also seen through the view ``history``); ``outbox`` (what the sync agent has not
yet delivered); ``series`` and ``boots`` (the (device, metric, unit) and the kernel boot ids
that rows refer to by number); ``dead_letter``; ``meta``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import aiosqlite

from gateway.errors import StoreError

_LOGGER = logging.getLogger(__name__)

#: ``PRAGMA application_id``: tells our database from a foreign SQLite file ("MiGW").
APPLICATION_ID = 0x4D694757
SCHEMA_VERSION = 3
PAGE_SIZE = 1024

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
    # 1 -> 2: fewer bytes per reading (SD card wear, see docs/architecture.md): no
    # (kind, seq) index, the boot id as a number into ``boots`` instead of 36 characters
    # per row; bodies written from now on leave out the device (it has its own column)
    (
        "DROP INDEX outbox_kind",
        "CREATE TABLE boots (id INTEGER PRIMARY KEY, boot TEXT NOT NULL UNIQUE)",
        "INSERT OR IGNORE INTO boots (boot) SELECT DISTINCT boot FROM outbox",
        """CREATE TABLE outbox_v2 (
            seq INTEGER PRIMARY KEY,
            kind INTEGER NOT NULL,
            device_id TEXT NOT NULL,
            body TEXT NOT NULL,
            ts REAL NOT NULL,
            boot INTEGER NOT NULL,
            mono REAL NOT NULL,
            synced INTEGER NOT NULL,
            size INTEGER NOT NULL
        )""",
        (
            "INSERT INTO outbox_v2 SELECT o.seq, o.kind, o.device_id, o.body, o.ts, b.id,"
            " o.mono, o.synced, o.size FROM outbox o JOIN boots b ON b.boot = o.boot"
        ),
        "DROP TABLE outbox",
        "ALTER TABLE outbox_v2 RENAME TO outbox",
    ),
    # 2 -> 3: an outbox row names its (device, metric, unit) by number in ``series``; a
    # reading's body is its value's JSON text, an event's its JSON without the device
    (
        """CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            metric TEXT NOT NULL,
            unit TEXT NOT NULL,
            UNIQUE (device_id, metric, unit)
        )""",
        # readings whose body is a JSON object with a metric; anything else (events, a
        # corrupt body) keeps its body under the device's own series (metric '')
        """CREATE TEMP TABLE old AS SELECT seq, kind, device_id, body, ts, boot, mono,
            synced, size,
            CASE WHEN kind = 0 AND json_valid(body) AND json_type(body, '$.metric') = 'text'
                 AND json_type(body, '$.value') IS NOT NULL THEN 1 ELSE 0 END AS parsed
            FROM outbox""",
        """INSERT OR IGNORE INTO series (device_id, metric, unit)
            SELECT device_id, CASE WHEN parsed THEN json_extract(body, '$.metric') ELSE '' END,
                CASE WHEN parsed THEN coalesce(json_extract(body, '$.unit'), char(0))
                    ELSE char(0) END
            FROM old""",
        "DROP TABLE outbox",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            kind INTEGER NOT NULL,
            series INTEGER NOT NULL,
            body TEXT NOT NULL,
            ts REAL NOT NULL,
            boot INTEGER NOT NULL,
            mono REAL NOT NULL,
            synced INTEGER NOT NULL,
            size INTEGER NOT NULL
        )""",
        """INSERT INTO outbox SELECT o.seq, o.kind, s.id,
            CASE WHEN o.parsed THEN o.body -> '$.value' ELSE o.body END,
            o.ts, o.boot, o.mono, o.synced, o.size
            FROM old o JOIN series s ON s.device_id = o.device_id
            AND s.metric = CASE WHEN o.parsed THEN json_extract(o.body, '$.metric') ELSE '' END
            AND s.unit = CASE WHEN o.parsed THEN coalesce(json_extract(o.body, '$.unit'), char(0))
                ELSE char(0) END""",
        "DROP TABLE temp.old",
        # history: one compact row per reading in ``readings``; ``history`` stays as a view
        # (with a delete trigger) for the queries that name it
        """INSERT OR IGNORE INTO series (device_id, metric, unit)
            SELECT DISTINCT h.device_id, h.metric, coalesce(st.unit, char(0))
            FROM history h LEFT JOIN state st
            ON st.device_id = h.device_id AND st.metric = h.metric""",
        """CREATE TABLE readings (
            seq INTEGER PRIMARY KEY,
            series INTEGER NOT NULL,
            value TEXT NOT NULL,
            ts REAL NOT NULL
        )""",
        """INSERT INTO readings SELECT h.seq, min(s.id), h.value, h.ts
            FROM history h JOIN series s ON s.device_id = h.device_id AND s.metric = h.metric
            GROUP BY h.seq""",
        "DROP TABLE history",
        """CREATE VIEW history (seq, device_id, metric, value, ts) AS
            SELECT r.seq, s.device_id, s.metric, r.value, r.ts
            FROM readings r JOIN series s ON s.id = r.series""",
        """CREATE TRIGGER history_delete INSTEAD OF DELETE ON history
            BEGIN DELETE FROM readings WHERE seq = OLD.seq; END""",
    ),
)


async def configure(db: aiosqlite.Connection) -> None:
    """WAL mode with ``synchronous=FULL``: a commit is on disk when it returns."""
    # 1 KiB pages for a new database (an existing one keeps its own): each commit rewrites
    # whole its partly filled last pages, so smaller pages write fewer bytes per reading
    await db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    mode = await (await db.execute("PRAGMA journal_mode=WAL")).fetchone()
    if not mode or str(mode[0]).lower() != "wal":
        raise StoreError(f"cannot enable WAL mode (got {mode[0] if mode else None!r})")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA busy_timeout=5000")
    # a smaller autocheckpoint keeps the WAL (and the SD card writes) bounded
    await db.execute("PRAGMA wal_autocheckpoint=1000")


async def migrate(db: aiosqlite.Connection, path: Path) -> None:
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


async def meta_get(db: aiosqlite.Connection, key: str) -> str | None:
    async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def meta_put(db: aiosqlite.Connection, key: str, value: str) -> None:
    """Set a meta key (inside the caller's transaction)."""
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
