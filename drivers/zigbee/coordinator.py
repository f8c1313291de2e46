"""The Z-Stack coordinator: network start-up, joining, devices, commands, backups.

One :class:`Coordinator` owns the serial port. :meth:`Coordinator.run` keeps a session alive
under :class:`drivers.supervisor.Supervisor` (capped backoff with jitter): a session opens the
port, probes the stick, starts or forms the network, registers the endpoint and then serves
callbacks until the port vanishes or the watchdog stops getting pings back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from drivers.errors import DriverError, NeedsHumanError, ProtocolError, TransientError
from drivers.supervisor import Backoff, Supervisor
from drivers.zigbee import backup as bk
from drivers.zigbee.api import CommandNotRecognized, LinkLost, ZnpApi
from drivers.zigbee.devices import DeviceRecord, DeviceTable, fsync_dir
from drivers.zigbee.transport import BOOTLOADER_TOGGLE_S, ByteLink, open_serial
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.zcl.interpret import Interpreter
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Message
from drivers.zigbee.znp.types import NvId

_LOGGER = logging.getLogger(__name__)

# Timing (module level so tests can shorten it).
PING_TIMEOUT = 1.0
PROBE_ATTEMPTS = 3
BOOTLOADER_WAIT_S = 1.0
RESET_TIMEOUT = 15.0
STARTUP_TIMEOUT = 60.0
FORMATION_TIMEOUT = 60.0
WATCHDOG_INTERVAL = 30.0
WATCHDOG_MISSES = 2
CONFIRM_TIMEOUT = 12.0
INTERVIEW_TIMEOUT = 5.0
SAVE_INTERVAL = 60.0
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 60.0
STABLE_AFTER = 30.0
#: Unknown senders looked up at the same time at most (a flood must not queue requests).
MAX_IEEE_LOOKUPS = 4
#: A device update is published when the LQI moved at least this much.
LQI_NOTIFY_DELTA = 8

COORDINATOR_ENDPOINT = 1
HA_PROFILE = 0x0104
#: Our endpoint 1: a combined interface (IAS CIE, on/off client, basic server).
ENDPOINT_INPUT = [0x0000, 0x0006, 0x000A, 0x0019, 0x0501]
ENDPOINT_OUTPUT = [
    0x0000,
    0x0001,
    0x0006,
    0x0008,
    0x0020,
    0x0300,
    0x0400,
    0x0402,
    0x0405,
    0x0406,
    0x0500,
    0x0502,
    0x0702,
    0x0B04,
]
MARKER = b"\x55"
#: Added to the restored NWK frame counter so devices accept our frames (zigpy: 10000).
FRAME_COUNTER_INCREMENT = 10_000
#: Z-Stack 3.x extended NV: system id and the NWK security material table.
NVINTF_SYSID_ZSTACK = 1
EX_NWK_SEC_MATERIAL_TABLE = 0x0007
#: Z-Stack 3.0.x (no extended NV): the same table as OSAL items 0x0075-0x0080.
LEGACY_NWK_SEC_MATERIAL_TABLE_START = 0x0075
LEGACY_NWK_SEC_MATERIAL_TABLE_END = 0x0080
#: SYS_VERSION product ids.
PRODUCT_ZSTACK_12 = 0
PRODUCT_ZSTACK_3X0 = 1
PRODUCT_ZSTACK_30X = 2
BACKUP_FILE = "zigbee_backup.json"
#: NIB (NV 0x0021) of Z-Stack 1.2 (CC2531, packed): nwkLogicalChannel and nwkKeyLoaded.
NIB_CHANNEL_12 = 22
NIB_KEY_LOADED_12 = 61

PRODUCTS = {0: "Z-Stack 1.2", 1: "Z-Stack 3.x.0", 2: "Z-Stack 3.0.x"}
NVRAM_CORRUPTED = "NVRAM corrupted, re-flash the stick"


class ZigbeeListener(Protocol):
    def device_changed(self, device: DeviceRecord) -> None: ...

    def device_left(self, ieee: str) -> None: ...

    def reading(self, ieee: str, metric: str, value: object) -> None: ...

    def event(self, ieee: str, action: str, button: int | None) -> None: ...


class NullListener:
    def device_changed(self, device: DeviceRecord) -> None:
        pass

    def device_left(self, ieee: str) -> None:
        pass

    def reading(self, ieee: str, metric: str, value: object) -> None:
        pass

    def event(self, ieee: str, action: str, button: int | None) -> None:
        pass


class Delivery(enum.StrEnum):
    OK = "ok"
    UNKNOWN_DEVICE = "unknown_device"
    UNSUPPORTED = "unsupported"
    UNREACHABLE = "unreachable"  # sleepy or out of range: a soft failure
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    delivery: Delivery
    detail: str = ""
    state: dict[str, bool] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    port: str
    baudrate: int = 115200
    rtscts: bool = False
    #: 11-26, used when forming a new network.
    channel: int = 15
    skip_bootloader: bool = True
    #: Where the device table and automatic backups live (None: nothing persisted).
    state_dir: Path | None = None
    backup_interval_s: float = 86400.0
    #: Overrides the per-model motion clear timeout (seconds).
    motion_clear_s: float | None = None
    source: str = "migw"


@dataclass(slots=True)
class StickInfo:
    firmware: str = ""
    product: int = -1
    code_revision: int | None = None
    ieee: str = ""
    pan_id: int | None = None
    extended_pan_id: str = ""
    channel: int | None = None


OpenLink = Callable[..., Awaitable[ByteLink]]


def _first_leaf(eg: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = eg
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class Coordinator:
    def __init__(
        self,
        config: CoordinatorConfig,
        listener: ZigbeeListener | None = None,
        *,
        open_link: OpenLink = open_serial,
    ) -> None:
        self.config = config
        self.listener: ZigbeeListener = listener or NullListener()
        self._open_link = open_link
        self.table = DeviceTable(config.state_dir)
        self.table.load()
        self.interpreter = Interpreter()
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
        }
        self._api: ZnpApi | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._supervisor: Supervisor | None = None
        self._tsn = secrets.randbelow(256)
        self._trans_id = secrets.randbelow(256)
        self._motion_timers: dict[str, asyncio.TimerHandle] = {}
        self._model_seen: dict[str, asyncio.Event] = {}
        self._ieee_lookups: set[int] = set()
        self._unexpected_reset: asyncio.Event | None = None
        self._expect_reset = False
        self.permit_join_until = 0.0
        self.connected = False
        self._up = asyncio.Event()
        self._old_frames = {"frames_in": 0, "frames_out": 0, "bad_frames": 0, "garbage_bytes": 0}

    # --- public -------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a session alive until cancelled (reconnects with backoff)."""
        self._supervisor = Supervisor(
            "zigbee",
            self._session,
            backoff=Backoff(initial=RECONNECT_INITIAL, maximum=RECONNECT_MAX),
            stable_after=STABLE_AFTER,
            logger=_LOGGER,
        )
        try:
            await self._supervisor.run()
        finally:
            self._save_table()

    async def wait_connected(self) -> None:
        """Until a session is up (callers put their own timeout around it)."""
        await self._up.wait()

    @property
    def state(self) -> str:
        return self._supervisor.status.state.value if self._supervisor else "stopped"

    @property
    def reason(self) -> str:
        return self._supervisor.status.reason if self._supervisor else ""

    def health_counters(self) -> dict[str, int]:
        out = dict(self.counters)
        out.update(self._old_frames)
        api = self._api
        if api is not None:
            out["frames_in"] += api.counters.frames_in
            out["frames_out"] += api.counters.frames_out
            out["bad_frames"] += api.framer.bad_frames
            out["garbage_bytes"] += api.framer.garbage_bytes
        out["junk_dropped"] = self.interpreter.junk_dropped
        out["duplicates_dropped"] = self.interpreter.duplicates_dropped
        out["zcl_errors"] = self.interpreter.zcl_errors
        out["devices"] = len(self.table)
        if self._supervisor is not None:
            out["reconnects"] = self._supervisor.status.restarts
        return out

    async def permit_join(self, seconds: int = 60) -> None:
        """Open the network for ``seconds`` (0 closes it) on the coordinator and routers."""
        api = self._require_api()
        s = max(0, min(int(seconds), 254))
        rsp = await api.request(
            c.ZDO_MGMT_PERMIT_JOIN_REQ,
            AddrMode=t.AddrMode.NWK,
            Dst=0x0000,
            Duration=s,
            TCSignificance=1,
        )
        self._check(rsp, "permit join (coordinator)")
        rsp = await api.request(
            c.ZDO_MGMT_PERMIT_JOIN_REQ,
            AddrMode=t.AddrMode.BROADCAST,
            Dst=0xFFFC,
            Duration=s,
            TCSignificance=1,
        )
        self._check(rsp, "permit join (broadcast)")
        self.permit_join_until = time.monotonic() + s
        _LOGGER.info("permit join for %d s", s)

    async def switch(self, ieee: str, action: str) -> CommandOutcome:
        """On/off/toggle to a plug or relay; delivery failures are outcomes, not raises."""
        rec = self.table.get(ieee)
        if rec is None:
            return CommandOutcome(Delivery.UNKNOWN_DEVICE, f"no zigbee device {ieee}")
        cmd_id = {"off": 0x00, "on": 0x01, "toggle": 0x02}.get(action)
        if cmd_id is None:
            return CommandOutcome(Delivery.UNSUPPORTED, f"action {action!r} is not on/off/toggle")
        spec = xiaomi.spec_for(rec.model)
        if spec is not None and spec.switch_endpoint is None:
            return CommandOutcome(Delivery.UNSUPPORTED, f"{rec.model} has no switch")
        endpoint = spec.switch_endpoint if spec is not None and spec.switch_endpoint else 1
        try:
            status = await self._send_zcl(rec.nwk, endpoint, cl.ON_OFF, self._zcl_command(cmd_id))
        except TimeoutError:
            self.counters["commands_failed"] += 1
            return CommandOutcome(Delivery.TIMEOUT, "no delivery confirmation from the stick")
        except DriverError as exc:
            self.counters["commands_failed"] += 1
            return CommandOutcome(Delivery.ERROR, str(exc))
        if status == t.Status.SUCCESS:
            self.counters["commands_ok"] += 1
            state = {} if action == "toggle" else {"switch": action == "on"}
            return CommandOutcome(Delivery.OK, "", state)
        self.counters["commands_failed"] += 1
        name = t.Status(status).name
        if status in t.SOFT_DELIVERY_FAILURES:
            return CommandOutcome(
                Delivery.UNREACHABLE, f"device did not take it ({name}): asleep or out of range"
            )
        return CommandOutcome(Delivery.ERROR, f"stick reported {name} (0x{int(status):02X})")

    async def backup(self) -> dict[str, Any]:
        """The running network in the open coordinator backup format (contains the key)."""
        api = self._require_api()
        dev = await api.request(c.UTIL_GET_DEVICE_INFO)
        nwk = await api.request(c.ZDO_EXT_NWK_INFO)
        key_info = await self._nv_read_secret(api, NvId.NWK_ACTIVE_KEY_INFO)
        if key_info is not None and len(key_info) >= 17:
            seq, key = key_info[0], key_info[1:17]
        else:
            pre = await self._nv_read_secret(api, NvId.PRECFGKEY)
            if pre is None or len(pre) < 16:
                raise ProtocolError("cannot read the network key from the stick")
            seq, key = 0, pre[:16]
        ext = str(nwk["ExtendedPanId"])
        children = set(dev["AssociatedDevices"])
        counter = await self._read_frame_counter(api, ext)
        seed = await self._nv_read_secret(api, NvId.TCLK_SEED)
        info = bk.NetworkInfo(
            coordinator_ieee=str(dev["IEEE"]),
            pan_id=int(nwk["PanId"]),
            extended_pan_id=ext,
            channel=int(nwk["Channel"]),
            network_key=bytes(key),
            key_sequence=seq,
            frame_counter=counter,
            channel_mask=(int(nwk["Channel"]),),
            devices=tuple(
                bk.BackupDevice(r.ieee, r.nwk, is_child=r.nwk in children) for r in self.table
            ),
            tclk_seed=bytes(seed[:16]) if seed is not None and len(seed) >= 16 else None,
        )
        return bk.to_open_coordinator(info, source=self.config.source)

    async def restore(self, doc: Any) -> None:
        """Write a backup's network to the stick and start it (devices need not rejoin)."""
        info = bk.from_open_coordinator(doc)
        api = self._require_api()
        await self._form(api, self.info.product != 0, info)
        # restart so the stick loads what was written (IEEE, frame counter) from NV
        await self._reset(api)
        await self._resume(api)
        await self._startup_common(api)
        for d in info.devices:
            if d.nwk is not None and self.table.get(d.ieee) is None:
                self.table.put(DeviceRecord(ieee=d.ieee, nwk=d.nwk))
        self._save_table()

    @contextlib.asynccontextmanager
    async def session(
        self, *, start: bool = True, form: bool = False
    ) -> AsyncIterator[Coordinator]:
        """A one-shot session for tools (backup, restore) when the service is not running."""
        async with self._connect() as api:
            await self._version(api)
            if start:
                await self._start_network(api, allow_form=form)
            try:
                yield self
            finally:
                self._api = None
                self._ieee_lookups.clear()
                self._save_table()

    # --- session ------------------------------------------------------------------------

    async def _session(self) -> None:
        try:
            async with self._connect() as api:
                await self._version(api)
                await self._start_network(api, allow_form=True)
                # a reset indication during start-up is the stick booting (the bootloader
                # skip toggles RTS, which resets many boards): only later ones are unexpected
                if self._unexpected_reset is not None:
                    self._unexpected_reset.clear()
                if self._supervisor is not None:
                    self._supervisor.mark_running()
                self.connected = True
                self._up.set()
                tg = asyncio.TaskGroup()
                async with tg:
                    self._tg = tg
                    tg.create_task(self._link_monitor(api), name="zigbee-link")
                    tg.create_task(self._watchdog(api), name="zigbee-watchdog")
                    tg.create_task(self._housekeeping(), name="zigbee-housekeeping")
        except BaseExceptionGroup as eg:
            leaf = _first_leaf(eg)
            if isinstance(leaf, Exception):
                raise leaf from eg
            raise
        finally:
            self.connected = False
            self._up.clear()
            self._tg = None
            self._ieee_lookups.clear()
            for handle in self._motion_timers.values():
                handle.cancel()
            self._motion_timers.clear()
            self._save_table()

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[ZnpApi]:
        api = ZnpApi("zigbee")
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
            await self._probe(api, link)
            yield api
        finally:
            unsubscribe()
            self._api = None
            for k in self._old_frames:
                self._old_frames[k] += {
                    "frames_in": api.counters.frames_in,
                    "frames_out": api.counters.frames_out,
                    "bad_frames": api.framer.bad_frames,
                    "garbage_bytes": api.framer.garbage_bytes,
                }[k]
            await api.aclose()

    async def _probe(self, api: ZnpApi, link: ByteLink) -> None:
        if self.config.skip_bootloader:
            # CC2652 boards: RTS/DTR toggle resets or skips the serial bootloader
            link.set_control_lines(dtr=False, rts=False)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
            link.set_control_lines(rts=True)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
            link.set_control_lines(rts=False)
            await asyncio.sleep(BOOTLOADER_TOGGLE_S)
        for attempt in range(PROBE_ATTEMPTS):
            try:
                await api.request(c.SYS_PING, wait_s=PING_TIMEOUT)
            except TimeoutError:
                if self.config.skip_bootloader and attempt == 0:
                    api.write_raw(b"\xef")  # the bootloader's "run the application" byte
                    await asyncio.sleep(BOOTLOADER_WAIT_S)
                continue
            return
        raise TransientError(f"no answer from the stick at {self.config.port}")

    async def _version(self, api: ZnpApi) -> None:
        ver = await api.request(c.SYS_VERSION)
        product = int(ver["ProductId"])
        rev = ver.fields.get("CodeRevision")
        self.info.product = product
        self.info.code_revision = rev
        self.info.firmware = f"{PRODUCTS.get(product, f'Z-Stack product {product}')}" + (
            f" {rev}" if rev else ""
        )

    async def _start_network(self, api: ZnpApi, *, allow_form: bool) -> None:
        zstack3 = self.info.product != 0
        marker = NvId.HAS_CONFIGURED_ZSTACK3 if zstack3 else NvId.HAS_CONFIGURED_ZSTACK1
        configured = await self._nv_read(api, marker) == MARKER
        if configured:
            await self._resume(api)
            self.counters["networks_resumed"] += 1
        elif allow_form:
            await self._refuse_to_orphan(api, zstack3)
            await self._form(api, zstack3, None)
        else:
            raise NeedsHumanError("the stick has no network configured")
        await self._startup_common(api)

    async def _refuse_to_orphan(self, api: ZnpApi, zstack3: bool) -> None:
        """Never form a new network over one that existed: it would orphan every device.

        A stick without our marker is new or re-flashed. If a backup of our network exists,
        or the stick says it is on a network (BDB "node is on a network", Z-Stack 3), a human
        decides: restore the backup, or move it away to start over.
        """
        if self.config.state_dir is not None:
            path = self.config.state_dir / BACKUP_FILE
            if path.exists():
                raise NeedsHumanError(
                    f"the stick has no network but a backup exists ({path}): run "
                    "`migw zigbee restore FILE` (or move the backup away to form a new network)"
                )
        if zstack3:
            formed = await self._nv_read(api, NvId.BDBNODEISONANETWORK) == b"\x01"
        else:  # Z-Stack 1.2 has no BDB item: the NIB has a channel and a loaded key
            nib = await self._nv_read(api, NvId.NIB)
            formed = (
                nib is not None
                and len(nib) > NIB_KEY_LOADED_12
                and nib[NIB_CHANNEL_12] != 0
                and nib[NIB_KEY_LOADED_12] == 1
            )
        if formed:
            raise NeedsHumanError(
                "the stick is on a network migw did not configure: restore a backup with "
                "`migw zigbee restore FILE`, or reset the stick to form a new network"
            )

    async def _startup_common(self, api: ZnpApi) -> None:
        # sleepy Xiaomi children are dropped by child ageing: keep it off
        await self._ensure_nv(api, NvId.NWK_CHILD_AGE_ENABLE, b"\x00")
        dev = await api.request(c.UTIL_GET_DEVICE_INFO)
        nwk = await api.request(c.ZDO_EXT_NWK_INFO)
        self.info.ieee = str(dev["IEEE"])
        self.info.pan_id = int(nwk["PanId"])
        self.info.extended_pan_id = str(nwk["ExtendedPanId"])
        self.info.channel = int(nwk["Channel"])
        await self._register_endpoints(api)
        self._check(await api.request(c.ZDO_MSG_CB_REGISTER, ClusterId=0xFFFF), "ZDO callbacks")
        _LOGGER.info(
            "zigbee network up: %s, channel %s, PAN 0x%04X",
            self.info.firmware,
            self.info.channel,
            self.info.pan_id,
        )

    async def _resume(self, api: ZnpApi) -> None:
        """Start the configured network without writing any network NV item."""
        dev = await api.request(c.UTIL_GET_DEVICE_INFO)
        if dev["DeviceState"] == t.DeviceState.ZB_COORD:
            return
        started = api.listen(c.ZDO_STATE_CHANGE_IND, {"State": t.DeviceState.ZB_COORD})
        try:
            rsp = await api.request(c.ZDO_STARTUP_FROM_APP, StartDelay=100)
            if rsp["State"] == t.StartupState.NOT_STARTED:
                where = (
                    f" (the last automatic backup is {self.config.state_dir / BACKUP_FILE})"
                    if self.config.state_dir is not None
                    else ""
                )
                raise NeedsHumanError(
                    "the stick was configured by us but has lost its network: restore a "
                    f"backup with `migw zigbee restore FILE`{where}"
                )
            await api.wait(started, STARTUP_TIMEOUT)
        finally:
            api.cancel(started)

    async def _form(self, api: ZnpApi, zstack3: bool, params: bk.NetworkInfo | None) -> None:
        if params is None:
            pan = 0x0001 + secrets.randbelow(0xFFF6)
            ext_le = secrets.token_bytes(8)
            key = secrets.token_bytes(16)
            channel = self.config.channel
        else:
            pan = params.pan_id
            ext_le = bytes.fromhex(params.extended_pan_id)[::-1]
            key = params.network_key
            channel = params.channel
        mask = (1 << channel).to_bytes(4, "little")
        _LOGGER.info("forming a zigbee network on channel %d", channel)
        await self._nv_write(api, NvId.STARTUP_OPTION, b"\x03")  # clear state and config
        await self._reset(api)
        if params is not None:
            await self._nv_write(api, NvId.EXTADDR, bytes.fromhex(params.coordinator_ieee)[::-1])
            if params.tclk_seed is not None:
                await self._nv_write(api, NvId.TCLK_SEED, params.tclk_seed)
        await self._nv_write(api, NvId.LOGICAL_TYPE, b"\x00")
        await self._nv_write(api, NvId.ZDO_DIRECT_CB, b"\x01")
        await self._nv_write(api, NvId.CHANLIST, mask)
        await self._nv_write(api, NvId.PANID, pan.to_bytes(2, "little"))
        await self._nv_write(api, NvId.EXTENDED_PAN_ID, ext_le)
        await self._nv_write(api, NvId.APS_USE_EXT_PANID, ext_le)
        await self._nv_write(api, NvId.PRECFGKEY, key)
        await self._nv_write(api, NvId.PRECFGKEYS_ENABLE, b"\x00")
        started = api.listen(c.ZDO_STATE_CHANGE_IND, {"State": t.DeviceState.ZB_COORD})
        try:
            if zstack3:
                for primary, m in ((1, int.from_bytes(mask, "little")), (0, 0)):
                    rsp = await api.request(c.APP_CNF_BDB_SET_CHANNEL, IsPrimary=primary, Channel=m)
                    self._check(rsp, "BDB set channel")
                rsp = await api.request(
                    c.APP_CNF_BDB_START_COMMISSIONING, Mode=t.BDBCommissioningMode.NWK_FORMATION
                )
                self._check(rsp, "BDB start commissioning")
            else:
                await api.request(c.ZDO_STARTUP_FROM_APP, StartDelay=100)
            await api.wait(started, FORMATION_TIMEOUT)
        finally:
            api.cancel(started)
        if params is not None and params.frame_counter:
            await self._write_frame_counter(
                api, params.frame_counter + FRAME_COUNTER_INCREMENT, ext_le
            )
        marker = NvId.HAS_CONFIGURED_ZSTACK3 if zstack3 else NvId.HAS_CONFIGURED_ZSTACK1
        await self._nv_write(api, marker, MARKER)
        self.counters["networks_formed"] += 1

    async def _reset(self, api: ZnpApi) -> None:
        self._expect_reset = True
        waiter = api.listen(c.SYS_RESET_IND)
        try:
            api.send_areq(c.SYS_RESET_REQ, Type=t.ResetType.SOFT)
            await api.wait(waiter, RESET_TIMEOUT)
        finally:
            api.cancel(waiter)
            self._expect_reset = False

    async def _register_endpoints(self, api: ZnpApi) -> None:
        rsp, eps = await api.request_then(
            c.ZDO_ACTIVE_EP_REQ,
            c.ZDO_ACTIVE_EP_RSP,
            {"NWK": 0x0000},
            callback_wait_s=STARTUP_TIMEOUT / 4,
            DstAddr=0x0000,
            NWKAddrOfInterest=0x0000,
        )
        active = list(eps["ActiveEndpoints"]) if eps is not None else []
        if COORDINATOR_ENDPOINT in active:
            return
        rsp = await api.request(
            c.AF_REGISTER,
            Endpoint=COORDINATOR_ENDPOINT,
            ProfileId=HA_PROFILE,
            DeviceId=0x0005,  # configuration tool
            DeviceVersion=0,
            LatencyReq=0,
            InputClusters=ENDPOINT_INPUT,
            OutputClusters=ENDPOINT_OUTPUT,
        )
        if rsp["Status"] not in (t.Status.SUCCESS, t.Status.APS_DUPLICATE_ENTRY):
            self._check(rsp, "AF register")

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
            await asyncio.sleep(WATCHDOG_INTERVAL)
            try:
                await api.request(c.SYS_PING, wait_s=PING_TIMEOUT * 3)
                misses = 0
            except TimeoutError:
                misses += 1
                self.counters["watchdog_failures"] += 1
                if misses >= WATCHDOG_MISSES:
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
            await asyncio.sleep(min(SAVE_INTERVAL, self.config.backup_interval_s))

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

    # --- NV helpers ---------------------------------------------------------------------

    async def _nv_read(self, api: ZnpApi, nvid: int) -> bytes | None:
        rsp = await api.request(c.SYS_OSAL_NV_READ, Id=nvid, Offset=0)
        status = rsp["Status"]
        if status == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if status != t.Status.SUCCESS:
            return None
        return bytes(rsp["Value"])

    async def _nv_read_secret(self, api: ZnpApi, nvid: int) -> bytes | None:
        """An item holding key material: Z-Stack 1.2 refuses SYS_OSAL_NV_READ of those
        (INVALID_PARAMETER) but answers ZB_READ_CONFIGURATION for ids up to 0xFF."""
        value = await self._nv_read(api, nvid)
        if value is not None or nvid > 0xFF:
            return value
        try:
            rsp = await api.request(c.ZB_READ_CONFIGURATION, ConfigId=nvid)
        except CommandNotRecognized:  # a build without the SAPI subsystem
            return None
        if rsp["Status"] == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if rsp["Status"] != t.Status.SUCCESS or rsp["ConfigId"] != nvid:
            return None
        return bytes(rsp["Value"])

    async def _nv_write(self, api: ZnpApi, nvid: int, value: bytes) -> None:
        rsp = await api.request(c.SYS_OSAL_NV_WRITE, Id=nvid, Offset=0, Value=value)
        status = rsp["Status"]
        if status in (t.Status.NV_ITEM_UNINIT, t.Status.INVALID_PARAMETER):
            init = await api.request(
                c.SYS_OSAL_NV_ITEM_INIT, Id=nvid, ItemLen=len(value), Value=value
            )
            if init["Status"] == t.Status.NV_OPER_FAILED:
                raise NeedsHumanError(NVRAM_CORRUPTED)
            rsp = await api.request(c.SYS_OSAL_NV_WRITE, Id=nvid, Offset=0, Value=value)
            status = rsp["Status"]
        if status == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if status != t.Status.SUCCESS:
            raise ProtocolError(f"NV write of 0x{nvid:04X} failed: {t.Status(status).name}")

    async def _ensure_nv(self, api: ZnpApi, nvid: int, value: bytes) -> None:
        if await self._nv_read(api, nvid) != value:
            await self._nv_write(api, nvid, value)

    async def _read_frame_counter(self, api: ZnpApi, ext_pan: str) -> int:
        """The NWK outgoing frame counter; where it lives depends on the stack version.

        Z-Stack 1.2: after the key in NWKKEY (0x0082). Z-Stack 3.0.x (CC2530/CC2531, no
        extended NV): the legacy security material table, OSAL items 0x0075-0x0080.
        Z-Stack 3.x.0: the extended NV table (system 1, item 7). A table entry is the
        counter and the extended PAN id it belongs to; ours wins over the global one (FF..).
        """
        if self.info.product == PRODUCT_ZSTACK_12:
            value = await self._nv_read_secret(api, NvId.NWKKEY)
            return int.from_bytes(value[17:21], "little") if value and len(value) >= 21 else 0
        ext_le = bytes.fromhex(ext_pan)[::-1]
        best = 0
        for value in await self._sec_material_entries(api):
            counter = int.from_bytes(value[:4], "little")
            if value[4:12] == ext_le:
                return counter
            if value[4:12] == b"\xff" * 8:
                best = max(best, counter)
        return best

    async def _sec_material_entries(self, api: ZnpApi) -> list[bytes]:
        out: list[bytes] = []
        if self.info.product == PRODUCT_ZSTACK_30X:
            for nvid in range(
                LEGACY_NWK_SEC_MATERIAL_TABLE_START, LEGACY_NWK_SEC_MATERIAL_TABLE_END + 1
            ):
                value = await self._nv_read(api, nvid)
                if value is None or len(value) < 12:
                    break
                out.append(value)
            return out
        for sub in range(4):
            rsp = await api.request(
                c.BY_NAME["SYS_NV_READ"],
                SysId=NVINTF_SYSID_ZSTACK,
                ItemId=EX_NWK_SEC_MATERIAL_TABLE,
                SubId=sub,
                Offset=0,
                Length=12,
            )
            if rsp["Status"] == t.Status.NV_OPER_FAILED:
                raise NeedsHumanError(NVRAM_CORRUPTED)
            value = bytes(rsp["Value"]) if rsp["Status"] == t.Status.SUCCESS else b""
            if len(value) < 12:
                break
            out.append(value)
        return out

    async def _write_frame_counter(self, api: ZnpApi, counter: int, ext_le: bytes) -> None:
        """Write the NWK frame counter where this stack version keeps it (see the reader)."""
        fc = counter.to_bytes(4, "little")
        if self.info.product == PRODUCT_ZSTACK_12:
            old = await self._nv_read_secret(api, NvId.NWKKEY)
            if old is None or len(old) < 21:
                raise ProtocolError("the stick has no NWKKEY item to hold the frame counter")
            await self._nv_write(api, NvId.NWKKEY, old[:17] + fc + old[21:])
            return
        value = fc + ext_le
        if self.info.product == PRODUCT_ZSTACK_30X:
            await self._nv_write(api, LEGACY_NWK_SEC_MATERIAL_TABLE_START, value)
            # other entries (an older network's) are blanked, as a new table would be
            for nvid in range(
                LEGACY_NWK_SEC_MATERIAL_TABLE_START + 1, LEGACY_NWK_SEC_MATERIAL_TABLE_END + 1
            ):
                if await self._nv_read(api, nvid) is None:
                    break
                await self._nv_write(api, nvid, bytes(12))
            return
        rsp = await api.request(
            c.BY_NAME["SYS_NV_WRITE"],
            SysId=NVINTF_SYSID_ZSTACK,
            ItemId=EX_NWK_SEC_MATERIAL_TABLE,
            SubId=0,
            Offset=0,
            Value=value,
        )
        self._check(rsp, "NV write of the NWK frame counter")

    # --- callbacks (run in the reader: no awaits, background work goes to the TaskGroup) --

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._tg is None:
            coro.close()
            return
        self._tg.create_task(self._guarded(coro, name), name=name)

    async def _guarded(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except (DriverError, TimeoutError) as exc:
            _LOGGER.debug("%s: %s", name, exc)

    def _on_callback(self, msg: Message) -> None:
        cmd = msg.command
        f = msg.fields
        if cmd is c.AF_INCOMING_MSG:
            self._on_incoming(msg)
        elif cmd is c.ZDO_TC_DEV_IND:
            self._seen_device(str(f["SrcIEEE"]), int(f["SrcNwk"]), announce=False)
        elif cmd is c.ZDO_END_DEVICE_ANNCE_IND:
            self._seen_device(str(f["IEEE"]), int(f["NWK"]), announce=True)
        elif cmd is c.ZDO_LEAVE_IND:
            self._left(str(f["IEEE"]))
        elif cmd is c.ZDO_PERMIT_JOIN_IND:
            self.permit_join_until = time.monotonic() + int(f["Duration"])
        elif cmd is c.BY_NAME["ZDO_IEEE_ADDR_RSP"] and f["Status"] == t.Status.SUCCESS:
            if int(f["NWK"]) in self._ieee_lookups:
                self._ieee_lookups.discard(int(f["NWK"]))
                self._seen_device(str(f["IEEE"]), int(f["NWK"]), announce=False)
        elif cmd is c.SYS_RESET_IND and not self._expect_reset:
            _LOGGER.warning("the stick reset itself (reason %s)", f["Reason"].name)
            if self._unexpected_reset is not None:
                self._unexpected_reset.set()

    def _seen_device(self, ieee: str, nwk: int, *, announce: bool) -> None:
        rec = self.table.get(ieee)
        now = time.time()
        if rec is None:
            rec = self.table.put(DeviceRecord(ieee=ieee, nwk=nwk, joined=now, last_seen=now))
            self.counters["joins"] += 1
            _LOGGER.info("zigbee device %s joined as 0x%04X", ieee, nwk)
            self._save_table()
            self.listener.device_changed(rec)
        elif rec.nwk != nwk:
            _LOGGER.info("zigbee device %s moved from 0x%04X to 0x%04X", ieee, rec.nwk, nwk)
            rec = self.table.put(dataclasses.replace(rec, nwk=nwk, last_seen=now))
            self._save_table()
            self.listener.device_changed(rec)
        if announce and rec.model is None:
            self._spawn(self._interview(rec.ieee), f"zigbee-interview-{ieee}")

    def _left(self, ieee: str) -> None:
        rec = self.table.remove(ieee)
        if rec is None:
            return
        self.counters["leaves"] += 1
        self.interpreter.forget(ieee)
        handle = self._motion_timers.pop(ieee, None)
        if handle is not None:
            handle.cancel()
        self._save_table()
        _LOGGER.info("zigbee device %s left", ieee)
        self.listener.device_left(ieee)

    async def _interview(self, ieee: str) -> None:
        """Fast interview for sleepy devices: ask Basic model/manufacturer once, right away.

        Xiaomi devices usually send their model in a Basic report right after joining; the
        read covers the ones that do not. Whatever arrives first identifies the device.
        """
        rec = self.table.get(ieee)
        if rec is None:
            return
        seen = self._model_seen.setdefault(ieee, asyncio.Event())
        if rec.model is None:
            data = zf.read_attributes(cl.BASIC, self._next_tsn(), (0x0004, 0x0005))
            with contextlib.suppress(DriverError, TimeoutError):
                await self._send_zcl(rec.nwk, 1, cl.BASIC, data, ack=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INTERVIEW_TIMEOUT):
                await seen.wait()
        self._model_seen.pop(ieee, None)

    def _on_incoming(self, msg: Message) -> None:
        f = msg.fields
        nwk = int(f["SrcAddr"])
        rec = self.table.by_nwk(nwk)
        if rec is None:
            self.counters["unknown_source"] += 1
            if (
                nwk not in self._ieee_lookups
                and len(self._ieee_lookups) < MAX_IEEE_LOOKUPS
                and self._tg is not None
            ):
                self._ieee_lookups.add(nwk)
                self._spawn(self._lookup_ieee(nwk), f"zigbee-ieee-{nwk:04x}")
            return
        cluster = int(f["ClusterId"])
        src_ep = int(f["SrcEndpoint"])
        res = self.interpreter.interpret(rec.ieee, rec.model, cluster, src_ep, bytes(f["Data"]))
        if res.duplicate:
            return
        lqi = int(f["LQI"])
        changes: dict[str, Any] = {"last_seen": time.time()}
        notify = rec.lqi is None or abs(rec.lqi - lqi) >= LQI_NOTIFY_DELTA
        changes["lqi"] = lqi
        if src_ep not in rec.endpoints:
            changes["endpoints"] = tuple(sorted({*rec.endpoints, src_ep}))
        if res.model is not None and res.model != rec.model:
            spec = xiaomi.spec_for(res.model)
            changes["model"] = res.model
            changes["sleepy"] = spec.sleepy if spec is not None else None
            notify = True
            _LOGGER.info("zigbee device %s is a %s", rec.ieee, res.model)
        if res.manufacturer is not None and res.manufacturer != rec.manufacturer:
            changes["manufacturer"] = res.manufacturer
            notify = True
        rec = self.table.update(rec.ieee, **changes) or rec
        if "model" in changes:
            self._save_table()
            ev = self._model_seen.get(rec.ieee)
            if ev is not None:
                ev.set()
        if notify:
            self.listener.device_changed(rec)
        for metric, value in res.readings:
            self.listener.reading(rec.ieee, metric, value)
        for action, button in res.events:
            self.listener.event(rec.ieee, action, button)
        if res.motion:
            self._arm_motion_clear(rec)
        if res.default_response and res.frame is not None and not f["WasBroadcast"]:
            data = zf.default_response(res.frame.header)
            self._spawn(
                self._send_zcl_quiet(nwk, src_ep, cluster, data), f"zigbee-defrsp-{nwk:04x}"
            )

    def _arm_motion_clear(self, rec: DeviceRecord) -> None:
        spec = xiaomi.spec_for(rec.model)
        delay = self.config.motion_clear_s or (spec.motion_clear_s if spec else None) or 90.0
        old = self._motion_timers.pop(rec.ieee, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._motion_timers[rec.ieee] = loop.call_later(delay, self._motion_clear, rec.ieee)

    def _motion_clear(self, ieee: str) -> None:
        self._motion_timers.pop(ieee, None)
        if self.table.get(ieee) is not None:
            self.listener.reading(ieee, "motion", False)

    async def _lookup_ieee(self, nwk: int) -> None:
        try:
            api = self._require_api()
            await api.request(c.BY_NAME["ZDO_IEEE_ADDR_REQ"], NWK=nwk, RequestType=0, StartIndex=0)
            await asyncio.sleep(INTERVIEW_TIMEOUT)
        finally:  # a failed or cancelled lookup must not block the next one for this sender
            self._ieee_lookups.discard(nwk)

    # --- sending --------------------------------------------------------------------------

    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def _zcl_command(self, cmd_id: int) -> bytes:
        return zf.cluster_command(self._next_tsn(), cmd_id)

    async def _send_zcl(
        self, nwk: int, endpoint: int, cluster: int, data: bytes, *, ack: bool = True
    ) -> int:
        """AF_DATA_REQUEST, then its AF_DATA_CONFIRM status (soft failures are returned)."""
        api = self._require_api()
        self._trans_id = (self._trans_id + 1) & 0xFF
        trans_id = self._trans_id
        rsp, confirm = await api.request_then(
            c.AF_DATA_REQUEST,
            c.AF_DATA_CONFIRM,
            {"TSN": trans_id},
            callback_wait_s=CONFIRM_TIMEOUT,
            DstAddr=nwk,
            DstEndpoint=endpoint,
            SrcEndpoint=COORDINATOR_ENDPOINT,
            ClusterId=cluster,
            TSN=trans_id,
            Options=t.TransmitOptions.ACK_REQUEST if ack else t.TransmitOptions.NONE,
            Radius=30,
            Data=data,
        )
        if confirm is None:
            return int(rsp["Status"])
        return int(confirm["Status"])

    async def _send_zcl_quiet(self, nwk: int, endpoint: int, cluster: int, data: bytes) -> None:
        with contextlib.suppress(DriverError, TimeoutError):
            await self._send_zcl(nwk, endpoint, cluster, data, ack=False)

    def _require_api(self) -> ZnpApi:
        if self._api is None:
            raise TransientError("the zigbee stick is not connected")
        return self._api

    @staticmethod
    def _check(rsp: Message, what: str) -> None:
        status = rsp.fields.get("Status", t.Status.SUCCESS)
        if status == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if status != t.Status.SUCCESS:
            raise ProtocolError(f"{what} failed: {t.Status(status).name} (0x{int(status):02X})")


def write_secret_json(path: Path, doc: Any) -> None:
    """Atomically write a JSON file readable by its owner only (it holds the network key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _network_identity(doc: Any) -> tuple[str, str] | None:
    try:
        return str(doc["extended_pan_id"]).lower(), str(doc["network_key"]["key"]).lower()
    except (KeyError, TypeError):
        return None


def keep_other_network_backup(path: Path, doc: Any) -> Path | None:
    """Move ``path`` aside when it holds another network than ``doc`` (never lose a backup).

    The old file is kept as ``<stem>.<extended pan id>.<UTC timestamp>.json`` (mode 0600);
    returns its new path, or None when there was nothing to keep.
    """
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        old = None
    old_id = _network_identity(old)
    if old_id is not None and old_id == _network_identity(doc):
        return None
    ext = old_id[0] if old_id is not None and old_id[0].isalnum() else "unknown"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.stem}.{ext[:16]}.{stamp}{path.suffix}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.{ext[:16]}.{stamp}-{n}{path.suffix}")
        n += 1
    os.chmod(path, 0o600)
    os.replace(path, target)
    fsync_dir(path.parent)
    _LOGGER.warning("kept the backup of another zigbee network as %s", target)
    return target
