"""The store writer's bounds and timings, passed to :meth:`Store.open` (tests shorten them
there instead of patching module constants)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.timing import check_timing


@dataclass(frozen=True, slots=True)
class StoreLimits:
    #: While commits fail (disk full, I/O errors), pending items are held in memory up to
    #: these bounds (about 8 MB; a queued reading costs about ``item_cost`` bytes of
    #: objects), then new readings are dropped and counted; an event takes the place of
    #: the oldest pending reading.
    max_pending: int = 25_000
    max_pending_bytes: int = 8 * 1024 * 1024
    item_cost: int = 320
    #: A health reason names the drops for this long after the last one.
    drop_reason_s: float = 60.0
    #: After a failed commit, the writer retries after this many seconds (doubling, capped).
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    #: At shutdown, a failing commit is tried this often before pending items are given up,
    #: with this busy timeout.
    close_attempts: int = 3
    close_busy_timeout_ms: int = 500
    #: Sequence numbers are reserved in blocks of this size in a side file.
    seq_reserve: int = 1_000_000
    #: Write the ``state`` table every this many commits (readings since are read from
    #: ``readings``), and at every prune of the history ...
    state_every: int = 10
    #: ... which happens every this many commits.
    prune_every: int = 50
    #: Without an uplink the outbox keeps only its newest this many items: nothing would
    #: ever deliver more, and a newly configured uplink still gets the most recent ones.
    no_uplink_max_rows: int = 1000

    def __post_init__(self) -> None:
        check_timing(self)
