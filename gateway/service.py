"""The gateway service and its composition root.

:class:`Service` builds every part with explicit dependencies: the store, the ingest path
(stamps and commits readings), the drivers (from :mod:`gateway.adapters` with the
:class:`~gateway.adapters.Transports` of real or simulated hardware), the command router, the
sync agent and the LAN API. Each part runs under ONE :class:`~drivers.supervisor.Supervisor`
(started and stopped explicitly), so a part that keeps failing degrades the service and never
kills it. SIGTERM/SIGINT stop every part (bounded in time), flush the store and return.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from drivers import TRACE
from drivers.supervisor import State, Supervisor, Timing
from drivers.timing import check_timing
from gateway import adapters
from gateway.adapters import AdapterContext, DemoOptions, Transports, build_drivers
from gateway.adapters.zigbee import ZigbeeDriver
from gateway.api.timing import ApiTiming
from gateway.clock import Clock, SystemClock
from gateway.commands import CommandRouter
from gateway.config import Config
from gateway.devices import DeviceDirectory
from gateway.driver import Driver, DriverHealth, Health, ZigbeeAdmin
from gateway.errors import NeedsHumanError, StoreError
from gateway.ingest import Ingest
from gateway.model import Command, CommandResult
from gateway.store import Store
from gateway.sync.timing import SyncTiming

if TYPE_CHECKING:
    from gateway.api.server import ApiServer
    from gateway.automations import Automations
    from gateway.sync import SyncAgent

_LOGGER = logging.getLogger(__name__)

LOCK_NAME = "lock"
DB_NAME = "state.db"


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

    def __post_init__(self) -> None:
        check_timing(self)


class Component(Protocol):
    """A long-running part of the service other than a driver (sync agent, LAN API)."""

    name: str

    async def run(self) -> None:
        """Run until cancelled; raise to be restarted by the supervisor."""

    def health(self) -> DriverHealth: ...


_C = TypeVar("_C", bound=Component)


@dataclass(slots=True)
class RadioStatus:
    name: str
    state: str
    health: Health
    reason: str
    restarts: int
    counters: dict[str, int] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


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
        self.api: ApiServer | None = None
        self.sync: SyncAgent | None = None
        #: Local automations and BLE presence (docs/automations.md), when configured.
        self.automations: Automations | None = None
        #: One supervisor per running part, by part name.
        self.supervisors: dict[str, Supervisor] = {}
        #: A part's own parts supervised apart (the sync agent's broker links), by part.
        self._children: dict[str, list[str]] = {}
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.commands = CommandRouter([])
        self.ready = asyncio.Event()
        #: False after a stop that had to abandon a hung part.
        self.clean_stop = True
        self._lock_fd: int | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self._state_listeners: list[Callable[[], None]] = []
        self._reload_lock = asyncio.Lock()

    @property
    def components(self) -> list[Component]:
        """The running parts that are not drivers: the LAN API and the sync agent."""
        parts: list[Component | None] = [self.api, self.sync, self.automations]
        return [p for p in parts if p is not None]

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
        self.zigbee = next((d for d in drivers if isinstance(d, ZigbeeDriver)), None)

    def _build_api(self) -> ApiServer | None:
        from gateway.api.server import ApiServer

        return ApiServer(self) if self.config.api.enabled else None

    def _build_sync(self) -> SyncAgent:
        """Always built: without an upstream URL it still bounds the outbox and serves Home
        Assistant when a separate broker is configured."""
        from gateway.sync import SyncAgent

        assert self.store is not None
        return SyncAgent(
            self.config, self.store, self.clock, self.commands, timing=self.timing.sync
        )

    # ----------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Service:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use state directory {self.state_dir}: {exc}") from exc
        self._lock_fd = _lock_state_dir(self.state_dir)
        try:
            self.store = await Store.open(
                self.state_dir / DB_NAME,
                self.config.store,
                # without an uplink the outbox is kept small (it would only grow)
                uplink=lambda: bool(self.config.upstream.url),
            )
        except BaseException:
            _unlock(self._lock_fd)
            raise
        try:
            directory = DeviceDirectory(lambda: self.config, self.state_dir)
            # devices added before (a record in the store) stay, whatever the join policy
            directory.members.update(d.id for d in await self.store.devices())
            self.ingest = Ingest(self.store, self.clock, directory)
            if self._given_drivers is not None:
                self._set_drivers(list(self._given_drivers))
            else:
                self._set_drivers(build_drivers(self._adapter_context()))
            self.api = self._build_api()
            self.sync = self._build_sync()
            # follows self.config on reload itself (keeps its timers): never rebuilt
            self.automations = _build_automations(self)
        except BaseException:
            await self.store.close()
            _unlock(self._lock_fd)
            raise
        for driver in self.drivers:
            self._supervise(driver.name, _driver_target(driver, self.ingest))
        for component in self.components:
            if self.sync is not None and component is self.sync:
                self._supervise_sync(self.sync)
            else:
                self._supervise(component.name, component.run)
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

    def _supervise(
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
        if self._stopping:
            return  # a reload racing a stop: nothing new starts

        async def session() -> None:
            # "running" is the supervisor's view (its session is up); whether the radio is
            # connected is the part's own health()
            sup.mark_running()
            await target()

        sup = Supervisor(
            name,
            target if attach is not None else session,
            timing=timing or self.timing.supervisor,
            on_state=lambda _status: self._notify(),
            logger=logging.getLogger(f"gateway.{name}"),
        )
        if attach is not None:
            attach(sup)
        self.supervisors[name] = sup
        sup.start()

    def _supervise_sync(self, sync: SyncAgent) -> None:
        """The agent, and each of its broker links as a part of its own: one supervisor
        deep, so a Home Assistant broker that is down never drops the upstream link."""
        self._supervise(sync.name, sync.run)
        self._children[sync.name] = [link.name for link in sync.links]
        for link in sync.links:
            self._supervise(link.name, link.run, timing=link.supervisor_timing, attach=link.attach)

    async def wait(self) -> None:
        """Until :meth:`request_stop` (a signal) or :meth:`stop`."""
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> bool:
        """Stop every part, flush the store and close it (idempotent).

        Bounded in time: each part's supervisor gets its ``stop_timeout``; what has not stopped
        after that plus ``stop_grace_s`` is abandoned (its name is logged) and the store is
        still flushed and closed. Returns False when something had to be abandoned.
        """
        self._stopping = True
        self._stopped.set()
        sups = dict(self.supervisors)
        # a part's own parts first (the broker links end, collecting their PUBACKs, before
        # the sync agent flushes the acknowledgements), then the rest at once
        children = {c for names in self._children.values() for c in names}
        for wave in (children, set(sups) - children):
            await self._stop_wave({n: sup for n, sup in sups.items() if n in wave})
        if self.store is not None:
            await self.store.close()
            self.store = None
        _unlock(self._lock_fd)
        self._lock_fd = None
        return self.clean_stop

    async def _stop_wave(self, sups: dict[str, Supervisor]) -> None:
        if not sups:
            return
        stops = {name: asyncio.ensure_future(sup.stop()) for name, sup in sups.items()}
        bound = self.timing.supervisor.stop_timeout + self.timing.stop_grace_s
        await asyncio.wait(stops.values(), timeout=bound)
        stuck = sorted(name for name, t in stops.items() if not t.done() or t.result() is False)
        for t in stops.values():
            if not t.done():
                t.cancel()
        if stuck:
            _LOGGER.error("parts did not stop in %.0f s, abandoned: %s", bound, ", ".join(stuck))
            self.clean_stop = False

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
            # failing writes, drops at the memory bound, files moved aside or found damaged
            reasons.extend(f"store: {problem}" for problem in store.problems())
        return {"status": "degraded" if reasons else "ok", "reasons": reasons}

    def liveness(self) -> list[str]:
        """Why the service is not making progress (empty: alive). The systemd watchdog
        withholds its pings while this is non-empty; a degraded radio is still alive."""
        problems: list[str] = []
        if self._stopping:
            problems.append("service: stopping")
        problems.extend(
            f"{name}: supervisor task ended"
            for name, sup in self.supervisors.items()
            if sup.state is State.STOPPED
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
            running = self.ready.is_set() and not self._stopping
            if running and changed - {"gateway.log_level"}:
                await self._reload_drivers(changed, restarted, failed)
                await self._reload_components(changed, restarted, failed)
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
        assert self.ingest is not None
        ctx = self._adapter_context()
        drivers = list(self.drivers)
        for name in adapters.ADAPTERS:
            old = next((d for d in drivers if d.name == name), None)
            if not changed & frozenset(_sections_of(name, old)):
                continue
            await self._stop_part(name)
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
            self._supervise(driver.name, _driver_target(driver, self.ingest))
            out.append(driver.name)
        self._set_drivers(drivers)

    async def _reload_components(
        self, changed: frozenset[str], out: list[str], bad: list[str]
    ) -> None:
        self.api = await self._reload_component(self.api, self._build_api, "api", changed, out, bad)
        sync = await self._reload_component(
            self.sync, self._build_sync, "sync", changed, out, bad, start=self._supervise_sync
        )
        self.sync = sync

    async def _reload_component(
        self,
        old: _C | None,
        build: Callable[[], _C | None],
        name: str,
        changed: frozenset[str],
        out: list[str],
        bad: list[str],
        *,
        start: Callable[[_C], None] | None = None,
    ) -> _C | None:
        """``old`` kept, or stopped and replaced by a new one built from the new config."""
        if old is not None and not changed & frozenset(_sections_of(old.name, old)):
            return old
        try:
            new = build()
        except Exception as exc:  # noqa: BLE001 - a bad part must not stop the reload
            _LOGGER.error("reload: cannot build %s: %s", name, exc)
            bad.append(name)
            return old
        if old is not None:
            await self._stop_part(old.name)
        if new is None:
            if old is not None:
                out.append(f"{name} (disabled)")
            return None
        if start is not None:
            start(new)
        else:
            self._supervise(new.name, new.run)
        out.append(new.name)
        return new

    async def _stop_part(self, name: str) -> None:
        for child in self._children.pop(name, []):  # its own parts first
            await self._stop_part(child)
        sup = self.supervisors.pop(name, None)
        if sup is not None and not await sup.stop():
            _LOGGER.error(
                "%s did not stop within %.0f s of a reload",
                name,
                self.timing.supervisor.stop_timeout,
            )

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
    # applied by the running automations component itself (it keeps its timers)
    "automations",
    "presence",
    "location",
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


def _driver_target(driver: Driver, ingest: Ingest) -> Callable[[], Awaitable[None]]:
    sink = ingest.sink_for(driver.name)

    async def target() -> None:
        await driver.run(sink)

    return target


def _build_automations(service: Service) -> Automations | None:
    from gateway.automations import create

    return create(service)
