"""Write transactions on the writer's connection: one at a time, each whole or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

import aiosqlite

_LOGGER = logging.getLogger(__name__)


class WriteTransactions:
    """``async with transactions() as db``: BEGIN IMMEDIATE ... COMMIT under a lock (the
    ingest writer's commits and the sync agent's statements are serialised), ROLLBACK on
    any exception."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[aiosqlite.Connection]:
        """Cancellation can strike while a statement runs in aiosqlite's thread (the BEGIN
        may then have happened without us knowing): every exit path that did not commit
        rolls back, and a transaction left open by anything else is rolled back before we
        begin."""
        db = self._db
        async with self._lock:
            try:
                if db.in_transaction:
                    _LOGGER.warning("rolling back a transaction left open")
                    await db.execute("ROLLBACK")
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                # shielded: a second cancellation must not leave the transaction open
                await asyncio.shield(_rollback(db))
                raise


async def _rollback(db: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error, ValueError):
        if db.in_transaction:
            await db.execute("ROLLBACK")


def transient(exc: BaseException) -> bool:
    """Locked, busy, disk full, I/O: worth retrying. Anything else will fail again."""
    return isinstance(exc, sqlite3.OperationalError | OSError)
