"""The task that runs beside a started service for systemd: ``READY=1`` once it is up,
health-gated ``WATCHDOG=1`` pings, ``STATUS=`` lines, ``STOPPING=1`` on SIGTERM/SIGINT and a
config reload on SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import GatewayError
from gateway.systemd.health import LAG_THRESHOLD_S, Progress, status_line
from gateway.systemd.notify import Notifier, watchdog_interval

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.driver import Driver
    from gateway.service import Component, Service

#: The package's logger, as before it was split (log filters name "gateway.systemd").
_LOGGER = logging.getLogger(__package__)

#: How often the loop lag is probed (capped at half the ping interval).
PROBE_INTERVAL_S = 0.5
#: The longest READY=1 waits for parts that report readiness.
READY_TIMEOUT_S = 30.0
#: A changed STATUS= line is re-sent at most this often (problems are sent at once).
STATUS_INTERVAL_S = 10.0
#: How often the outbox backlog shown in STATUS= is counted.
BACKLOG_INTERVAL_S = 30.0
BACKLOG_TIMEOUT_S = 5.0
#: Attribute names of an ``asyncio.Event`` a part sets once it is up.
READY_EVENTS = ("ready", "listening")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    message: str


class SystemdIntegration:
    """Runs beside a started :class:`~gateway.service.Service`::

    async with service, SystemdIntegration(service, reload_config=load) as sd:
        sd.install_signal_handlers()
        await service.wait()
    """

    def __init__(
        self,
        service: Service,
        *,
        reload_config: Callable[[], Config] | None = None,
        notifier: Notifier | None = None,
        watchdog_s: float | None = None,
        env: Mapping[str, str] | None = None,
        lag_threshold_s: float | None = None,
    ) -> None:
        self.service = service
        self.notifier = notifier if notifier is not None else Notifier.from_env(env)
        self.watchdog_s = watchdog_s if watchdog_s is not None else watchdog_interval(env)
        self.lag_threshold_s = LAG_THRESHOLD_S if lag_threshold_s is None else lag_threshold_s
        self._progress = Progress(service, self.lag_threshold_s)
        self._reload_config = reload_config
        self._task: asyncio.Task[None] | None = None
        self._reload_task: asyncio.Task[ReloadOutcome] | None = None
        self._reload_again = False
        self._stopping = False
        self._signals: list[int] = []
        self._dirty = True
        self._backlog: int | None = None
        self._last_status = ""
        self._last_status_at = 0.0
        self._last_problems: list[str] = []
        self._reload_note = ""
        self._ready_sent = asyncio.Event()
        #: Pings sent and withheld (for diagnostics and tests).
        self.pings = 0
        self.withheld = 0
        self._healthy = True

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SystemdIntegration:
        self.service.on_state_change(self._mark_dirty)
        self._task = asyncio.create_task(self._main(), name="systemd-notify")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stopping()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
            if sig != signal.SIGHUP:
                loop.add_signal_handler(sig, self.service.request_stop)
        self._signals.clear()
        for task in (self._reload_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self.notifier.close()

    def install_signal_handlers(self) -> None:
        """SIGHUP reloads; SIGTERM/SIGINT send ``STOPPING=1`` and stop the service."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal)
        self._signals = [signal.SIGHUP, signal.SIGTERM, signal.SIGINT]

    def _on_stop_signal(self) -> None:
        self.stopping()
        self.service.request_stop()

    def stopping(self) -> None:
        if not self._stopping:
            self._stopping = True
            self.notifier.notify("STOPPING=1", "STATUS=stopping")

    def _mark_dirty(self) -> None:
        self._dirty = True

    # ------------------------------------------------------------------ ready, status, watchdog

    async def _main(self) -> None:
        late = await self._wait_ready()
        if late:
            _LOGGER.warning("ready with %s not up yet (degraded)", ", ".join(late))
        self._dirty = False
        line = self._status_line(self.problems(0.0), late)
        self.notifier.notify("READY=1", f"STATUS={line}")
        self._remember_status(line)
        self._ready_sent.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._backlog_loop(), name="systemd-backlog")
                await self._watchdog_loop()
        except Exception:
            # no more pings: systemd restarts the service, and this says why
            _LOGGER.exception("the systemd watchdog loop failed; watchdog pings stop")
            raise

    async def _wait_ready(self) -> list[str]:
        """Wait for the service and parts that report readiness; return the late ones."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self.service.ready.wait()
        late: list[str] = []
        parts: list[Driver | Component] = [*self.service.drivers, *self.service.components]
        for part in parts:
            for attr in READY_EVENTS:
                event = getattr(part, attr, None)
                if isinstance(event, asyncio.Event):
                    left = max(0.0, deadline - time.monotonic())
                    try:
                        async with asyncio.timeout(left):
                            await event.wait()
                    except TimeoutError:
                        late.append(part.name)
                    break
        return late

    async def _watchdog_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.watchdog_s
        probe = PROBE_INTERVAL_S
        if interval is not None:
            probe = min(probe, interval / 2)
        next_ping = loop.time()  # the first ping right after READY=1
        window_lag = 0.0
        while True:
            now = loop.time()
            if interval is not None and now >= next_ping:
                problems = self.problems(window_lag)
                if problems:
                    self.withheld += 1
                    log = _LOGGER.warning if self._healthy else _LOGGER.debug
                    log("watchdog ping withheld: %s", "; ".join(problems))
                    self._healthy = False
                else:
                    if not self._healthy:
                        _LOGGER.warning("healthy again: watchdog pings resumed")
                    self._healthy = True
                    self.pings += 1
                    self.notifier.notify("WATCHDOG=1")
                window_lag = 0.0
                next_ping = now + interval
            started = loop.time()
            await asyncio.sleep(probe)
            lag = max(0.0, loop.time() - started - probe)
            window_lag = max(window_lag, lag)
            self._refresh_status(self.problems(window_lag))

    def problems(self, lag: float) -> list[str]:
        """Why the process is not making progress (empty: healthy enough to ping)."""
        return self._progress.problems(lag)

    def _refresh_status(self, problems: list[str]) -> None:
        now = time.monotonic()
        changed_problems = problems != self._last_problems
        due = now - self._last_status_at >= STATUS_INTERVAL_S
        if not (changed_problems or self._dirty or due):
            return
        self._dirty = False
        line = self._status_line(problems, [])
        if line != self._last_status:
            self.notifier.notify(f"STATUS={line}")
            self._remember_status(line)
        self._last_problems = problems
        self._last_status_at = now

    def _remember_status(self, line: str) -> None:
        self._last_status = line
        self._last_status_at = time.monotonic()

    def _status_line(self, problems: list[str], late: list[str]) -> str:
        return status_line(self.service, problems, late, self._backlog, self._reload_note)

    async def _backlog_loop(self) -> None:
        while True:
            store = self.service.store
            if store is not None and not store.last_error:
                try:
                    async with asyncio.timeout(BACKLOG_TIMEOUT_S):
                        stats = await store.outbox_stats()
                except (TimeoutError, GatewayError, OSError) as exc:
                    _LOGGER.debug("backlog count failed: %s", exc)
                except Exception as exc:  # noqa: BLE001 - sqlite errors; status is best effort
                    _LOGGER.debug("backlog count failed: %s", exc)
                else:
                    if stats.depth != self._backlog:
                        self._backlog = stats.depth
                        self._dirty = True
            await asyncio.sleep(BACKLOG_INTERVAL_S)

    # ------------------------------------------------------------------ reload

    def request_reload(self) -> None:
        """SIGHUP: start a reload, or queue one while a reload runs."""
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True
            return
        self._reload_task = asyncio.create_task(self._reload_loop(), name="systemd-reload")

    async def _reload_loop(self) -> ReloadOutcome:
        # a SIGHUP during start-up is applied once READY=1 is out (systemd: no RELOADING
        # while activating)
        await self._ready_sent.wait()
        outcome = await self.reload()
        while self._reload_again:
            self._reload_again = False
            outcome = await self.reload()
        return outcome

    async def reload(self) -> ReloadOutcome:
        """Load the config again and apply it; an invalid one is rejected, the old kept."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notifier.notify(
            "RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=reloading configuration"
        )
        if self._reload_config is None:
            outcome = ReloadOutcome(False, "reload rejected: no config file to reload")
        else:
            try:
                new = await asyncio.to_thread(self._reload_config)
            except GatewayError as exc:
                outcome = ReloadOutcome(False, f"reload rejected, old config kept: {exc}")
            except Exception as exc:  # noqa: BLE001 - READY=1 must follow RELOADING=1
                outcome = ReloadOutcome(
                    False, f"reload rejected, old config kept: {type(exc).__name__}: {exc}"
                )
            else:
                try:
                    result = await self.service.reload(new)
                except Exception as exc:
                    _LOGGER.debug("reload failed", exc_info=exc)
                    outcome = ReloadOutcome(False, f"reload failed: {type(exc).__name__}: {exc}")
                else:
                    outcome = ReloadOutcome(True, f"reloaded: {result.summary()}")
        if outcome.ok:
            _LOGGER.info("configuration %s", outcome.message)
            _LOGGER.debug("watchdog: %d pings sent, %d withheld", self.pings, self.withheld)
        else:
            _LOGGER.error("configuration %s", outcome.message)
        self._reload_note = "" if outcome.ok else "last reload rejected"
        line = self._status_line(self.problems(0.0), [])
        self.notifier.notify("READY=1", f"STATUS={line}")
        self._remember_status(line)
        return outcome
