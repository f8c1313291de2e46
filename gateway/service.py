"""The gateway service: store, drivers, sync agent and LAN API under one TaskGroup.

Every long-running loop is a named task; each driver runs under a
:class:`~drivers.supervisor.Supervisor`, so a driver that keeps failing degrades the
service and never kills it. SIGTERM/SIGINT stop the drivers, flush the store and return.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drivers.supervisor import Backoff, State, Supervisor
from gateway.adapters import AdapterContext, DemoOptions, build_drivers
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandRouter
from gateway.config import Config
from gateway.driver import Driver, DriverHealth, Health
from gateway.ingest import Ingest
from gateway.model import Command, CommandResult
from gateway.store import Store

_LOGGER = logging.getLogger(__name__)

#: Seconds the service gives its tasks to stop before it gives up waiting.
STOP_TIMEOUT_S = 4.0
DB_NAME = "state.db"


class Component(Protocol):
    """A long-running part of the service other than a driver (sync agent, LAN API)."""

    name: str

    async def run(self) -> None:
        """Run until cancelled; raise to be restarted by the supervisor."""

    def health(self) -> DriverHealth: ...


#: Modules under ``gateway`` exposing ``create(service) -> Component | None``.
COMPONENTS: list[str] = ["api.server", "sync"]


@dataclass(slots=True)
class RadioStatus:
    name: str
    state: str
    health: Health
    reason: str
    restarts: int
    counters: dict[str, int] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


class Service:
    """Use as ``async with Service(config) as svc: await svc.wait()``."""

    def __init__(
        self,
        config: Config,
        *,
        demo: DemoOptions | None = None,
        clock: Clock | None = None,
        drivers: list[Driver] | None = None,
    ) -> None:
        self.config = config
        self.demo = demo
        self.clock: Clock = clock or SystemClock()
        self.state_dir = Path(config.gateway.state_dir)
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self._given_drivers = drivers
        self.drivers: list[Driver] = []
        self.components: list[Component] = []
        self.supervisors: dict[str, Supervisor] = {}
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.commands = CommandRouter([])
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._state_listeners: list[Callable[[], None]] = []

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Service:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = await Store.open(self.state_dir / DB_NAME, self.config.store)
        try:
            self.ingest = Ingest(self.store, self.clock)
            if self._given_drivers is not None:
                self.drivers = list(self._given_drivers)
            else:
                ctx = AdapterContext(self.config, self.state_dir, self.demo)
                self.drivers = build_drivers(ctx)
            self.commands = CommandRouter(self.drivers)
            for module_name in COMPONENTS:
                module = importlib.import_module(f"gateway.{module_name}")
                component = module.create(self)
                if component is not None:
                    self.components.append(component)
        except BaseException:
            await self.store.close()
            raise
        self._runner = asyncio.create_task(self._run(), name="service")
        # Ready once every task has been started (radios initialised or marked degraded).
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        assert self.store is not None
        assert self.ingest is not None
        ingest = self.ingest
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for driver in self.drivers:
                    self._supervise(tg, driver.name, _driver_target(driver, ingest))
                for component in self.components:
                    self._supervise(tg, component.name, component.run)
                self.ready.set()
                self._notify()
                await self._stop.wait()
                _stopping()
        except* _Stopping:
            pass
        finally:
            self._tg = None

    def _supervise(
        self, tg: asyncio.TaskGroup, name: str, target: Callable[[], Awaitable[None]]
    ) -> None:
        sup = Supervisor(
            name,
            target,
            backoff=Backoff(),
            on_state=lambda _status: self._notify(),
            logger=logging.getLogger(f"gateway.{name}"),
        )
        self.supervisors[name] = sup
        tg.create_task(sup.run(), name=f"supervisor-{name}")

    async def wait(self) -> None:
        """Until :meth:`request_stop` (a signal) or the service fails."""
        assert self._runner is not None
        await asyncio.shield(self._runner)

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """Stop every task, flush the store and close it (idempotent)."""
        self._stop.set()
        if self._runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), STOP_TIMEOUT_S)
            except TimeoutError:
                _LOGGER.error("tasks did not stop in %.0f s; cancelling", STOP_TIMEOUT_S)
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
            self._runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    # ----------------------------------------------------------------- commands & status

    async def command(self, device_id: str, command: Command) -> CommandResult:
        return await self.commands.execute(device_id, command)

    def driver(self, name: str) -> Driver | None:
        return next((d for d in self.drivers if d.name == name), None)

    def on_state_change(self, listener: Callable[[], None]) -> None:
        self._state_listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._state_listeners):
            try:
                listener()
            except Exception:
                _LOGGER.exception("state listener failed")

    def radios(self) -> list[RadioStatus]:
        out: list[RadioStatus] = []
        parts: list[Driver | Component] = [*self.drivers, *self.components]
        for part in parts:
            h = part.health()
            sup = self.supervisors.get(part.name)
            state = sup.status.state if sup is not None else State.STARTING
            health = h.health
            reason = h.reason
            if sup is not None and state in (State.BACKOFF, State.FAILED):
                health = Health.DEGRADED
                reason = reason or sup.status.reason
            out.append(
                RadioStatus(
                    name=part.name,
                    state=str(state),
                    health=health,
                    reason=reason,
                    restarts=sup.status.restarts if sup is not None else 0,
                    counters=dict(h.counters),
                    info=dict(h.info),
                )
            )
        return out

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "reasons": [...]}`` for API, CLI and watchdog."""
        reasons = [
            f"{r.name}: {r.reason or r.state}" for r in self.radios() if r.health is Health.DEGRADED
        ]
        store = self.store
        if store is None:
            reasons.append("store: closed")
        else:
            if store.last_error:
                reasons.append(f"store: {store.last_error}")
            if store.recovered_from is not None:
                reasons.append(
                    f"store: the database was unusable and was moved to {store.recovered_from}"
                )
        return {"status": "degraded" if reasons else "ok", "reasons": reasons}

    def status_line(self) -> str:
        """A one-line summary (systemd STATUS=, logs)."""
        parts = [
            f"{r.name}={r.health.value if r.health is not Health.OK else r.state}"
            for r in self.radios()
        ]
        if self.store is not None:
            parts.append(f"seq={self.store.last_seq}")
        return " ".join(parts) or "no radios"


class _Stopping(Exception):
    """Raised inside the TaskGroup to cancel its tasks on a stop request."""


def _stopping() -> None:
    raise _Stopping


def _driver_target(driver: Driver, ingest: Ingest) -> Callable[[], Awaitable[None]]:
    sink = ingest.sink_for(driver.name)

    async def target() -> None:
        await driver.run(sink)

    return target
