"""systemd integration: the notify protocol, a health-gated watchdog and reload on SIGHUP.

Standard library only (no python-systemd, no libsystemd): the protocol is one datagram per
message to the AF_UNIX socket named by ``NOTIFY_SOCKET`` (``@name`` is an abstract socket).
Everything is a no-op when ``NOTIFY_SOCKET`` is unset, so ``migw run`` behaves the same in a
terminal.

* ``READY=1`` once the store is open, every task is started and every part that exposes an
  ``asyncio.Event`` named ``ready`` or ``listening`` (the LAN API) has set it, or after
  :data:`READY_TIMEOUT_S` with the late parts reported as degraded.
* ``STATUS=`` one line (health, radios, sequence, backlog), sent when it changes.
* ``WATCHDOG=1`` every half ``WATCHDOG_USEC``, only while the process makes progress: the
  event loop lagged less than :data:`LAG_THRESHOLD_S` during the whole interval, store writes
  succeed (no failing commit, no rows stuck without a commit for :data:`STORE_STALL_S`) and
  the supervised radio/component tasks are alive. A degraded radio (adapter unplugged) is
  alive: it is reported, not restarted. A withheld ping is explained in ``STATUS=``.
* ``STOPPING=1`` as soon as SIGTERM/SIGINT arrives.
* SIGHUP: ``RELOADING=1``, load and validate the config again, hand it to
  :meth:`gateway.service.Service.reload`, then ``READY=1``. An invalid config is rejected
  with the old one kept (logged and shown in ``STATUS=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.supervisor import State
from gateway.driver import Health
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.driver import Driver
    from gateway.service import Component, Service

_LOGGER = logging.getLogger(__name__)

#: Event-loop lag above this (seconds) withholds the next watchdog ping.
LAG_THRESHOLD_S = 2.0
#: How often the loop lag is probed (capped at half the ping interval).
PROBE_INTERVAL_S = 0.5
#: Rows pending without any commit for this long count as a hung store.
STORE_STALL_S = 60.0
#: The longest READY=1 waits for parts that report readiness.
READY_TIMEOUT_S = 30.0
#: A changed STATUS= line is re-sent at most this often (problems are sent at once).
STATUS_INTERVAL_S = 10.0
#: How often the outbox backlog shown in STATUS= is counted.
BACKLOG_INTERVAL_S = 30.0
BACKLOG_TIMEOUT_S = 5.0
#: systemd shows the whole line; keep it readable.
STATUS_MAX_CHARS = 400
#: Attribute names of an ``asyncio.Event`` a part sets once it is up.
READY_EVENTS = ("ready", "listening")


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used on a Pi


class Notifier:
    """Sends ``sd_notify`` messages; silent no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, address: str | None) -> None:
        self._address = _socket_address(address) if address else None
        if address and self._address is None:
            _LOGGER.warning("NOTIFY_SOCKET %r is not supported; not notifying systemd", address)
        self._sock: socket.socket | None = None
        self._warned = False
        #: Messages that could not be sent (systemd gone, socket full).
        self.failures = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message."""
        if self._address is None:
            return False
        data = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self._address)
        except OSError as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                _LOGGER.warning("cannot notify systemd (%s): %s", self._address.lstrip("\0"), exc)
            else:
                _LOGGER.debug("cannot notify systemd: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None when there is no watchdog
    for this process (unset, zero, malformed, or meant for another ``WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2_000_000


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
        self._store_commits = -1
        self._store_progress = time.monotonic()
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
        probe = PROBE_INTERVAL_S if interval is None else min(PROBE_INTERVAL_S, interval / 2)
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
        problems = list(self.service.liveness())
        if lag > self.lag_threshold_s:
            problems.append(f"event loop lag {lag:.1f} s")
        store = self.service.store
        if store is not None:
            now = time.monotonic()
            if store.counters.commits != self._store_commits or store.pending() == 0:
                self._store_commits = store.counters.commits
                self._store_progress = now
            elif now - self._store_progress > STORE_STALL_S:
                problems.append(
                    f"store: {store.pending()} rows waiting, no commit for "
                    f"{now - self._store_progress:.0f} s"
                )
        return problems

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
        health = self.service.health()
        if problems:
            head = f"watchdog withheld ({'; '.join(problems)})"
        elif health["status"] != "ok" or late:
            reasons = [*health["reasons"], *(f"{name}: not up yet" for name in late)]
            head = f"degraded ({'; '.join(reasons)})"
        else:
            head = "ok"
        parts = [head, self._parts_line()]
        if self._backlog is not None:
            parts.append(f"backlog={self._backlog}")
        if self._reload_note:
            parts.append(self._reload_note)
        line = " | ".join(parts)
        if len(line) > STATUS_MAX_CHARS:
            line = line[: STATUS_MAX_CHARS - 3] + "..."
        return line

    def _parts_line(self) -> str:
        """``gpio=ok ble=degraded sync=backoff api=ok seq=N``: health first, then the
        supervisor state when it is not simply starting/running."""
        items = []
        for r in self.service.radios():
            if r.health is not Health.OK:
                items.append(f"{r.name}={r.health.value}")
            elif r.state in (State.STARTING, State.RUNNING):
                items.append(f"{r.name}=ok")
            else:
                items.append(f"{r.name}={r.state}")
        store = self.service.store
        if store is not None:
            items.append(f"seq={store.last_seq}")
        return " ".join(items) or "no radios"

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
