"""The files around the database: telling a usable database from a corrupt or foreign one,
moving a bad one aside (never deleting it), and the sequence reservation side file."""

from __future__ import annotations

import enum
import logging
import os
import shutil
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gateway.errors import StoreError
from gateway.store.schema import APPLICATION_ID

_LOGGER = logging.getLogger(__name__)

_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def reservation_path(path: Path) -> Path:
    return path.with_name(path.name + ".seq")


class ReservationState(enum.Enum):
    NONE = "none"  #: no file: a new state directory (or the file was deleted)
    RESERVED = "reserved"  #: a run holds it: numbers below ``value`` may have been used
    CLOSED = "closed"  #: the last run closed cleanly after using numbers up to ``value``
    LEGACY = "legacy"  #: an older migw's file: numbers below ``value`` may have been used
    UNREADABLE = "unreadable"  #: garbled: what was used is unknown


@dataclass(frozen=True, slots=True)
class Reservation:
    """The sequence reservation file ``<db>.seq``: ``reserved N`` while a run may use
    numbers below N (written and fsynced before any of them is used), ``closed N`` after a
    clean close that used numbers up to N."""

    state: ReservationState
    value: int = 0

    @property
    def used_up_to(self) -> int:
        """Every number handed out so far is at most this."""
        if self.state is ReservationState.CLOSED:
            return self.value
        return max(0, self.value - 1)


def read_reservation(path: Path) -> Reservation:
    try:
        text = reservation_path(path).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return Reservation(ReservationState.NONE)
    except (OSError, UnicodeDecodeError):
        return Reservation(ReservationState.UNREADABLE)
    word, _, number = text.rpartition(" ")
    state = {
        "": ReservationState.LEGACY,
        "reserved": ReservationState.RESERVED,
        "closed": ReservationState.CLOSED,
    }.get(word)
    if state is None or not number.isdigit():
        return Reservation(ReservationState.UNREADABLE)
    return Reservation(state, int(number))


def write_reservation(path: Path, reservation: Reservation) -> None:
    """Durably replace the reservation file (write, fsync, rename, fsync the directory)."""
    target = reservation_path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{reservation.state.value} {reservation.value}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dirfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


# ---------------------------------------------------------------------- the WAL after a crash
# Layouts from SQLite's file format documentation (fileformat2.html, "WAL file format") and
# wal.c's WalIndexHdr: a 32-byte big-endian WAL header (magic, version, page size, checkpoint
# sequence, salt-1, salt-2, checksum-1, checksum-2), then frames of a 24-byte header (page
# number, database size after a commit or 0, salt-1, salt-2, checksum-1, checksum-2) and a
# page. The -shm file starts with two copies of a 48-byte index header in native byte order
# whose mxFrame (offset 16) is the last frame of the last committed transaction, published
# only after that transaction's frames were written (and, with synchronous=FULL, synced).

_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_VERSION = 3007000
_WAL_HEADER = 32
_FRAME_HEADER = 24
_SHM_HEADER = 48


def _checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _committed_frames(shm: Path) -> tuple[int, tuple[int, int]] | None:
    """(mxFrame, salts) from the WAL index, or None when it is absent or not consistent."""
    try:
        with shm.open("rb") as fh:
            head = fh.read(2 * _SHM_HEADER)
    except OSError:
        return None
    if len(head) < 2 * _SHM_HEADER or head[:_SHM_HEADER] != head[_SHM_HEADER:]:
        return None
    version, _, _, is_init = struct.unpack_from("=IIIB", head)
    if version != _WAL_VERSION or not is_init:
        return None
    max_frame = struct.unpack_from("=I", head, 16)[0]
    salts = struct.unpack_from(">II", head, 32)  # copied bytewise from the WAL header
    return max_frame, (salts[0], salts[1])


def inspect_wal(path: Path) -> str | None:
    """What is wrong with the write-ahead log left by a run that did not close cleanly, or
    None when nothing is (call it before any SQLite connection opens the database: the
    first one rebuilds the index and may checkpoint and delete the log).

    Finds a log that is missing, whose header is garbled, or that holds fewer valid frames
    than its index says were committed (garbled or truncated frames). SQLite itself would
    silently ignore the bad part and go on with an older database."""
    wal = path.with_name(path.name + "-wal")
    try:
        with wal.open("rb") as fh:
            return _check_wal(fh, _committed_frames(path.with_name(path.name + "-shm")))
    except FileNotFoundError:
        return "the write-ahead log is missing"
    except OSError as exc:
        return f"the write-ahead log cannot be read ({exc})"


def _check_wal(fh: BinaryIO, index: tuple[int, tuple[int, int]] | None) -> str | None:
    head = fh.read(_WAL_HEADER)
    if len(head) < _WAL_HEADER:
        if index is not None and index[0] > 0:
            return f"the write-ahead log is truncated ({index[0]} frame(s) were committed)"
        return None
    magic, version, page_size, _, salt1, salt2, c0, c1 = struct.unpack(">8I", head)
    big_endian = magic == _WAL_MAGIC[1]
    if (
        magic not in _WAL_MAGIC
        or version != _WAL_VERSION
        or page_size < 512
        or page_size & (page_size - 1)
        or _checksum(head[:24], big_endian) != (c0, c1)
    ):
        return "the write-ahead log's header is garbled"
    if index is None or index[1] != (salt1, salt2):
        # no index, or one from before the log restarted (a crash between the two writes):
        # nothing says what was committed; SQLite recovers every valid frame
        return None
    max_frame = index[0]
    sums = (c0, c1)
    valid = 0
    while valid < max_frame:
        frame = fh.read(_FRAME_HEADER + page_size)
        if len(frame) < _FRAME_HEADER + page_size:
            break
        fsalt1, fsalt2, f0, f1 = struct.unpack_from(">4I", frame, 8)
        if (fsalt1, fsalt2) != (salt1, salt2):
            break
        sums = _checksum(frame[:8], big_endian, *sums)
        sums = _checksum(frame[_FRAME_HEADER:], big_endian, *sums)
        if sums != (f0, f1):
            break
        valid += 1
    if valid < max_frame:
        return (
            f"the write-ahead log holds {valid} valid frame(s) of the {max_frame} committed"
            " (garbled or truncated)"
        )
    return None


def keep_aside(path: Path) -> list[Path]:
    """Copy the write-ahead log and its index to ``<name>-wal.damaged-<UTC time>`` (SQLite
    will use what is valid of them and then overwrite them). Returns the copies."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept: list[Path] = []
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if not side.exists():
            continue
        target = _free_name(side.with_name(f"{side.name}.damaged-{stamp}"))
        shutil.copy2(side, target)
        kept.append(target)
    return kept


def _free_name(target: Path) -> Path:
    n = 1
    candidate = target
    while candidate.exists():
        candidate = target.with_name(f"{target.name}-{n}")
        n += 1
    return candidate


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
    target = _free_name(path.with_name(f"{path.name}.corrupt-{stamp}"))
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


@dataclass(slots=True)
class OpenCheck:
    """What the files said before the database was opened."""

    reservation: Reservation
    #: Whether the database file held data.
    existed: bool
    #: Where an unusable database was moved (a new one is then created).
    moved: Path | None
    #: What was found wrong (logged at ERROR, kept for health and in ``meta``).
    damage: list[str]

    def numbers_used(self, path: Path, stored: int, reserve: int) -> int:
        """Numbering continues above what this returns, given the database's own last
        seq ``stored``; a database behind the numbers handed out is damage."""
        reservation = self.reservation
        used = reservation.used_up_to
        if reservation.state is ReservationState.UNREADABLE:
            used = stored + reserve  # whatever a lost reservation covered
        if (
            stored < used
            and reservation.state is ReservationState.CLOSED
            and self.existed
            and self.moved is None
        ):
            self.damage.append(
                f"the database ends at #{stored} but numbers up to #{used} were handed"
                " out (an older copy restored, or writes lost)"
            )
        return max(stored, used)


def check_at_open(path: Path) -> OpenCheck:
    """Consult the reservation file, inspect a write-ahead log an unclean stop left (a
    damaged one is copied aside first), and move an unusable database aside (blocking:
    run it in a thread)."""
    reservation = read_reservation(path)
    existed = has_data(path)
    damage: list[str] = []
    if reservation.state is ReservationState.UNREADABLE:
        damage.append(f"the sequence reservation file {reservation_path(path)} is unreadable")
    elif reservation.state is ReservationState.RESERVED and existed:
        # the last run did not close: was its write-ahead log lost or damaged?
        wal = inspect_wal(path)
        if wal is not None:
            kept = keep_aside(path)
            where = f" (copied to {', '.join(p.name for p in kept)})" if kept else ""
            damage.append(f"{wal} after an unclean stop{where}")
    moved: Path | None = None
    problem = check_existing(path)
    if problem is not None:
        moved = move_aside(path)
        _LOGGER.error(
            "state database %s is unusable (%s): moved it to %s and started a new one",
            path,
            problem,
            moved,
        )
    elif not existed and reservation.used_up_to > 0:
        damage.append("the database file is missing")
    return OpenCheck(reservation, existed, moved, damage)
