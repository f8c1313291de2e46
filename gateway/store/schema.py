"""The state database's schema, its migrations and the connection settings.

Tables (schema version :data:`SCHEMA_VERSION`, migrated by ``PRAGMA user_version``):
``devices``; ``state`` (latest value per device and metric); ``history`` (bounded recent
readings); ``outbox`` (what the sync agent has not yet delivered); ``boots`` (the kernel
boot ids the outbox's rows refer to by number); ``dead_letter``; ``meta``.
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
SCHEMA_VERSION = 2

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
)


async def configure(db: aiosqlite.Connection) -> None:
    """WAL mode with ``synchronous=FULL``: a commit is on disk when it returns."""
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
