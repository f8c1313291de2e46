"""The gateway service: its one typed composition root.

:class:`Service` builds every part with explicit dependencies: the store, the ingest path
(stamps and commits readings), the drivers (from :mod:`gateway.adapters` with the
:class:`~gateway.adapters.Transports` of real or simulated hardware), the command router, the
sync agent, the LAN API and the automations. Each part runs under ONE
:class:`~drivers.supervisor.Supervisor` (:mod:`gateway.parts`: started and stopped
explicitly), so a part that keeps failing degrades the service and never kills it.
SIGTERM/SIGINT stop every part (bounded in time), flush the store and return. What the
service reports is :mod:`gateway.status`; what a reload changes is :mod:`gateway.reload`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from drivers import TRACE
from gateway import adapters, status
from gateway.adapters import AdapterContext, DemoOptions, Transports, build_drivers
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandRouter
from gateway.config import Config
from gateway.devices import DeviceDirectory
from gateway.driver import BleAdverts, Driver, ZigbeeAdmin
from gateway.errors import NeedsHumanError, StoreError
from gateway.ingest import Ingest
from gateway.model import Command, CommandResult
from gateway.parts import Component, Parts, ServiceTiming
from gateway.reload import LOG_LEVEL, ReloadPlan, ReloadResult, plan
from gateway.statedir import StateDirBusyError, lock_state_dir, unlock
from gateway.status import RadioStatus
from gateway.store import Store

if TYPE_CHECKING:
    from drivers.supervisor import Supervisor
    from gateway.api.server import ApiServer
    from gateway.automations import Automations
    from gateway.sync import SyncAgent

__all__ = ["DB_NAME", "Component", "Service", "ServiceTiming", "StartupError", "StateDirBusyError"]

_LOGGER = logging.getLogger(__name__)

DB_NAME = "state.db"

_C = TypeVar("_C", bound=Component)


class StartupError(NeedsHumanError):
    """The service cannot start as configured (the API port is taken ...)."""


class Service:
    """Use as ``async with Service(config) as svc: await svc.wait()``.

    ``drivers`` replaces the drivers the config would build (tests); ``demo`` runs them on
    the simulated hardware of :func:`gateway.demo.demo_transports`; ``transports`` gives the
    adapters other transport factories.
    """

    def __init__(
        self,
        config: Config,
        *,
        demo: DemoOptions | None = None,
        clock: Clock | None = None,
        drivers: list[Driver] | None = None,
        transports: Transports | None = None,
        timing: ServiceTiming | None = None,
    ) -> None:
        self.config = config
        self.demo = demo
        self.clock: Clock = clock or SystemClock()
        self.timing = timing or ServiceTiming()
        self.state_dir = Path(config.gateway.state_dir)
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self._given_drivers = drivers
        self._transports = transports
        self.drivers: list[Driver] = []
        #: The Zigbee coordinator's admin side (permit join, backup), when Zigbee runs.
        self.zigbee: ZigbeeAdmin | None = None
        #: The BLE driver's adverts (a key check), when BLE runs.
        self.ble: BleAdverts | None = None
        self.api: ApiServer | None = None
        self.sync: SyncAgent | None = None
        #: Local automations and BLE presence (docs/automations.md), when configured.
        self.automations: Automations | None = None
        #: One supervisor per running part (:attr:`supervisors`), stopped explicitly.
        self.parts = Parts(self.timing, self._notify)
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.commands = CommandRouter([])
        self.ready = asyncio.Event()
        #: False after a stop that had to abandon a hung part.
        self.clean_stop = True
        self._lock_fd: int | None = None
        self._stopped = asyncio.Event()
        self._state_listeners: list[Callable[[], None]] = []
        self._reload_lock = asyncio.Lock()

    @property
    def components(self) -> list[Component]:
        """The running parts that are not drivers: the LAN API and the sync agent."""
        parts: list[Component | None] = [self.api, self.sync, self.automations]
        return [p for p in parts if p is not None]

    @property
    def supervisors(self) -> dict[str, Supervisor]:
        """One supervisor per running part, by part name."""
        return self.parts.supervisors

    # ----------------------------------------------------------------- composition

    def _adapter_context(self) -> AdapterContext:
        transports = self._transports
        if transports is None and self.demo is not None:
            from gateway.demo import demo_transports

            transports = self._transports = demo_transports(self.demo)
        return AdapterContext(self.config, self.state_dir, transports or Transports())

    def _set_drivers(self, drivers: list[Driver]) -> None:
        self.drivers = drivers
        self.commands.set_drivers(drivers)
        self.zigbee = None
        if any(d.name == "zigbee" for d in drivers):  # else the Zigbee stack is not loaded
            from gateway.adapters.zigbee import ZigbeeDriver

            self.zigbee = next((d for d in drivers if isinstance(d, ZigbeeDriver)), None)
        self.ble = None
        if any(d.name == "ble" for d in drivers):  # else the BLE codecs are not loaded
            from gateway.adapters.ble import BleDriver

            self.ble = next((d for d in drivers if isinstance(d, BleDriver)), None)

    def _build_api(self) -> ApiServer | None:
        if not self.config.api.enabled:  # else the API server and its views are not loaded
            return None
        from gateway.api.server import ApiServer

        return ApiServer(self)

    def _build_sync(self) -> SyncAgent:
        """Always built: without an upstream URL it still bounds the outbox and serves Home
        Assistant when a separate broker is configured."""
        from gateway.sync import SyncAgent

        assert self.store is not None
        return SyncAgent(
            self.config, self.store, self.clock, self.commands, timing=self.timing.sync
        )

    def _build_automations(self) -> Automations | None:
        from gateway.automations import create

        return create(self)

    def _start_sync(self, sync: SyncAgent) -> None:
        self.parts.start_with_children(sync, sync.links)

    def _start_component(self, component: Component) -> None:
        self.parts.start(component.name, component.run)

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Service:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use state directory {self.state_dir}: {exc}") from exc
        self._lock_fd = lock_state_dir(self.state_dir)
        try:
            self.store = await Store.open(
                self.state_dir / DB_NAME,
                self.config.store,
                # without an uplink the outbox is kept small (it would only grow)
                uplink=lambda: bool(self.config.upstream.url),
                limits=self.timing.store,
            )
        except BaseException:
            unlock(self._lock_fd)
            raise
        try:
            directory = DeviceDirectory(lambda: self.config, self.state_dir)
            # devices added before (a record in the store) stay, whatever the join policy
            directory.members.update(d.id for d in await self.store.devices())
            self.ingest = Ingest(
                self.store,
                self.clock,
                directory,
                # read at each new device: a reload applies at once
                max_devices=lambda: self.config.gateway.max_devices,
                # the devices already in the database count (a restart keeps the limit)
                known=await self.store.device_ids(),
            )
            if self._given_drivers is not None:
                self._set_drivers(list(self._given_drivers))
            else:
                self._set_drivers(build_drivers(self._adapter_context()))
            self.api = self._build_api()
            self.sync = self._build_sync()
            # follows self.config on reload itself (keeps its timers): never rebuilt
            self.automations = self._build_automations()
        except BaseException:
            await self.store.close()
            unlock(self._lock_fd)
            raise
        for driver in self.drivers:
            self.parts.start_driver(driver, self.ingest)
        for component in self.components:
            if self.sync is not None and component is self.sync:
                self._start_sync(self.sync)
            else:
                self._start_component(component)
        try:
            await self._api_bound()
        except BaseException:
            await self.stop()
            raise
        self.ready.set()
        self._notify()
        return self

    async def _api_bound(self) -> None:
        """A LAN API that cannot bind its port at start is a startup error (a second
        service, a port in use): raised, never retried forever in the background."""
        api = self.api
        if api is None:
            return
        try:
            async with asyncio.timeout(self.timing.api_bind_timeout_s):
                await api.bound()
        except TimeoutError:
            raise StartupError(
                f"the LAN API did not bind {self.config.api.listen}:{self.config.api.port}"
                f" within {self.timing.api_bind_timeout_s:g} s"
            ) from None

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait(self) -> None:
        """Until :meth:`request_stop` (a signal) or :meth:`stop`."""
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> bool:
        """Stop every part, flush the store and close it (idempotent).

        Bounded in time (:meth:`gateway.parts.Parts.stop_all`): what has not stopped is
        abandoned (its name is logged) and the store is still flushed and closed. Returns
        False when something had to be abandoned.
        """
        self._stopped.set()
        if not await self.parts.stop_all():
            self.clean_stop = False
        if self.store is not None:
            await self.store.close()
            self.store = None
        unlock(self._lock_fd)
        self._lock_fd = None
        return self.clean_stop

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
        return status.radios([*self.drivers, *self.components], self.supervisors)

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "reasons": [...]}`` for API, CLI and watchdog."""
        return status.health(self.radios(), self.store, self.ingest)

    def liveness(self) -> list[str]:
        """Why the service is not making progress (empty: alive); see
        :func:`gateway.status.liveness`."""
        return status.liveness(self.parts.stopping, self.parts.ended(), self.store)

    def status_line(self) -> str:
        """A one-line summary (systemd STATUS=, logs)."""
        return status.status_line(self.radios(), self.store)

    # ----------------------------------------------------------------- reload

    async def reload(self, new: Config) -> ReloadResult:
        """Apply a new, already validated config without stopping the service.

        The log level applies at once. Drivers and components whose config sections changed
        (:data:`gateway.reload.RELOAD_SECTIONS`) are stopped and built again from the new
        config; the others keep running. Keys in :data:`gateway.reload.NOT_RELOADABLE` keep
        their running values and are reported as needing a restart.
        """
        async with self._reload_lock:
            todo = plan(self.config, new)
            self.config = todo.config
            if LOG_LEVEL in todo.changed:
                level = todo.config.gateway.log_level
                logging.getLogger().setLevel(TRACE if level == "TRACE" else level)
            restarted: list[str] = []
            failed: list[str] = []
            running = self.ready.is_set() and not self.parts.stopping
            if running and todo.restarts_parts:
                await self._reload_drivers(todo, restarted, failed)
                await self._reload_components(todo, restarted, failed)
            result = ReloadResult(
                changed=tuple(sorted(todo.changed)),
                restarted=tuple(restarted),
                failed=tuple(failed),
                needs_restart=todo.needs_restart,
            )
            if todo.needs_restart:
                _LOGGER.warning(
                    "%s changed: takes effect after a restart", ", ".join(todo.needs_restart)
                )
            self._notify()
            return result

    async def _reload_drivers(self, todo: ReloadPlan, out: list[str], bad: list[str]) -> None:
        if self._given_drivers is not None:
            return  # injected drivers (tests) are not rebuilt from config
        assert self.ingest is not None
        ctx = self._adapter_context()
        drivers = list(self.drivers)
        for name in adapters.ADAPTERS:
            old = next((d for d in drivers if d.name == name), None)
            if not todo.affects(name):
                continue
            await self.parts.stop(name)
            index = drivers.index(old) if old is not None else len(drivers)
            if old is not None:
                drivers.remove(old)
            try:
                driver = adapters.factory(name)(ctx)
            except Exception as exc:  # noqa: BLE001 - a bad part must not stop the reload
                _LOGGER.error("reload: cannot build %s: %s", name, exc)
                bad.append(name)
                continue
            if driver is None:
                out.append(f"{name} (disabled)" if old is not None else name)
                continue
            drivers.insert(index, driver)
            self.parts.start_driver(driver, self.ingest)
            out.append(driver.name)
        self._set_drivers(drivers)

    async def _reload_components(self, todo: ReloadPlan, out: list[str], bad: list[str]) -> None:
        self.api = await self._reload_component(
            self.api, self._build_api, "api", todo, out, bad, self._start_component
        )
        self.sync = await self._reload_component(
            self.sync, self._build_sync, "sync", todo, out, bad, self._start_sync
        )

    async def _reload_component(
        self,
        old: _C | None,
        build: Callable[[], _C | None],
        name: str,
        todo: ReloadPlan,
        out: list[str],
        bad: list[str],
        start: Callable[[_C], None],
    ) -> _C | None:
        """``old`` kept, or stopped and replaced by a new one built from the new config."""
        if old is not None and not todo.affects(old.name):
            return old
        try:
            new = build()
        except Exception as exc:  # noqa: BLE001 - a bad part must not stop the reload
            _LOGGER.error("reload: cannot build %s: %s", name, exc)
            bad.append(name)
            return old
        if old is not None:
            await self.parts.stop(old.name)
        if new is None:
            if old is not None:
                out.append(f"{name} (disabled)")
            return None
        start(new)
        out.append(new.name)
        return new
