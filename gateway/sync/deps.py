"""What the parts of the sync agent share: one :class:`SyncDeps`, built once by the agent.

The pump, the outbox upkeep, the inbound commands, the Home Assistant publisher and each
link session take this one typed context instead of storing the same handful of
dependencies (upstream section, topics, store, outbox, clock, router, timing, counters,
outbox figures) one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.clock import Clock
from gateway.config import UpstreamSection
from gateway.model import Command, CommandResult
from gateway.store import Store
from gateway.sync.figures import OutboxFigures, SyncCounters
from gateway.sync.outbox import Outbox
from gateway.sync.payload import ClockFix, Topics
from gateway.sync.timing import SyncTiming


class CommandRouting(Protocol):
    """Where commands go (``gateway.commands.CommandRouter``)."""

    async def execute(self, device_id: str, command: Command) -> CommandResult: ...

    def owns(self, device_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class SyncDeps:
    """The agent's shared dependencies and live figures (the figures are mutable objects
    shared by reference: the pump, the upkeep and the commit listener update the same ones)."""

    #: The ``[upstream]`` section: batching, outbox bounds, reconnect backoff.
    cfg: UpstreamSection
    topics: Topics
    store: Store
    #: The outbox's policy side over the store's outbox tables.
    outbox: Outbox
    clock: Clock
    router: CommandRouting
    timing: SyncTiming
    counters: SyncCounters = field(default_factory=SyncCounters)
    figures: OutboxFigures = field(default_factory=OutboxFigures)

    def clock_fix(self) -> ClockFix:
        """The boot id and, once the clock is synchronised, the wall-minus-monotonic offset
        that re-stamps rows recorded before."""
        clock = self.clock
        if clock.synchronized():
            return ClockFix(clock.boot_id, clock.wall() - clock.mono())
        return ClockFix(clock.boot_id, None)
