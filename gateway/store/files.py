"""The files around the database: telling a usable database from a corrupt or foreign one,
moving a bad one aside (never deleting it), and the sequence reservation side file."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from gateway.errors import StoreError
from gateway.store.schema import APPLICATION_ID

_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def reservation_path(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


def read_reservation(path: Path) -> int:
    """The sequence reservation: every number ever handed out is below it (0: none)."""
    try:
        text = reservation_path(path).read_text(encoding="ascii").strip()
        return max(0, int(text))
    except (OSError, ValueError):
        return 0


def write_reservation(path: Path, value: int) -> None:
    """Durably record a new reservation (once per SEQ_RESERVE numbers: no SD card wear)."""
    target = reservation_path(path)
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


def has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def check_existing(path: Path) -> str | None:
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


def move_aside(path: Path) -> Path:
    """Rename the database (and its -wal/-shm) to ``<name>.corrupt-<UTC time>``."""
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
