"""Outbox upkeep: re-stamping after NTP, TTL expiry, the byte bound, depth figures.

Runs for the agent's whole life, connected or not: the outbox stays within
``outbox_max_bytes`` (``outbox_full`` decides what goes) and ``outbox_ttl_days`` even when no
broker is reachable for weeks.
"""

from __future__ import annotations

import asyncio
import time

from drivers.aio import wait_event
from gateway.sync.deps import SyncDeps


class Upkeep:
    def __init__(self, deps: SyncDeps) -> None:
        self._deps = deps
        self._wake = asyncio.Event()
        #: A row stamped before the clock was synchronised may be in the outbox.
        self.unsynced_seen = True

    def wake(self) -> None:
        """Run a pass now (the outbox went over its byte bound)."""
        self._wake.set()

    async def recount(self) -> None:
        d = await self._deps.outbox.depth()
        f = self._deps.figures
        f.rows, f.bytes, f.events = d.depth, d.bytes, d.events
        f.oldest_seq, f.oldest_ts = d.oldest_seq, d.oldest_ts

    async def run(self) -> None:
        deps = self._deps
        outbox, cfg, figures, timing = deps.outbox, deps.cfg, deps.figures, deps.timing
        last_ttl = -1e9
        last_recount = time.monotonic()
        while True:
            fix = deps.clock_fix()
            if fix.offset is not None and self.unsynced_seen:
                self.unsynced_seen = False
                await outbox.restamp(fix.boot, fix.offset)
            now = time.monotonic()
            if fix.offset is not None and now - last_ttl >= timing.ttl_check_s:
                last_ttl = now
                cutoff = deps.clock.wall() - cfg.outbox_ttl_days * 86400
                rows, _ = await outbox.expire(cutoff)
                if rows:
                    await self.recount()
            if figures.bytes > cfg.outbox_max_bytes:
                await outbox.enforce_bytes(cfg.outbox_max_bytes, cfg.outbox_full)
                await self.recount()
                last_recount = now
            elif now - last_recount >= timing.recount_s:
                last_recount = now
                await self.recount()
            else:
                figures.oldest_seq, figures.oldest_ts = await outbox.oldest()
                if figures.oldest_seq is None:
                    figures.rows = figures.bytes = figures.events = 0
            self._wake.clear()
            await wait_event(self._wake, timing.maintain_s)
