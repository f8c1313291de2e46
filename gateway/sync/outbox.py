"""The sync agent's outbox policy: what to send, what to drop when the outbox is over its
bound, what expires, what is dead-lettered, and re-stamping after the clock is synchronised.

The statements are the store's (:class:`gateway.store.outbox.OutboxTable`): each runs in a
write transaction of the store, so a read never sees the half-written transaction of the
ingest writer (whose sequence numbers are not yet "reported stored"), and counters persisted
in ``meta`` change in the same transaction as the rows they count.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from drivers.timing import check_timing
from gateway.metrics import METRICS, base_name
from gateway.store import OUTBOX_EVENT, OutboxRow, OutboxStats, Store

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """How the outbox policy scans (tests shrink the chunks through ``SyncTiming.outbox``)."""

    #: Rows read per query while looking for rows to drop or expire.
    scan_chunk: int = 5000
    #: Chunks one TTL pass reads at most; the next pass resumes after the last one.
    expire_scan_chunks: int = 20
    #: After the outbox overflows, free down to this fraction of the bound (hysteresis:
    #: the bound is not enforced on every commit).
    low_water: float = 0.95

    def __post_init__(self) -> None:
        check_timing(self)
        if self.low_water > 1:
            raise ValueError(f"OutboxLimits.low_water must be at most 1, not {self.low_water!r}")


#: Readings of these metrics are state changes (door opened, leak, smoke, relay switched):
#: like button events they are the last to be dropped. All boolean metrics.
PRIORITY_METRICS = frozenset(m.name for m in METRICS.values() if m.kind == "bool")

META_DROPPED = "sync.dropped"
META_EXPIRED = "sync.expired"
META_BATCH = "sync.batch"
META_DEAD = "sync.dead_letters"

Strategy = Literal["drop_oldest", "reject_new"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def run_to_end(
    aw: Coroutine[Any, Any, _R], what: str, on_late_failure: Callable[[], None] | None = None
) -> _R:
    """``await asyncio.shield(aw)``, and when the caller is cancelled while ``aw`` runs on,
    a later failure of ``aw`` is logged (WARNING) and counted through ``on_late_failure``
    instead of being left as "Task exception was never retrieved". The caller's
    cancellation is re-raised as it came."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(functools.partial(_late_outcome, what, on_late_failure))
        raise


def _late_outcome(
    what: str, on_late_failure: Callable[[], None] | None, task: asyncio.Future[Any]
) -> None:
    if task.cancelled():
        return
    exc = task.exception()  # retrieved: no "never retrieved" complaint
    if exc is None:
        return
    if on_late_failure is not None:
        on_late_failure()
    _LOGGER.warning(
        "%s failed after its caller was cancelled: %s: %s", what, type(exc).__name__, exc
    )


def _atomic(fn: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """Run a store operation to completion even if its caller is cancelled.

    aiosqlite runs each statement in its own thread: a task cancelled while awaiting
    ``BEGIN`` leaves the statement executed and the transaction open, and every later
    ``BEGIN`` of the store then fails. Shielding keeps BEGIN..COMMIT whole; a failure after
    the caller is gone is logged and counted in :attr:`Outbox.late_failures`.
    """

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        owner = args[0] if args else None
        count = owner.count_late_failure if isinstance(owner, Outbox) else None
        return await run_to_end(fn(*args, **kwargs), f"outbox {fn.__name__}", count)

    return wrapper


def is_priority(kind: int, body: str) -> bool:
    if kind == OUTBOX_EVENT:
        return True
    try:
        metric = json.loads(body).get("metric")
    except (ValueError, AttributeError):
        return False
    return isinstance(metric, str) and base_name(metric) in PRIORITY_METRICS


@dataclass(slots=True)
class Counters:
    dropped: int = 0
    expired: int = 0
    dead_letters: int = 0
    batch: int = 0


class Outbox:
    def __init__(self, store: Store, limits: OutboxLimits | None = None) -> None:
        self.store = store
        self.limits = limits or OutboxLimits()
        self.counters = Counters()
        #: Statements that failed after their caller was cancelled (logged at WARNING).
        self.late_failures = 0
        #: Where the next TTL pass starts (0: the head; else after a bounded pass).
        self._expire_cursor = 0

    def count_late_failure(self) -> None:
        self.late_failures += 1

    @_atomic
    async def load(self) -> None:
        c = self.counters
        values, c.dead_letters = await self.store.outbox.counters(
            (META_DROPPED, META_EXPIRED, META_BATCH)
        )
        c.dropped, c.expired, c.batch = (
            values[META_DROPPED],
            values[META_EXPIRED],
            values[META_BATCH],
        )

    @_atomic
    async def depth(self) -> OutboxStats:
        """Exact depth (a full scan of the outbox: call it rarely)."""
        return await self.store.outbox.stats()

    @_atomic
    async def oldest(self) -> tuple[int | None, float | None]:
        return await self.store.outbox.oldest()

    @_atomic
    async def fetch(self, after: int, limit: int, upto: int | None = None) -> list[OutboxRow]:
        """Rows with ``after < seq <= upto`` in sequence order."""
        return await self.store.outbox.fetch(after, limit, upto)

    @_atomic
    async def ack(self, ranges: Sequence[tuple[int, int]]) -> int:
        """Delete delivered rows and persist the batch counter. Returns rows deleted.

        ``ranges`` are inclusive (first, last) seq ranges, one per acknowledged message: a
        message carries every outbox row between its first and last seq (rows are read in
        seq order, and a seq is committed only after every smaller one), so a range delete
        is exact and far cheaper than one statement per row.
        """
        if not ranges:
            return 0
        return await self.store.outbox.delete_ranges(ranges, (META_BATCH, self.counters.batch))

    @_atomic
    async def dead_letter(
        self, rows: Sequence[OutboxRow], reason: str, payload: bytes | None = None
    ) -> None:
        """Move rows to the dead-letter table with the reason and the refused payload."""
        if not rows:
            return
        if payload is None:
            payload = ("\n".join(r.body for r in rows)).encode("utf-8", "replace")
        await self.store.outbox.dead_letter(rows, reason, payload)
        self.counters.dead_letters += 1
        _LOGGER.error(
            "moved %d outbox row(s) (seq %d-%d) to the dead-letter table: %s",
            len(rows),
            rows[0].seq,
            rows[-1].seq,
            reason,
        )

    @_atomic
    async def enforce_bytes(self, max_bytes: int, strategy: Strategy) -> tuple[int, int]:
        """Bring the outbox under ``max_bytes`` (down to ``low_water`` of it). Periodic readings
        go first, events and state changes last; ``drop_oldest`` drops the oldest,
        ``reject_new`` the newest. Returns (rows dropped, bytes freed)."""
        depth = await self.depth()
        if depth.bytes <= max_bytes:
            return 0, 0
        excess = depth.bytes - int(max_bytes * self.limits.low_water)
        victims: list[int] = []
        freed = 0
        newest_first = strategy == "reject_new"
        for priority_pass in (False, True):
            cursor: int | None = None
            while freed < excess:
                chunk = await self.store.outbox.scan(cursor, newest_first, self.limits.scan_chunk)
                if not chunk:
                    break
                cursor = chunk[-1][0]
                for seq, kind, size, body in chunk:
                    if is_priority(kind, body) is priority_pass:
                        victims.append(seq)
                        freed += size
                        if freed >= excess:
                            break
            if freed >= excess:
                break
        if not victims:
            return 0, 0
        dropped = self.counters.dropped + len(victims)
        await self.store.outbox.delete(victims, (META_DROPPED, dropped))
        self.counters.dropped = dropped
        _LOGGER.warning(
            "outbox over %d bytes: dropped %d row(s) (%s, %d bytes)",
            max_bytes,
            len(victims),
            strategy,
            freed,
        )
        return len(victims), freed

    @_atomic
    async def expire(self, cutoff: float) -> tuple[int, int]:
        """Delete rows stamped before ``cutoff`` (wall time; the caller only calls this with
        a synchronised clock). Only rows with a trustworthy stamp expire: a row stamped
        before NTP sync in an earlier boot (maybe "1970") is kept, bounded by bytes only.
        Rows are scanned oldest first, past untrusted rows, and the scan stops after the
        first chunk holding a trusted row within the TTL (the rows after it are newer). A
        pass reads at most ``expire_scan_chunks`` chunks; the next one resumes after them, so
        any number of untrusted rows at the head cannot hide expired rows behind them.
        Returns (rows, bytes)."""
        victims: list[int] = []
        freed = 0
        cursor = self._expire_cursor
        for _ in range(self.limits.expire_scan_chunks):
            chunk = await self.store.outbox.scan_stamps(cursor, self.limits.scan_chunk)
            if not chunk:
                cursor = 0
                break
            cursor = chunk[-1][0]
            found = [(seq, size) for seq, ts, size, synced in chunk if synced and ts < cutoff]
            victims += [s for s, _ in found]
            freed += sum(z for _, z in found)
            if any(synced and ts >= cutoff for _, ts, _, synced in chunk):
                cursor = 0
                break
        self._expire_cursor = cursor
        if not victims:
            return 0, 0
        expired = self.counters.expired + len(victims)
        await self.store.outbox.delete(victims, (META_EXPIRED, expired))
        self.counters.expired = expired
        _LOGGER.warning("expired %d outbox row(s) older than the TTL", len(victims))
        return len(victims), freed

    @_atomic
    async def restamp(self, boot: str, offset: float) -> int:
        """Re-stamp rows taken before the clock was synchronised during this boot:
        ``ts = offset + mono`` where ``offset = wall - mono`` of the synchronised clock."""
        n = await self.store.outbox.restamp(boot, offset)
        if n:
            _LOGGER.info("re-stamped %d outbox row(s) taken before the clock was synchronised", n)
        return n

    @_atomic
    async def dead_letters(self, limit: int = 20) -> list[dict[str, Any]]:
        return await self.store.outbox.dead_letters(limit)
