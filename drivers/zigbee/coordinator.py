"""The Z-Stack coordinator: one owner of the serial port, a facade over the driver's parts.

:meth:`Coordinator.run` is ONE session, with no supervisor of its own: it opens the port,
wakes the stick (:mod:`~drivers.zigbee.probe`), starts or forms the network
(:mod:`~drivers.zigbee.network`, NV access in :mod:`~drivers.zigbee.nv`), then serves
callbacks (:mod:`~drivers.zigbee.dispatch`) until the port vanishes, the stick resets itself
or the watchdog stops getting pings back, and raises why. Whoever runs it supervises it (the
gateway's service; :func:`supervise` for standalone use, with the ``reconnect_*`` backoff
of :class:`~drivers.zigbee.timing.ZigbeeTiming`), so there is one supervisor per part.
Commands are :mod:`~drivers.zigbee.control`; backups :mod:`~drivers.zigbee.backup_ops`.
Nothing is read from disk before :meth:`load` (which :meth:`run` and :meth:`session` call).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from drivers.errors import DriverError, TransientError
from drivers.results import CommandResult
from drivers.supervisor import Supervisor, describe
from drivers.zigbee import backup as bk
from drivers.zigbee.api import LinkLost, ZnpApi
from drivers.zigbee.backup_ops import (
    keep_other_network_backup,
    read_network,
    restore_network,
    write_secret_json,
)
from drivers.zigbee.base import BACKUP_FILE, CoordinatorConfig, StickInfo
from drivers.zigbee.context import CoordinatorContext
from drivers.zigbee.control import Control
from drivers.zigbee.devices import DeviceRecord, DeviceTable
from drivers.zigbee.dispatch import Dispatcher, NullListener, Spawn, ZigbeeListener
from drivers.zigbee.network import Network
from drivers.zigbee.probe import PRODUCTS, OpenLink, read_version, wake
from drivers.zigbee.transport import open_serial
from drivers.zigbee.zcl.interpret import Interpreter
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp.commands import Message

__all__ = [
    "BACKUP_FILE",
    "PRODUCTS",
    "Coordinator",
    "CoordinatorConfig",
    "NullListener",
    "StickInfo",
    "ZigbeeListener",
    "keep_other_network_backup",
    "supervise",
    "write_secret_json",
]

_LOGGER = logging.getLogger(__name__)


class Coordinator:
    def __init__(
        self,
        config: CoordinatorConfig,
        listener: ZigbeeListener | None = None,
        *,
        open_link: OpenLink = open_serial,
    ) -> None:
        self.config = config
        self.timing = config.timing
        self._open_link = open_link
        self.table = DeviceTable(config.state_dir)
        self._loaded = False
        self.info = StickInfo()
        self.counters: dict[str, int] = {
            "networks_formed": 0,
            "networks_resumed": 0,
            "reconnects": 0,
            "unknown_source": 0,
            "commands_ok": 0,
            "commands_failed": 0,
            "joins": 0,
            "leaves": 0,
            "watchdog_failures": 0,
            "backups": 0,
            "retrieve_failed": 0,
        }
        self._api: ZnpApi | None = None
        self._network: Network | None = None
        self._sessions = 0
        self._running = False
        #: Why the last session failed, until a new one is up ("" while healthy).
        self._fault = ""
        self._unexpected_reset: asyncio.Event | None = None
        ctx = CoordinatorContext(
            self.table, self.counters, self.timing, self._require_api, self._save_table
        )
        self.control = Control(ctx)
        self.dispatcher = Dispatcher(
            ctx, self.control, listener or NullListener(), config.motion_clear_s
        )
        self.connected = False
        self._up = asyncio.Event()
        #: What the sessions' links counted, all sessions added up (the framer's counts of
        #: a session are added when it ends).
        self._link_counts: collections.Counter[str] = collections.Counter()

    # --- public -------------------------------------------------------------------------

    @property
    def listener(self) -> ZigbeeListener:
        return self.dispatcher.listener

    @listener.setter
    def listener(self, listener: ZigbeeListener) -> None:
        self.dispatcher.listener = listener

    @property
    def interpreter(self) -> Interpreter:
        return self.dispatcher.interpreter

    @property
    def permit_join_until(self) -> float:
        return self.control.permit_join_until

    def load(self) -> None:
        """Read the persisted device table (once; :meth:`run` and :meth:`session` call it)."""
        if not self._loaded:
            self._loaded = True
            self.table.load()

    async def run(self, on_running: Callable[[], None] | None = None) -> None:
        """One session: connect, start the network, serve until the stick is lost, then
        raise why (a supervisor restarts it: see :func:`supervise`). ``on_running`` is
        called once the network is up (a supervisor's ``mark_running``)."""
        self.load()
        self._sessions += 1
        self._running = True
        try:
            await self._session(on_running)
        except Exception as exc:
            self._fault = describe(exc)
            raise
        finally:
            self._running = False
            self._save_table()

    async def wait_connected(self) -> None:
        """Until a session is up (callers put their own timeout around it)."""
        await self._up.wait()

    @property
    def state(self) -> str:
        """The session's state: ``connected``, ``connecting``, ``down`` (the last session
        failed, :attr:`reason` says why) or ``stopped``."""
        if self.connected:
            return "connected"
        if self._running:
            return "connecting"
        return "down" if self._fault else "stopped"

    @property
    def reason(self) -> str:
        """Why the last session failed, until a session is up again."""
        return self._fault

    def health_counters(self) -> dict[str, int]:
        out = dict(self.counters)
        framing = self._link_counts.copy()
        if self._api is not None:
            framing.update(self._framer_counts(self._api))
        for key in ("frames_in", "frames_out", "bad_frames", "garbage_bytes"):
            out[key] = framing[key]
        out["junk_dropped"] = self.interpreter.junk_dropped
        out["duplicates_dropped"] = self.interpreter.duplicates_dropped
        out["zcl_errors"] = self.interpreter.zcl_errors
        out["devices"] = len(self.table)
        out["reconnects"] = max(0, self._sessions - 1)
        return out

    async def permit_join(self, seconds: int = 60) -> None:
        """Open the network for ``seconds`` (0 closes it) on the coordinator and routers."""
        await self.control.permit_join(seconds)

    async def switch(self, ieee: str, action: str) -> CommandResult:
        """On/off/toggle to a plug or relay; delivery failures are outcomes, not raises."""
        return await self.control.switch(ieee, action)

    async def backup(self) -> dict[str, Any]:
        """The running network in the open coordinator backup format (contains the key)."""
        info = await read_network(self._require_network(), self.table)
        return bk.to_open_coordinator(info, source=self.config.source)

    async def restore(self, doc: Any) -> None:
        """Write a backup's network to the stick and start it (devices need not rejoin)."""
        info = bk.from_open_coordinator(doc)
        await restore_network(self._require_network(), info)
        for d in info.devices:
            if d.nwk is not None and self.table.get(d.ieee) is None:
                self.table.put(DeviceRecord(ieee=d.ieee, nwk=d.nwk))
        self._save_table()

    @contextlib.asynccontextmanager
    async def session(
        self, *, start: bool = True, form: bool = False
    ) -> AsyncIterator[Coordinator]:
        """A one-shot session for tools (backup, restore) when the service is not running."""
        self.load()
        async with self._connect() as network:
            if start:
                await network.start(allow_form=form)
            try:
                yield self
            finally:
                self.dispatcher.reset()
                self._save_table()

    # --- session ------------------------------------------------------------------------

    async def _session(self, on_running: Callable[[], None] | None) -> None:
        try:
            async with self._connect() as network:
                await network.start(allow_form=True)
                # a reset indication during start-up is the stick booting (the bootloader
                # skip toggles RTS, which resets many boards): only later ones are unexpected
                if self._unexpected_reset is not None:
                    self._unexpected_reset.clear()
                self._fault = ""
                if on_running is not None:
                    on_running()
                self.connected = True
                self._up.set()
                async with asyncio.TaskGroup() as tg:
                    self.dispatcher.attach(self._spawner(tg))
                    tg.create_task(self._link_monitor(network.api), name="zigbee-link")
                    tg.create_task(self._watchdog(network.api), name="zigbee-watchdog")
                    tg.create_task(self._housekeeping(), name="zigbee-housekeeping")
        finally:
            self.connected = False
            self._up.clear()
            self.dispatcher.reset()
            self._save_table()

    @staticmethod
    def _spawner(tg: asyncio.TaskGroup) -> Spawn:
        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            try:
                tg.create_task(coro, name=name)
            except RuntimeError:  # the session's TaskGroup is shutting down: dropped
                coro.close()

        return spawn

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Network]:
        api = ZnpApi("zigbee", self.timing, self._link_counts)
        link = await self._open_link(
            self.config.port,
            baudrate=self.config.baudrate,
            rtscts=self.config.rtscts,
            on_bytes=api.data_received,
            on_lost=api.connection_lost,
        )
        api.attach(link)
        self._unexpected_reset = asyncio.Event()
        unsubscribe = api.subscribe(self._on_callback)
        self._api = api
        try:
            awake = await wake(
                api,
                link,
                skip=self.config.skip_bootloader,
                timing=self.timing,
                attempts=self.timing.probe_attempts,
            )
            if not awake:
                raise TransientError(f"no answer from the stick at {self.config.port}")
            version = await read_version(api)
            self.info.product = version.product
            self.info.code_revision = version.code_revision
            self.info.firmware = version.firmware
            self._network = Network(api, self.config, self.info, self.counters)
            yield self._network
        finally:
            unsubscribe()
            self._api = None
            self._network = None
            self._link_counts.update(self._framer_counts(api))
            await api.aclose()

    @staticmethod
    def _framer_counts(api: ZnpApi) -> dict[str, int]:
        return {"bad_frames": api.framer.bad_frames, "garbage_bytes": api.framer.garbage_bytes}

    def _on_callback(self, msg: Message) -> None:
        if msg.command is c.SYS_RESET_IND:
            network = self._network
            if network is not None and network.expecting_reset:
                return
            _LOGGER.warning("the stick reset itself (reason %s)", msg.fields["Reason"].name)
            if self._unexpected_reset is not None:
                self._unexpected_reset.set()
            return
        self.dispatcher.on_callback(msg)

    async def _link_monitor(self, api: ZnpApi) -> None:
        assert self._unexpected_reset is not None
        reset = asyncio.ensure_future(self._unexpected_reset.wait())
        closed = asyncio.ensure_future(api.wait_closed())
        try:
            done, _ = await asyncio.wait({reset, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reset.cancel()
            closed.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(reset, closed, return_exceptions=True)
        if closed in done:
            closed.result()  # raises LinkLost
            raise LinkLost("serial link closed")
        raise TransientError("the stick reset itself: restarting the session")

    async def _watchdog(self, api: ZnpApi) -> None:
        misses = 0
        while True:
            await asyncio.sleep(self.timing.watchdog_interval)
            try:
                await api.request(c.SYS_PING, wait_s=self.timing.ping_timeout * 3)
                misses = 0
            except TimeoutError:
                misses += 1
                self.counters["watchdog_failures"] += 1
                if misses >= self.timing.watchdog_misses:
                    raise TransientError("the stick stopped answering pings") from None

    async def _housekeeping(self) -> None:
        last_backup = 0.0
        while True:
            if (
                last_backup == 0.0
                or time.monotonic() - last_backup >= self.config.backup_interval_s
            ):
                last_backup = time.monotonic()
                await self._auto_backup()
            if self.table.dirty:
                self._save_table()
            await asyncio.sleep(min(self.timing.save_interval, self.config.backup_interval_s))

    async def _auto_backup(self) -> None:
        if self.config.state_dir is None:
            return
        try:
            doc = await self.backup()
        except (DriverError, TimeoutError) as exc:
            _LOGGER.warning("automatic zigbee backup failed: %s", exc)
            return
        path = self.config.state_dir / BACKUP_FILE
        try:
            keep_other_network_backup(path, doc)
            write_secret_json(path, doc)
        except OSError as exc:
            _LOGGER.warning("cannot write the automatic zigbee backup: %s", exc)
            return
        self.counters["backups"] += 1

    def _save_table(self) -> None:
        if not self.table.dirty:
            return
        try:
            self.table.save()
        except OSError as exc:
            _LOGGER.warning("cannot save the zigbee device table: %s", exc)

    def _require_api(self) -> ZnpApi:
        if self._api is None:
            raise TransientError("the zigbee stick is not connected")
        return self._api

    def _require_network(self) -> Network:
        if self._network is None:
            raise TransientError("the zigbee stick is not connected")
        return self._network


def supervise(coordinator: Coordinator, *, name: str = "zigbee") -> Supervisor:
    """A :class:`~drivers.supervisor.Supervisor` running ``coordinator``'s sessions with its
    :class:`ZigbeeTiming` backoff, for use without the gateway (tools, bench, tests): still
    one supervisor deep."""
    sup: Supervisor

    async def target() -> None:
        await coordinator.run(sup.mark_running)

    sup = Supervisor(name, target, timing=coordinator.timing.reconnect, logger=_LOGGER)
    return sup
