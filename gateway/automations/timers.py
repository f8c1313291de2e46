"""The engine's timers: deadlines by key, the earliest first. Pure (times are parameters).

A key is a tuple naming what the timer does (``("run", run id)``, ``("for", automation,
trigger, ...)``, ``("clock", ...)``, ``("stale", ...)``). Setting a key again moves its
deadline; a heap entry whose deadline no longer matches its key's is stale and skipped.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import ItemsView
from typing import Any

TimerKey = tuple[Any, ...]


class TimerQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._when: dict[TimerKey, float] = {}
        self._tie = itertools.count()
        #: Counts changes (a timer set, cancelled or due): saving them can wait for one.
        self.version = 0

    def __contains__(self, key: TimerKey) -> bool:
        return key in self._when

    def items(self) -> ItemsView[TimerKey, float]:
        return self._when.items()

    def all_keys(self) -> list[TimerKey]:
        """A copy: timers may be set or cancelled while the caller goes through it."""
        return list(self._when)

    def pending(self, prefix: TimerKey) -> list[TimerKey]:
        """The keys that start with ``prefix`` (a trigger's "for" timers)."""
        n = len(prefix)
        return [k for k in self._when if k[:n] == prefix]

    def set(self, key: TimerKey, when: float) -> None:
        self.version += 1
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._tie), key))

    def cancel(self, key: TimerKey) -> None:
        if self._when.pop(key, None) is not None:
            self.version += 1

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if self._when.get(key) == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> tuple[float, TimerKey] | None:
        """The earliest timer due at or before ``now`` (removed), or None."""
        when = self.next_deadline()
        if when is None or when > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._when[key]
        self.version += 1
        return when, key
