"""The automations' own small database, ``automations.db`` in the state directory.

It holds what the state database does not: traces of firings (for ``migw automations
trace`` and the API), pending timers (a "for" or a delay survives a restart), enable/disable
overrides, and the inputs that are not readings (button events, uplink changes) so that a
replay over stored history sees them too. Readings come from the state database's history.

Writes are small and rare (a firing, a button press); the connection is synchronous SQLite
in WAL mode with ``synchronous=NORMAL``: a power cut may lose the last trace, never corrupt
the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.automations.model import Input, Trace
from gateway.store.codec import decode_value, encode_value

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "automations.db"
#: Inputs (events, uplink changes) and traces kept; older rows are pruned.
MAX_INPUTS = 100_000
MAX_TRACES = 10_000

_SCHEMA = (
    (
        "CREATE TABLE IF NOT EXISTS inputs (id INTEGER PRIMARY KEY, ts REAL NOT NULL,"
        " kind TEXT NOT NULL, device TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
        " button INTEGER, seq INTEGER NOT NULL)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS traces (key TEXT PRIMARY KEY, automation TEXT NOT NULL,"
        " at REAL NOT NULL, outcome TEXT NOT NULL, body TEXT NOT NULL)"
    ),
    "CREATE INDEX IF NOT EXISTS traces_auto ON traces (automation, at)",
    "CREATE TABLE IF NOT EXISTS timers (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS enabled (automation TEXT PRIMARY KEY, on_ INTEGER NOT NULL)",
)


def _open_rw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for sql in _SCHEMA:
            db.execute(sql)
        db.commit()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


class Journal:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._writes = 0

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Journal:
        if readonly:
            return cls(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
        try:
            return cls(_open_rw(path))
        except sqlite3.DatabaseError as exc:
            # traces and saved timers only: keep the bad file for a human, start a new one
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            path.rename(aside)
            _LOGGER.error("%s is unusable (%s): moved to %s, starting a new one", path, exc, aside)
            return cls(_open_rw(path))

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db
        self._writes += 1
        if self._writes % 500 == 0:
            with self._db:
                self._db.execute(
                    "DELETE FROM inputs WHERE id <= (SELECT max(id) FROM inputs) - ?",
                    (MAX_INPUTS,),
                )
                self._db.execute(
                    "DELETE FROM traces WHERE key NOT IN"
                    " (SELECT key FROM traces ORDER BY at DESC LIMIT ?)",
                    (MAX_TRACES,),
                )

    # -------------------------------------------------------------- inputs

    def add_input(self, inp: Input) -> None:
        value = encode_value(inp.value) if inp.value is not None else "null"
        with self._write() as db:
            db.execute(
                "INSERT INTO inputs (ts, kind, device, name, value, button, seq)"
                " VALUES (?,?,?,?,?,?,?)",
                (inp.ts, inp.kind, inp.device, inp.name, value, inp.button, inp.seq),
            )

    def inputs(self, since: float | None = None, until: float | None = None) -> list[Input]:
        rows = self._db.execute(
            "SELECT ts, kind, device, name, value, button, seq FROM inputs"
            " WHERE ts >= ? AND ts <= ? ORDER BY id",
            (since if since is not None else -1e18, until if until is not None else 1e18),
        ).fetchall()
        return [
            Input(
                ts=r[0],
                kind=r[1],
                device=r[2],
                name=r[3],
                value=None if r[4] == "null" else decode_value(r[4]),
                button=r[5],
                seq=r[6],
            )
            for r in rows
        ]

    # -------------------------------------------------------------- traces

    def save_trace(self, instance: str, trace: Trace) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO traces (key, automation, at, outcome, body) VALUES (?,?,?,?,?)"
                " ON CONFLICT (key) DO UPDATE SET outcome=excluded.outcome, body=excluded.body",
                (
                    f"{instance}:{trace.run}",
                    trace.automation,
                    trace.at,
                    trace.outcome,
                    json.dumps(trace.to_dict(), separators=(",", ":")),
                ),
            )

    def traces(self, automation: str | None = None, limit: int = 20) -> list[Trace]:
        """The newest traces (of one automation), newest first."""
        if automation is None:
            rows = self._db.execute(
                "SELECT body FROM traces ORDER BY at DESC, key DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT body FROM traces WHERE automation = ? ORDER BY at DESC, key DESC LIMIT ?",
                (automation, limit),
            ).fetchall()
        out: list[Trace] = []
        for (body,) in rows:
            with contextlib.suppress(ValueError, TypeError):
                out.append(Trace.from_dict(json.loads(body)))
        return out

    # -------------------------------------------------------------- timers, enabled

    def save_timers(self, timers: list[dict[str, Any]]) -> None:
        with self._write() as db:
            db.execute("DELETE FROM timers")
            db.executemany(
                "INSERT INTO timers (body) VALUES (?)",
                [(json.dumps(t, separators=(",", ":")),) for t in timers],
            )

    def timers(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (body,) in self._db.execute("SELECT body FROM timers ORDER BY id").fetchall():
            with contextlib.suppress(ValueError):
                value = json.loads(body)
                if isinstance(value, dict):
                    out.append(value)
        return out

    def set_enabled(self, automation: str, on: bool) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO enabled (automation, on_) VALUES (?, ?) ON CONFLICT (automation)"
                " DO UPDATE SET on_ = excluded.on_",
                (automation, int(on)),
            )

    def enabled(self) -> dict[str, bool]:
        rows = self._db.execute("SELECT automation, on_ FROM enabled").fetchall()
        return {str(a): bool(v) for a, v in rows}
