"""Fault injection on the database files: a sequence number is never handed out twice.

A real writer process (tests/crash_writer.py) is SIGKILLed, then its files are damaged the
ways an SD card, a careless copy or a restored backup damage them: the write-ahead log
deleted (with its index), its header garbled, its frames garbled, truncated to a third, or
the main file replaced by an older copy. The next open must number above every number the
killed process reported, log the damage at ERROR, keep the damaged log aside, and say so in
its health reasons and in ``meta`` (for ``migw doctor``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.store import Store
from gateway.store.writer import META_DAMAGE
from tests.crash_writer import spawn
from tests.helpers import reading


def _committed_frames(db: Path) -> int:
    """mxFrame of the WAL index (see gateway/store/files.py for the layout)."""
    head = db.with_name(db.name + "-shm").read_bytes()[:48]
    return int(struct.unpack_from("=I", head, 16)[0])


def _run_and_kill(db: Path, at_least: int) -> list[int]:
    """Run the writer until it reported ``at_least`` stored items, SIGKILL it."""
    proc = spawn(db)
    assert proc.stdout is not None
    seqs: list[int] = []
    try:
        while len(seqs) < at_least:
            line = proc.stdout.readline()
            assert line.startswith(b"stored "), line
            seqs.append(int(line.split()[1]))
    finally:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    seqs += [int(x.split()[1]) for x in out.split(b"\n")[:-1] if x.startswith(b"stored ")]
    return seqs


async def _clean_cycle(db: Path) -> None:
    async with await Store.open(db):
        pass


def _wal(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def _delete_wal(db: Path) -> None:
    _wal(db).unlink()
    db.with_name(db.name + "-shm").unlink()


def _garble_header(db: Path) -> None:
    with _wal(db).open("r+b") as fh:
        fh.write(b"\xa5" * 32)


def _garble_body(db: Path) -> None:
    # inside the page of a frame in the first half of what was committed
    frame = _committed_frames(db) // 2
    with _wal(db).open("r+b") as fh:
        page = int.from_bytes(fh.read(12)[8:12], "big")  # the WAL header's page size
        fh.seek(32 + frame * (24 + page) + 24 + page // 2)
        fh.write(b"\x5a" * 64)


def _truncate_third(db: Path) -> None:
    wal = _wal(db)
    os.truncate(wal, wal.stat().st_size // 3)


FAULTS: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    # name: (damage, words of the reason, damaged files kept aside)
    "wal-and-shm-deleted": (_delete_wal, "write-ahead log is missing", False),
    "wal-header-garbled": (_garble_header, "header is garbled", True),
    "wal-body-garbled": (_garble_body, "valid frame(s) of the", True),
    "wal-truncated-to-a-third": (_truncate_third, "valid frame(s) of the", True),
}


@dataclass(frozen=True)
class _Reopened:
    """What the store said when opened after the damage, having committed one reading."""

    seq: int
    damage: list[str]
    problems: list[str]
    note: str | None


async def _reopen_and_write(db: Path, caplog: pytest.LogCaptureFixture) -> _Reopened:
    got: list[int] = []
    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        async with await Store.open(db) as store:
            store.subscribe(lambda c: got.extend(r.seq for r in c.readings))
            store.add_reading(reading())
            await store.flush()
            problems = store.problems()
            note = await store.meta_get(META_DAMAGE)
            return _Reopened(got[0], list(store.damage), problems, note)


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_damaged_wal_after_kill_never_reuses_a_number(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage, words, kept = FAULTS[fault]
    db = tmp_path / "state.db"
    reported = _run_and_kill(db, 300)
    # a young database: the log has not wrapped, so every fault hits committed frames
    assert _committed_frames(db) >= 4
    damage(db)
    after = await _reopen_and_write(db, caplog)
    assert any(words in d for d in after.damage), after.damage
    assert any(words in p for p in after.problems)
    note = after.note
    assert after.seq > max(reported), f"#{after.seq} was already handed out"
    assert note is not None and words in note
    assert any(r.levelno == logging.ERROR and words in r.getMessage() for r in caplog.records)
    assert bool(list(tmp_path.glob("state.db-wal.damaged-*"))) is kept
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


async def test_an_older_main_file_restored_never_reuses_a_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "state.db"
    _run_and_kill(db, 100)
    await _clean_cycle(db)
    shutil.copy2(db, tmp_path / "backup.db")
    reported = _run_and_kill(db, 300)
    await _clean_cycle(db)  # stopped cleanly after the crash: nothing is wrong yet
    shutil.copy2(tmp_path / "backup.db", db)
    after = await _reopen_and_write(db, caplog)
    assert any("an older copy restored" in d for d in after.damage), after.damage
    assert after.seq > max(reported)
    assert any("an older copy restored" in r.getMessage() for r in caplog.records)


async def test_a_plain_kill_reports_no_damage(tmp_path: Path) -> None:
    """No false alarm: a SIGKILL with the files intact loses nothing and says nothing."""
    db = tmp_path / "state.db"
    reported: list[int] = []
    for _ in range(3):
        reported += _run_and_kill(db, 150)
        async with await Store.open(db) as store:
            assert store.damage == []
            assert store.problems() == []
            assert store.last_seq >= max(reported)
            assert {r.seq for r in await store.outbox_fetch(1_000_000)} >= set(reported)
