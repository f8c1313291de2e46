"""The gateway service: store, drivers, sync agent and LAN API under one TaskGroup.

Every long-running loop is a named task; each driver runs under a
:class:`~drivers.supervisor.Supervisor`, so a driver that keeps failing degrades the
service and never kills it. SIGTERM/SIGINT stop the drivers, flush the store and return.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any, Protocol

from drivers import TRACE
from drivers.supervisor import Backoff, State, Supervisor
from gateway.adapters import AdapterContext, DemoOptions, build_drivers
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandRouter
from gateway.config import Config
from gateway.devices import DeviceDirectory
from gateway.driver import Driver, DriverHealth, Health
from gateway.errors import NeedsHumanError, StoreError
from gateway.ingest import Ingest
from gateway.model import Command, CommandResult
from gateway.store import Store

_LOGGER = logging.getLogger(__name__)

#: Seconds the service gives its tasks to stop before it cancels them again ...
STOP_TIMEOUT_S = 3.0
#: ... and how much longer before it abandons them (the store is flushed either way).
STOP_GRACE_S = 1.0
LOCK_NAME = "lock"
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
        #: False after a stop that had to abandon a hung part.
        self.clean_stop = True
        self._lock_fd: int | None = None
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._state_listeners: list[Callable[[], None]] = []
        #: Supervisor task per part name, and the module that created each component.
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._component_modules: dict[str, str] = {}
        self._reload_lock = asyncio.Lock()

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Service:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use state directory {self.state_dir}: {exc}") from exc
        self._lock_fd = _lock_state_dir(self.state_dir)
        try:
            self.store = await Store.open(self.state_dir / DB_NAME, self.config.store)
        except BaseException:
            _unlock(self._lock_fd)
            raise
        try:
            directory = DeviceDirectory(lambda: self.config, self.state_dir)
            self.ingest = Ingest(self.store, self.clock, directory)
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
                    self._component_modules[module_name] = component.name
        except BaseException:
            await self.store.close()
            _unlock(self._lock_fd)
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
        async def running_target() -> None:
            # "running" is the supervisor's view (its task is up); whether the radio is
            # connected is the part's own health()
            sup.mark_running()
            await target()

        sup = Supervisor(
            name,
            running_target,
            backoff=Backoff(),
            on_state=lambda _status: self._notify(),
            logger=logging.getLogger(f"gateway.{name}"),
        )
        if self._stop.is_set():
            return  # a reload racing a stop: nothing new starts
        coro = sup.run()
        try:
            task = tg.create_task(coro, name=f"supervisor-{name}")
        except RuntimeError:  # the TaskGroup is already shutting down
            coro.close()
            return
        self.supervisors[name] = sup
        self._tasks[name] = task

    async def wait(self) -> None:
        """Until :meth:`request_stop` (a signal) or the service fails."""
        assert self._runner is not None
        await asyncio.shield(self._runner)

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> bool:
        """Stop every task, flush the store and close it (idempotent).

        Bounded in time: a part whose cleanup hangs is abandoned after STOP_TIMEOUT_S plus
        a grace second (its name is logged) and the store is still flushed and closed.
        Returns False when something had to be abandoned.
        """
        self._stop.set()
        runner = self._runner
        if runner is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await asyncio.shield(runner)
            except TimeoutError:
                runner.cancel()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_GRACE_S):
                        await asyncio.wait({runner})
            if not runner.done():
                stuck = sorted(name for name, t in self._tasks.items() if not t.done())
                _LOGGER.error(
                    "parts did not stop in %.0f s, abandoned: %s",
                    STOP_TIMEOUT_S + STOP_GRACE_S,
                    ", ".join(stuck) or "service",
                )
                self.clean_stop = False
            elif not runner.cancelled() and runner.exception() is not None:
                _LOGGER.error("service ended with an error", exc_info=runner.exception())
            self._runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None
        _unlock(self._lock_fd)
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

    def liveness(self) -> list[str]:
        """Why the service is not making progress (empty: alive). The systemd watchdog
        withholds its pings while this is non-empty; a degraded radio is still alive."""
        problems: list[str] = []
        if self._runner is None or self._runner.done():
            problems.append("service: tasks ended")
        problems.extend(
            f"{name}: supervisor task ended" for name, task in self._tasks.items() if task.done()
        )
        store = self.store
        if store is None:
            problems.append("store: closed")
        elif store.last_error:
            problems.append(f"store: writes failing ({store.last_error})")
        return problems

    # ----------------------------------------------------------------- reload

    async def reload(self, new: Config) -> ReloadResult:
        """Apply a new, already validated config without stopping the service.

        The log level applies at once. Drivers and components whose config sections changed
        (:data:`RELOAD_SECTIONS`) are stopped and built again from the new config; the others
        keep running. Keys in :data:`NOT_RELOADABLE` keep their running values and are
        reported as needing a restart.
        """
        async with self._reload_lock:
            old = self.config
            needs_restart = tuple(
                k for k in NOT_RELOADABLE if _config_value(old, k) != _config_value(new, k)
            )
            for key in needs_restart:
                new = _with_config_value(new, key, _config_value(old, key))
            changed = frozenset(
                k for k in RELOADABLE if _config_value(old, k) != _config_value(new, k)
            )
            self.config = new
            if "gateway.log_level" in changed:
                level = new.gateway.log_level
                logging.getLogger().setLevel(TRACE if level == "TRACE" else level)
            restarted: list[str] = []
            failed: list[str] = []
            running = self._tg is not None and not self._stop.is_set()
            if running and changed - {"gateway.log_level"}:
                await self._reload_drivers(changed, restarted, failed)
                await self._reload_components(changed, restarted, failed)
                self.commands = CommandRouter(self.drivers)
            result = ReloadResult(
                changed=tuple(sorted(changed)),
                restarted=tuple(restarted),
                failed=tuple(failed),
                needs_restart=needs_restart,
            )
            if needs_restart:
                _LOGGER.warning(
                    "%s changed: takes effect after a restart", ", ".join(needs_restart)
                )
            self._notify()
            return result

    async def _reload_drivers(
        self, changed: frozenset[str], out: list[str], bad: list[str]
    ) -> None:
        if self._given_drivers is not None:
            return  # injected drivers (tests) are not rebuilt from config
        from gateway.adapters import ADAPTERS

        ctx = AdapterContext(self.config, self.state_dir, self.demo)
        for module_name in ADAPTERS:
            old = self.driver(module_name)
            if not changed & frozenset(_sections_of(module_name, old)):
                continue
            await self._stop_part(module_name)
            index = self.drivers.index(old) if old is not None else len(self.drivers)
            if old is not None:
                self.drivers.remove(old)
            try:
                module = importlib.import_module(f"gateway.adapters.{module_name}")
                driver: Driver | None = module.create(ctx)
            except Exception as exc:  # noqa: BLE001 - a bad part must not stop the reload
                _LOGGER.error("reload: cannot build %s: %s", module_name, exc)
                bad.append(module_name)
                continue
            if driver is None:
                out.append(f"{module_name} (disabled)" if old is not None else module_name)
                continue
            self.drivers.insert(index, driver)
            assert self._tg is not None
            assert self.ingest is not None
            self._supervise(self._tg, driver.name, _driver_target(driver, self.ingest))
            out.append(driver.name)

    async def _reload_components(
        self, changed: frozenset[str], out: list[str], bad: list[str]
    ) -> None:
        for module_name in COMPONENTS:
            name = self._component_modules.get(module_name)
            old = next((c for c in self.components if c.name == name), None)
            if old is not None and not changed & frozenset(_sections_of(old.name, old)):
                continue
            try:
                module = importlib.import_module(f"gateway.{module_name}")
                component: Component | None = module.create(self)
            except Exception as exc:  # noqa: BLE001 - a bad part must not stop the reload
                _LOGGER.error("reload: cannot build %s: %s", module_name, exc)
                bad.append(module_name)
                continue
            if old is None and component is None:
                continue
            if old is not None:
                await self._stop_part(old.name)
                self.components.remove(old)
                self._component_modules.pop(module_name, None)
            if component is None:
                out.append(f"{old.name if old else module_name} (disabled)")
                continue
            self.components.append(component)
            self._component_modules[module_name] = component.name
            assert self._tg is not None
            self._supervise(self._tg, component.name, component.run)
            out.append(component.name)

    async def _stop_part(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self.supervisors.pop(name, None)
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
            if not done:
                _LOGGER.error("%s did not stop within %.0f s of a reload", name, STOP_TIMEOUT_S)

    def status_line(self) -> str:
        """A one-line summary (systemd STATUS=, logs)."""
        parts = [
            f"{r.name}={r.health.value if r.health is not Health.OK else r.state}"
            for r in self.radios()
        ]
        if self.store is not None:
            parts.append(f"seq={self.store.last_seq}")
        return " ".join(parts) or "no radios"


#: Config sections (or ``section.key``) each part depends on, by part name; a reload restarts
#: the parts whose sections changed. A part may declare its own ``config_sections`` tuple; a
#: part known to neither is restarted on any reloadable change except the log level.
RELOAD_SECTIONS: dict[str, tuple[str, ...]] = {
    "gpio": ("gpio",),
    "ble": ("ble",),
    "zigbee": ("zigbee",),
    "api": ("api", "gateway.id"),
    "sync": ("upstream", "homeassistant", "gateway.id"),
    "homeassistant": ("homeassistant", "upstream", "gateway.id"),
}
#: Reloadable config keys (a whole section or ``section.key``).
RELOADABLE: tuple[str, ...] = (
    "gateway.id",
    "gateway.log_level",
    "api",
    "upstream",
    "homeassistant",
    "ble",
    "zigbee",
    "gpio",
)
#: Keys a reload keeps at their running values: they need a restart.
NOT_RELOADABLE: tuple[str, ...] = ("gateway.state_dir", "store")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    changed: tuple[str, ...]
    restarted: tuple[str, ...]
    failed: tuple[str, ...]
    needs_restart: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"changed: {', '.join(self.changed) or 'nothing'}"]
        if self.restarted:
            parts.append(f"restarted: {', '.join(self.restarted)}")
        if self.failed:
            parts.append(f"failed to restart: {', '.join(self.failed)}")
        if self.needs_restart:
            parts.append(f"needs a service restart: {', '.join(self.needs_restart)}")
        return "; ".join(parts)


def _config_value(cfg: Config, key: str) -> object:
    section, _, attr = key.partition(".")
    value = getattr(cfg, section)
    return getattr(value, attr) if attr else value


def _with_config_value(cfg: Config, key: str, value: object) -> Config:
    section, _, attr = key.partition(".")
    if attr:
        value = dataclass_replace(getattr(cfg, section), **{attr: value})
    return cfg.replace(**{section: value})


def _sections_of(name: str, part: object | None) -> tuple[str, ...]:
    declared = getattr(part, "config_sections", None)
    if isinstance(declared, tuple):
        return tuple(str(s) for s in declared)
    return RELOAD_SECTIONS.get(name) or tuple(k for k in RELOADABLE if k != "gateway.log_level")


class StateDirBusyError(NeedsHumanError):
    """Another service holds the state directory."""


def _lock_state_dir(state_dir: Path) -> int:
    """Take ``<state_dir>/lock`` (flock): one service per state directory."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateDirBusyError(
            f"another migw (pid {holder}) is using {state_dir}: stop it, or give this one"
            " its own --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases the flock


class _Stopping(Exception):
    """Raised inside the TaskGroup to cancel its tasks on a stop request."""


def _stopping() -> None:
    raise _Stopping


def _driver_target(driver: Driver, ingest: Ingest) -> Callable[[], Awaitable[None]]:
    sink = ingest.sink_for(driver.name)

    async def target() -> None:
        await driver.run(sink)

    return target
