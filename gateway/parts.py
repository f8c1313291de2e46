"""The service's running parts, each under ONE supervisor, and how they are stopped.

:class:`Parts` starts a part's session under its :class:`~drivers.supervisor.Supervisor`
and stops parts explicitly: at a stop, a part's own parts first (the sync agent's broker
links end, collecting their PUBACKs, before the agent flushes the acknowledgements), then
the rest at once, each bounded by its supervisor's ``stop_timeout`` plus
``ServiceTiming.stop_grace_s``; what is still running then is abandoned and named in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from drivers.supervisor import State, Supervisor, Timing
from drivers.timing import check_timing
from gateway.api.timing import ApiTiming
from gateway.driver import Driver, DriverHealth
from gateway.ingest import Ingest
from gateway.store.limits import StoreLimits
from gateway.sync.timing import SyncTiming

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceTiming:
    """The service's timing (seconds); tests shorten it through the constructor."""

    #: Each part's supervisor: backoff (1 s doubling to 60 s, reset after a part ran 30 s)
    #: and the bound on the part's stop (3 s) ...
    supervisor: Timing = field(default_factory=Timing)
    #: ... and the service this much longer before it abandons what is left (the store is
    #: flushed and closed either way).
    stop_grace_s: float = 1.0
    #: At start, the LAN API gets this long to bind its port (else: a startup error).
    api_bind_timeout_s: float = 10.0
    api: ApiTiming = field(default_factory=ApiTiming)
    #: The sync agent's own timing (connect, PUBACK, goodbye, upkeep, Home Assistant).
    sync: SyncTiming = field(default_factory=SyncTiming)
    #: The store writer's bounds and retry timing.
    store: StoreLimits = field(default_factory=StoreLimits)

    def __post_init__(self) -> None:
        check_timing(self)


class Component(Protocol):
    """A long-running part of the service other than a driver (sync agent, LAN API)."""

    name: str

    async def run(self) -> None:
        """Run until cancelled; raise to be restarted by the supervisor."""

    def health(self) -> DriverHealth: ...


class SupervisedChild(Protocol):
    """A part's own part with a supervisor of its own (a sync agent's broker link)."""

    @property
    def name(self) -> str: ...

    @property
    def supervisor_timing(self) -> Timing: ...

    async def run(self) -> None: ...

    def attach(self, supervisor: Supervisor) -> None:
        """Given the supervisor before it starts: the child marks itself running."""


class Parts:
    """One supervisor per running part, by part name (:attr:`supervisors`)."""

    def __init__(self, timing: ServiceTiming, on_state: Callable[[], None]) -> None:
        self._timing = timing
        self._on_state = on_state
        self.supervisors: dict[str, Supervisor] = {}
        #: A part's own parts supervised apart (the sync agent's broker links), by part.
        self._children: dict[str, list[str]] = {}
        #: Set by :meth:`stop_all`: nothing new starts after it.
        self.stopping = False

    def start(
        self,
        name: str,
        target: Callable[[], Awaitable[None]],
        *,
        timing: Timing | None = None,
        attach: Callable[[Supervisor], None] | None = None,
    ) -> None:
        """Run ``target`` (one session of a part) under the part's one supervisor.
        ``attach`` gets the supervisor before it starts; a part given it marks itself
        running (else the session counts as running from its start)."""
        if self.stopping:
            return  # a reload racing a stop: nothing new starts

        async def session() -> None:
            # "running" is the supervisor's view (its session is up); whether the radio is
            # connected is the part's own health()
            sup.mark_running()
            await target()

        sup = Supervisor(
            name,
            target if attach is not None else session,
            timing=timing or self._timing.supervisor,
            on_state=lambda _status: self._on_state(),
            logger=logging.getLogger(f"gateway.{name}"),
        )
        if attach is not None:
            attach(sup)
        self.supervisors[name] = sup
        sup.start()

    def start_driver(self, driver: Driver, ingest: Ingest) -> None:
        sink = ingest.sink_for(driver.name)

        async def target() -> None:
            await driver.run(sink)

        self.start(driver.name, target)

    def start_with_children(self, part: Component, children: Sequence[SupervisedChild]) -> None:
        """``part``, and each of its ``children`` as a part of its own: one supervisor deep,
        so a Home Assistant broker that is down never drops the upstream link."""
        self.start(part.name, part.run)
        self._children[part.name] = [child.name for child in children]
        for child in children:
            self.start(child.name, child.run, timing=child.supervisor_timing, attach=child.attach)

    def ended(self) -> list[str]:
        """Parts whose supervisor has stopped (its task ended) while the service runs."""
        return [name for name, sup in self.supervisors.items() if sup.state is State.STOPPED]

    async def stop_all(self) -> bool:
        """Stop every part (children first); False when one had to be abandoned."""
        self.stopping = True
        sups = dict(self.supervisors)
        children = {c for names in self._children.values() for c in names}
        clean = True
        for wave in (children, set(sups) - children):
            clean &= await self._stop_wave({n: sup for n, sup in sups.items() if n in wave})
        return clean

    async def _stop_wave(self, sups: dict[str, Supervisor]) -> bool:
        if not sups:
            return True
        stops = {name: asyncio.ensure_future(sup.stop()) for name, sup in sups.items()}
        bound = self._timing.supervisor.stop_timeout + self._timing.stop_grace_s
        await asyncio.wait(stops.values(), timeout=bound)
        stuck = sorted(name for name, t in stops.items() if not t.done() or t.result() is False)
        for t in stops.values():
            if not t.done():
                t.cancel()
        if stuck:
            _LOGGER.error("parts did not stop in %.0f s, abandoned: %s", bound, ", ".join(stuck))
        return not stuck

    async def stop(self, name: str) -> None:
        """Stop one part and its own parts (a reload rebuilds it)."""
        for child in self._children.pop(name, []):  # its own parts first
            await self.stop(child)
        sup = self.supervisors.pop(name, None)
        if sup is not None and not await sup.stop():
            _LOGGER.error(
                "%s did not stop within %.0f s of a reload",
                name,
                self._timing.supervisor.stop_timeout,
            )
