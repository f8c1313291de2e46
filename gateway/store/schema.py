"""The state database's schema, its migrations and the connection settings.

Tables (schema version :data:`SCHEMA_VERSION`, migrated by ``PRAGMA user_version``):
``devices``; ``state`` (latest value per device and metric, written every few commits: the
readings after ``meta`` ``state.seq`` are newer); ``readings`` (one row per
reading: the bounded recent history, seen through the view ``history``, and the outbox's
readings until they are delivered); ``outbox_items`` (events, and rows from before schema 4)
and ``outbox_gone`` (ranges of readings out of the outbox above its delivered watermark):
the view ``outbox`` is what the sync agent has not yet delivered; ``series`` and ``boots``
(the (device, metric, unit) and the kernel boot ids that rows refer to by number);
``dead_letter``; ``meta``.
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
SCHEMA_VERSION = 4
PAGE_SIZE = 1024
#: Page cache of each connection, KiB (SQLite's default is 2,000 KiB). The writer's work at
#: each commit (the last pages of ``readings``, ``devices``, ``meta``; ``state`` every few
#: commits) misses more pages at 256 KiB, read back from the OS's file cache at no
#: measurable CPU; the reader's history scans outgrow any cache of a full history. Peak RSS
#: of the 1,000-sensor demo: about 1 MB less (more as the history fills).
CACHE_KIB = 256

#: ``meta`` keys: readings up to this seq are out of the outbox (with ``outbox_gone``)...
META_DELIVERED = "outbox.delivered"
#: ... and readings up to this one out of the history (kept only while undelivered).
META_HISTORY_AFTER = "history.after"
#: ... and the ``state`` table holds every reading up to this one (the newer ones are
#: read from ``readings``: the table is written every few commits, not at each).
META_STATE = "state.seq"


def _meta_int(key: str) -> str:
    return f"coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{key}'), 0)"  # noqa: S608 - constant keys


HISTORY_AFTER = _meta_int(META_HISTORY_AFTER)
STATE_AFTER = _meta_int(META_STATE)
DELIVERED = _meta_int(META_DELIVERED)
#: A row ``r`` of ``readings`` that is in the outbox: above the delivered watermark, and in
#: no range of ``outbox_gone`` (ranges never overlap: the one starting last at or before a
#: seq is the only one that can hold it).
PENDING_READING = (
    f"r.seq > {DELIVERED} AND"  # noqa: S608 - constant text
    f" coalesce((SELECT g.last FROM outbox_gone g"
    " WHERE g.first <= r.seq ORDER BY g.first DESC LIMIT 1), 0) < r.seq"
)


def _outbox_table(name: str, names: str, boot: str) -> str:
    """The outbox table of schemas 1 to 3, naming a row's device (or series) and boot so."""
    return (
        f"CREATE TABLE {name} (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, {names},"
        f" body TEXT NOT NULL, ts REAL NOT NULL, boot {boot} NOT NULL, mono REAL NOT NULL,"
        " synced INTEGER NOT NULL, size INTEGER NOT NULL)"
    )


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
        _outbox_table("outbox", "device_id TEXT NOT NULL", "TEXT"),
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
        _outbox_table("outbox_v2", "device_id TEXT NOT NULL", "INTEGER"),
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
        _outbox_table("outbox", "series INTEGER NOT NULL", "INTEGER"),
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
    # 3 -> 4: one row per reading (SD card wear, see docs/architecture.md). A reading is
    # written once, to ``readings``, with the stamps the outbox needs; the outbox's readings
    # are the rows of ``readings`` above the delivered watermark (meta ``outbox.delivered``)
    # that no range of ``outbox_gone`` covers (acknowledged, dropped, expired or
    # dead-lettered out of order). Events, and every row the outbox held before, stay rows
    # of their own in ``outbox_items``. ``outbox`` and ``history`` are views over them.
    (
        "ALTER TABLE outbox RENAME TO outbox_items",
        "ALTER TABLE readings ADD COLUMN boot INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE readings ADD COLUMN mono REAL NOT NULL DEFAULT 0",
        "ALTER TABLE readings ADD COLUMN synced INTEGER NOT NULL DEFAULT 1",
        # a reading's outbox row size is its series' size plus its value's JSON text
        "ALTER TABLE series ADD COLUMN size INTEGER NOT NULL DEFAULT 48",
        """UPDATE series SET size = 48 + length('{"device":' || json_quote(device_id)
            || ',"metric":' || json_quote(metric) || ',"value":}'
            || CASE WHEN unit = char(0) THEN '' ELSE ',"unit":' || json_quote(unit) END)
            WHERE metric != ''""",
        "CREATE TABLE outbox_gone (first INTEGER PRIMARY KEY, last INTEGER NOT NULL)",
        # every reading stored so far is delivered or (when not) has its row in outbox_items
        """INSERT INTO meta (key, value)
            SELECT 'outbox.delivered', coalesce(max(seq), 0) FROM readings""",
        # the state table holds every reading so far
        """INSERT INTO meta (key, value)
            SELECT 'state.seq', coalesce(max(seq), 0) FROM readings""",
        "DROP VIEW history",
        *(
            (
                "CREATE VIEW history (seq, device_id, metric, value, ts) AS"  # noqa: S608 - constant text
                " SELECT r.seq, s.device_id, s.metric, r.value, r.ts"
                f" FROM readings r JOIN series s ON s.id = r.series WHERE r.seq > {HISTORY_AFTER}"
            ),
            # a forgotten device's readings leave the history, not the outbox: an undelivered
            # one becomes a row of its own first
            """CREATE TRIGGER history_delete INSTEAD OF DELETE ON history BEGIN
                INSERT INTO outbox_items SELECT * FROM outbox WHERE seq = OLD.seq
                    AND NOT EXISTS (SELECT 1 FROM outbox_items WHERE seq = OLD.seq);
                DELETE FROM readings WHERE seq = OLD.seq;
            END""",
            f"""CREATE VIEW outbox (seq, kind, series, body, ts, boot, mono, synced, size) AS
                SELECT seq, kind, series, body, ts, boot, mono, synced, size FROM outbox_items
                UNION ALL
                SELECT r.seq, 0, r.series, r.value, r.ts, r.boot, r.mono, r.synced,
                    length(r.value) + coalesce((SELECT size FROM series WHERE id = r.series), 48)
                FROM readings r WHERE {PENDING_READING}""",  # noqa: S608 - constant text
            # a sequence number is used once across both tables (someone else's rows make
            # the writer's commit fail as a constraint, and it continues above them)
            """CREATE TRIGGER readings_seq BEFORE INSERT ON readings
                WHEN EXISTS (SELECT 1 FROM outbox_items WHERE seq = NEW.seq)
                BEGIN SELECT RAISE(ABORT, 'sequence number already used'); END""",
            """CREATE TRIGGER events_seq BEFORE INSERT ON outbox_items
                WHEN NEW.kind = 1 AND EXISTS (SELECT 1 FROM readings WHERE seq = NEW.seq)
                BEGIN SELECT RAISE(ABORT, 'sequence number already used'); END""",
            # SQL written for the table the outbox was keeps working on the view
            """CREATE TRIGGER outbox_insert INSTEAD OF INSERT ON outbox BEGIN
                INSERT INTO outbox_items VALUES (NEW.seq, NEW.kind, NEW.series, NEW.body,
                    NEW.ts, NEW.boot, NEW.mono, NEW.synced, NEW.size);
            END""",
            """CREATE TRIGGER outbox_delete INSTEAD OF DELETE ON outbox BEGIN
                DELETE FROM outbox_items WHERE seq = OLD.seq;
                INSERT OR IGNORE INTO outbox_gone (first, last) SELECT OLD.seq, OLD.seq
                    WHERE EXISTS (SELECT 1 FROM readings WHERE seq = OLD.seq);
            END""",
        ),
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
    await db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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
