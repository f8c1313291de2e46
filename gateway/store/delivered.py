"""Which rows of ``readings`` are in the outbox: those above the delivered watermark
(``meta`` ``outbox.delivered``) that no range of ``outbox_gone`` covers. Taking readings out
of the outbox (acknowledged, dropped, expired, dead-lettered) records a range, merged into
the watermark once no reading before it is left; retention deletes a row only once it is
out of both the history and the outbox. All of it runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from gateway.store.schema import (
    DELIVERED,
    META_DELIVERED,
    META_HISTORY_AFTER,
    PENDING_READING,
    meta_put,
)


async def watermark(db: aiosqlite.Connection) -> int:
    async with db.execute(f"SELECT {DELIVERED}") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def remove(db: aiosqlite.Connection, ranges: Iterable[tuple[int, int]]) -> int:
    """Take the rows of inclusive (first, last) seq ranges out of the outbox (inside the
    caller's transaction). Returns how many rows were in it."""
    delivered = await watermark(db)
    removed = 0
    for start, last in sorted(ranges):
        cur = await db.execute("DELETE FROM outbox_items WHERE seq BETWEEN ? AND ?", (start, last))
        removed += max(cur.rowcount, 0)
        first = max(start, delivered + 1)
        if first > last:
            continue
        async with db.execute(
            f"SELECT count(*) FROM readings r WHERE r.seq BETWEEN ? AND ? AND {PENDING_READING}",  # noqa: S608 - constant text
            (first, last),
        ) as cur:
            row = await cur.fetchone()
        removed += int(row[0]) if row else 0
        await _add_gone(db, first, last)
    await _advance(db, delivered)
    return removed


async def _add_gone(db: aiosqlite.Connection, first: int, last: int) -> None:
    """Record a range in ``outbox_gone``, merged with the ranges it touches (they never
    overlap)."""
    async with db.execute(
        "SELECT first, last FROM outbox_gone WHERE first <= ? ORDER BY first DESC LIMIT 1",
        (first,),
    ) as cur:
        prev = await cur.fetchone()
    if prev is not None and int(prev[1]) >= first - 1:
        first, last = int(prev[0]), max(last, int(prev[1]))
    async with db.execute(
        "SELECT max(last) FROM outbox_gone WHERE first BETWEEN ? AND ?", (first, last + 1)
    ) as cur:
        row = await cur.fetchone()
    if row is not None and row[0] is not None:
        last = max(last, int(row[0]))
    await db.execute("DELETE FROM outbox_gone WHERE first BETWEEN ? AND ?", (first, last + 1))
    await db.execute("INSERT INTO outbox_gone (first, last) VALUES (?, ?)", (first, last))


async def _advance(db: aiosqlite.Connection, delivered: int) -> None:
    """Move the delivered watermark over the ranges of ``outbox_gone`` that no reading in
    the outbox precedes."""
    mark = delivered
    while True:
        async with db.execute("SELECT first, last FROM outbox_gone ORDER BY first LIMIT 1") as cur:
            gone = await cur.fetchone()
        if gone is None:
            break
        async with db.execute(
            "SELECT seq FROM readings WHERE seq > ? ORDER BY seq LIMIT 1", (mark,)
        ) as cur:
            nxt = await cur.fetchone()
        if nxt is not None and int(nxt[0]) < int(gone[0]):
            break  # a reading still in the outbox
        mark = max(mark, int(gone[1]))
        await db.execute("DELETE FROM outbox_gone WHERE first = ?", (gone[0],))
    if mark != delivered:
        await meta_put(db, META_DELIVERED, str(mark))


async def prune_history(db: aiosqlite.Connection, keep: int) -> None:
    """Keep the newest ``keep`` readings in the history (inside the caller's transaction);
    older ones stay in ``readings`` (hidden from it) until they leave the outbox."""
    async with db.execute(
        "SELECT seq FROM readings ORDER BY seq DESC LIMIT 1 OFFSET ?", (keep,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return
    cutoff = int(row[0])
    await db.execute("DELETE FROM readings WHERE seq <= min(?, ?)", (cutoff, await watermark(db)))
    await meta_put(db, META_HISTORY_AFTER, str(cutoff))


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Inclusive (first, last) runs of consecutive sequence numbers."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


async def skip_to(db: aiosqlite.Connection, seq: int) -> None:
    """Take every reading up to ``seq`` out of the outbox."""
    if seq > await watermark(db):
        await move_watermark(db, seq)


async def move_watermark(db: aiosqlite.Connection, seq: int, *, gone: bool = True) -> None:
    """Move the watermark up to ``seq`` (above it); ``gone``: whether a range of
    ``outbox_gone`` may start at or below ``seq`` (False spares looking)."""
    if gone:
        await db.execute("DELETE FROM outbox_gone WHERE last <= ?", (seq,))
        await db.execute("UPDATE outbox_gone SET first = ? WHERE first <= ?", (seq + 1, seq))
    await meta_put(db, META_DELIVERED, str(seq))
