"""A TI Z-Stack coordinator (ZNP) simulator on a real pty.

The real driver opens the pty's slave side like a USB stick. The simulator answers the MT
commands a coordinator host uses (NV store, version, formation through BDB or
STARTUP_FROM_APP, endpoint registration, permit join, AF data requests with data confirms),
runs scripted Aqara devices (:mod:`hw_mocks.aqara`) that join, announce, report and obey
on/off, and injects faults: corrupted bytes, slow answers, a stick that stops answering,
broken NVRAM, and unplug/replug (the port path vanishes and comes back, NV kept).

Run ``python -m hw_mocks.znp`` to get a stick with one device of every model on a pty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import secrets
import tempfile
import time
import tty
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from drivers.aio import cancel_and_wait
from drivers.errors import ParseError
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Kind, Message
from drivers.zigbee.znp.types import NvId
from hw_mocks.aqara import MODELS, Report, SimDevice

_LOGGER = logging.getLogger(__name__)

#: A payload longer than this reaches the host as AF_INCOMING_MSG_EXT + AF_DATA_RETRIEVE.
HOLD_OVER = 200
#: Delay of asynchronous indications after their SRSP.
CALLBACK_DELAY = 0.005
#: How long a sleepy device stays awake after it sent something.
AWAKE_S = 3.0
#: Delay before a MAC_TRANSACTION_EXPIRED confirm for a sleeping device (real: ~7.7 s).
EXPIRE_S = 0.2
#: Gap between the join of two pending devices.
JOIN_GAP_S = 0.05

OK = t.Status.SUCCESS
#: NIB (NV 0x0021): TI's nwkIB_t with its firmware defaults, packed on CC2530/CC2531
#: (Z-Stack 1.2 and 3.0.x, 110 bytes) or aligned on CC26xx (3.x.0, 116 bytes), and the
#: offsets of the fields a host reads (layout as zigpy-znp's NIB struct and herdsman's).
NIB_DEFAULTS = {
    False: bytes.fromhex(
        "000502001400001e0000000105018f070002051efeff00feff0000000000000000ffff00000000000f0f"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000003c030001780a010000000000"
    ),
    True: bytes.fromhex(
        "000502001400001e0000000105018f00070002051e00feff0000feff0000000000000000ffff00000000"
        "00000f0f0000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000003c030001780a0100000000000000"
    ),
}
NIB_OFFSETS = {
    False: {
        "dev_address": 20,
        "channel": 22,
        "coord_address": 23,
        "pan_id": 33,
        "state": 35,
        "channel_list": 37,
        "ext_pan_id": 53,
        "key_loaded": 61,
        "manager": 105,
    },
    True: {
        "dev_address": 22,
        "channel": 24,
        "coord_address": 26,
        "pan_id": 36,
        "state": 38,
        "channel_list": 41,
        "ext_pan_id": 57,
        "key_loaded": 65,
        "manager": 110,
    },
}
NWK_STATE_ROUTER = 8  # nwkState of a formed coordinator
#: Z-Stack 1.2 keeps the NWK frame counter after the key in NWKKEY (seq, key, counter).
#: Every version has the item: 21 bytes packed, 24 aligned (the counter at offset 20); hosts
#: (zigbee-herdsman) tell the alignment from its length.
NWKKEY = 0x0082
NWK_ALTERN_KEY_INFO = 0x003B
#: Z-Stack 3.0.x: the legacy NWK security material table (counter, extended PAN id).
LEGACY_SEC_MATERIAL_START = 0x0075
#: Items Z-Stack 1.2 will not read out with SYS_OSAL_NV_READ (implicit certificate, CA
#: public key, device private key, both key infos, the pre-configured key, the TCLK seed,
#: the TCLK table 0x0111-0x01FF and the APS link key data 0x0201-0x02FF).
SECURE_NV_IDS = frozenset(
    {0x0069, 0x006A, 0x006B, 0x003A, 0x003B, 0x0062, 0x0101}
    | set(range(0x0111, 0x0200))
    | set(range(0x0201, 0x0300))
)


#: Requests after which the NV on disk is brought up to date.
NV_CHANGING = frozenset(
    {
        "SYS_OSAL_NV_WRITE",
        "SYS_OSAL_NV_WRITE_EXT",
        "SYS_OSAL_NV_ITEM_INIT",
        "SYS_OSAL_NV_DELETE",
        "SYS_NV_WRITE",
        "SYS_NV_CREATE",
        "SYS_NV_DELETE",
        "SYS_RESET_REQ",
        "ZB_WRITE_CONFIGURATION",
        "ZDO_STARTUP_FROM_APP",
        "APP_CNF_BDB_START_COMMISSIONING",
    }
)


def _aligned(product: int) -> bool:
    """CC26xx (Z-Stack 3.x.0) aligns NV structs; CC2530/CC2531 (1.2, 3.0.x) packs them."""
    return product == 1


def _default_nv(ieee: str, product: int = 1) -> dict[int, bytes]:
    aligned = _aligned(product)
    return _key_tables(product)[0] | {
        NvId.EXTADDR: bytes.fromhex(ieee)[::-1],
        NvId.STARTUP_OPTION: b"\x00",
        NvId.NIB: NIB_DEFAULTS[aligned],
        NvId.EXTENDED_PAN_ID: b"\xff" * 8,
        NvId.APS_USE_EXT_PANID: bytes(8),
        NvId.PRECFGKEY: bytes(16),
        NvId.PRECFGKEYS_ENABLE: b"\x01",
        NvId.PANID: b"\xff\xff",
        NvId.CHANLIST: (0x0800).to_bytes(4, "little"),
        NvId.LOGICAL_TYPE: b"\x00",
        NvId.ZDO_DIRECT_CB: b"\x00",
        NvId.NWK_CHILD_AGE_ENABLE: b"\x01",
        # routing settings every firmware has (zigpy-znp reads and writes them at start)
        NvId.BCAST_DELIVERY_TIME: b"\x1e",
        NvId.CONCENTRATOR_ENABLE: b"\x01",
        NvId.CONCENTRATOR_DISCOVERY: b"\x78",
        NvId.CONCENTRATOR_RC: b"\x01",
        NvId.SRC_RTG_EXPIRY_TIME: b"\xff",
        NvId.BDBNODEISONANETWORK: b"\x00",
        NvId.NWK_ACTIVE_KEY_INFO: bytes(17),
        NWK_ALTERN_KEY_INFO: bytes(17),
        NWKKEY: bytes(24 if aligned else 21),
        # 3.x: the TC link key seed; on 1.2 the same id is the first TC link key table entry
        # (IEEE, the ZigBeeAlliance09 key, counters: 32 bytes)
        NvId.TCLK_SEED: (
            secrets.token_bytes(16) if product else b"\xff" * 8 + b"ZigBeeAlliance09" + bytes(8)
        ),
    }


#: Per-device tables of Z-Stack 3 (what a unique TC link key needs): the address manager
#: (3.x.0: extended NV item 1 per entry; 3.0.x: one OSAL array 0x0023), the TC link key
#: table (ex item 4; OSAL 0x0111-), the APS key data table (ex item 6; OSAL 0x0201-) and
#: the APS link key table (OSAL 0x004C, a count then entries). Layouts: zigpy-znp's
#: AddrMgrEntry, TCLKDevEntry, APSKeyDataTableEntry, APSLinkKeyTable.
KEY_TABLE_SIZE = 8
ADDRMGR = 0x0023
APS_LINK_KEY_TABLE = 0x004C
LEGACY_TCLK_TABLE_START = 0x0111
LEGACY_APS_KEY_DATA_START = 0x0201
EX_ADDRMGR, EX_TCLK_TABLE, EX_APS_KEY_DATA_TABLE = 0x0001, 0x0004, 0x0006


def _empty_addr(product: int) -> bytes:
    if product == 1:  # aligned, type 0xFF
        return b"\xff" * 12
    return b"\x00" + b"\xff" * 10


def _empty_tclk(product: int) -> bytes:
    return bytes(16) + b"\xff\x00\x00" + (b"\x00" if product == 1 else b"")


def _key_tables(product: int) -> tuple[dict[int, bytes], dict[tuple[int, int, int], bytes]]:
    """Blank per-device tables of a Z-Stack 3 stick (none on 1.2): OSAL items, ex NV items."""
    if product == 0:
        return {}, {}
    n = KEY_TABLE_SIZE
    link_entry = 6 if product == 1 else 5
    nv = {APS_LINK_KEY_TABLE: bytes(2 + n * link_entry)}
    ex: dict[tuple[int, int, int], bytes] = {}
    if product == 1:
        for i in range(n):
            ex[(1, EX_ADDRMGR, i)] = _empty_addr(product)
            ex[(1, EX_TCLK_TABLE, i)] = _empty_tclk(product)
            ex[(1, EX_APS_KEY_DATA_TABLE, i)] = bytes(24)
    else:
        nv[ADDRMGR] = _empty_addr(product) * n
        for i in range(n):
            nv[LEGACY_TCLK_TABLE_START + i] = _empty_tclk(product)
            nv[LEGACY_APS_KEY_DATA_START + i] = bytes(24)
    return nv, ex


def incoming_msg(
    src: int,
    cluster: int,
    data: bytes,
    *,
    src_ep: int = 1,
    dst_ep: int = 1,
    broadcast: bool = False,
    lqi: int = 100,
    stamp: int = 0,
) -> frames.Frame:
    """AF_INCOMING_MSG as Z-Stack sends it for a device's ZCL frame: group 0, no APS
    security, the MAC source the same as the network source (one hop), radius 29."""
    return c.AF_INCOMING_MSG.rsp(
        GroupId=0,
        ClusterId=cluster,
        SrcAddr=src,
        SrcEndpoint=src_ep,
        DstEndpoint=dst_ep,
        WasBroadcast=int(broadcast),
        LQI=lqi,
        SecurityUse=0,
        TimeStamp=stamp,
        TSN=0,
        Data=data,
        MacSrcAddr=src,
        MsgResultRadius=29,
    )


class ZStackSimulator:
    def __init__(
        self,
        *,
        link_path: Path | str | None = None,
        product: int = 1,
        devices: Iterable[SimDevice | str] = (),
        report_interval: float | None = None,
        corruption_rate: float = 0.0,
        answer_delay: float = 0.0,
        ieee: str = "00124b0001c0ffee",
        seed: int | None = None,
        nv_path: Path | str | None = None,
    ) -> None:
        self.product = product
        #: Where the stick keeps its NV across processes (None: in memory only), as a real
        #: stick keeps its flash: a restarted host resumes the same network.
        self.nv_path = Path(nv_path) if nv_path is not None else None
        self.ieee = ieee
        self.rng = random.Random(seed)
        self.corruption_rate = corruption_rate
        self.answer_delay = answer_delay
        self.report_interval = report_interval
        #: Fault: the stick stops answering anything (watchdog test).
        self.mute = False
        #: Fault: requests (by command name) the stick swallows without any answer.
        self.ignore_commands: set[str] = set()
        #: Fault: every NV write fails with NV_OPER_FAILED.
        self.nv_broken = False
        #: Boards that reset when the host opens the port (RTS/DTR) greet it with a
        #: SYS_RESET_IND (power-up) before answering.
        self.reset_ind_on_open = False
        self._greeted = False
        self.nv: dict[int, bytes] = _default_nv(ieee, product)
        self.ex_nv: dict[tuple[int, int, int], bytes] = _key_tables(product)[1]
        self.devices: list[SimDevice] = []
        for d in devices:
            self.add_device(d)
        self.state = t.DeviceState.HOLD
        self.endpoints: dict[int, tuple[int, ...]] = {}
        self.permit_until = 0.0
        self.bdb_channel_mask = 0
        #: Large incoming payloads kept for AF_DATA_RETRIEVE, by their timestamp.
        self.held: dict[int, bytes] = {}
        self._held_stamp = 0
        #: APS groups: (endpoint, group id) -> name
        self.groups: dict[tuple[int, int], bytes] = {}
        self.frame_counter = 0
        self.counters = {
            "frames_in": 0,
            "frames_out": 0,
            "corrupted": 0,
            "formations": 0,
            "nv_writes": 0,
            "resets": 0,
            "plugged": 0,
            "default_responses": 0,
            "dropped_no_endpoint": 0,
        }
        self.commands_seen: list[str] = []
        self._load_nv()
        self._own_link = link_path is None
        self._link_dir: tempfile.TemporaryDirectory[str] | None = None
        if link_path is None:
            self._link_dir = tempfile.TemporaryDirectory(prefix="migw-znp-")
            link_path = Path(self._link_dir.name) / "ttyZNP0"
        self.path = str(link_path)
        self._master: int | None = None
        self._slave: int | None = None
        self._framer = frames.Framer()
        self._handles: set[asyncio.TimerHandle] = set()
        self._reporter: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> ZStackSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.plug()
        if self.report_interval:
            self._reporter = asyncio.create_task(self._report_loop(), name="znp-sim-reporter")

    async def stop(self) -> None:
        reporter, self._reporter = self._reporter, None
        await cancel_and_wait(reporter)
        self.unplug()
        self.save_nv()

    # --- NV on disk ---------------------------------------------------------------------

    def save_nv(self) -> None:
        """Write the NV (and which devices are on the network) to ``nv_path``, atomically."""
        if self.nv_path is None:
            return
        doc = {
            "product": self.product,
            "frame_counter": self.frame_counter,
            "nv": {f"{k:04x}": v.hex() for k, v in sorted(self.nv.items())},
            "ex_nv": {f"{a}:{b:04x}:{c:04x}": v.hex() for (a, b, c), v in self.ex_nv.items()},
            "devices": {d.ieee: d.nwk for d in self.devices if d.nwk is not None},
        }
        self.nv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.nv_path.with_name(self.nv_path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o600)  # it holds the simulated network key
        os.replace(tmp, self.nv_path)

    def _load_nv(self) -> None:
        if self.nv_path is None:
            return
        try:
            doc = json.loads(self.nv_path.read_text(encoding="utf-8"))
            product = int(doc["product"])
            nv = {int(k, 16): bytes.fromhex(v) for k, v in doc["nv"].items()}
            ex_nv: dict[tuple[int, int, int], bytes] = {}
            for key, v in doc["ex_nv"].items():
                a, b, c_ = key.split(":")
                ex_nv[(int(a), int(b, 16), int(c_, 16))] = bytes.fromhex(v)
            joined = {str(k): int(v) for k, v in doc["devices"].items()}
            counter = int(doc["frame_counter"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            _LOGGER.warning("simulated stick NV %s unreadable (%s): factory NV", self.nv_path, exc)
            return
        if product != self.product:  # another firmware: its NV layout does not apply
            _LOGGER.warning("simulated stick NV %s: product %d: factory NV", self.nv_path, product)
            return
        self.nv, self.ex_nv, self.frame_counter = nv, ex_nv, counter
        for dev in self.devices:
            dev.nwk = joined.get(dev.ieee)

    def close(self) -> None:
        """Remove the temporary directory of the port path (after the last stop)."""
        if self._link_dir is not None:
            self._link_dir.cleanup()
            self._link_dir = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        """Power the stick up on a new pty and (re)create the port path."""
        if self._master is not None:
            return
        assert self._loop is not None
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.symlink(os.ttyname(slave), self.path)
        self._framer = frames.Framer()
        self._greeted = False
        # power-up: RAM state is gone, NV stays
        self.state = t.DeviceState.HOLD
        self.endpoints = {}
        self.permit_until = 0.0
        self._loop.add_reader(master, self._readable)
        self.counters["plugged"] += 1

    def unplug(self) -> None:
        """The stick vanishes: port path removed, the host's open port hangs up."""
        for h in self._handles:
            h.cancel()
        self._handles.clear()
        if self._master is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # --- devices ------------------------------------------------------------------------

    def add_device(self, device: SimDevice | str, ieee: str | None = None) -> SimDevice:
        if isinstance(device, str):
            if device not in MODELS:
                raise ValueError(f"no simulated model {device!r}")
            ieee = ieee or "00158d00" + self.rng.getrandbits(32).to_bytes(4, "big").hex()
            device = SimDevice(device, ieee, rng=random.Random(self.rng.random()))
        self.devices.append(device)
        return device

    def device(self, model: str) -> SimDevice:
        return next(d for d in self.devices if d.model == model)

    def by_nwk(self, nwk: int) -> SimDevice | None:
        return next((d for d in self.devices if d.nwk == nwk), None)

    @property
    def network_up(self) -> bool:
        return self.plugged and self.state == t.DeviceState.ZB_COORD

    def join(self, dev: SimDevice) -> None:
        """The device joins through the coordinator (permit join must be open)."""
        used = {d.nwk for d in self.devices}
        nwk = dev.nwk
        while nwk is None or (nwk in used and self.by_nwk(nwk) is not dev):
            nwk = self.rng.randrange(0x0001, 0xFFF7)
        dev.nwk = nwk
        self._send(c.ZDO_TC_DEV_IND.rsp(SrcNwk=nwk, SrcIEEE=dev.ieee, ParentNwk=0))
        self._store_link_key(dev)
        self.announce(dev)
        if not dev.silent_join:
            self.deliver(dev, *dev.model_report())
        self.save_nv()

    def _store_link_key(self, dev: SimDevice) -> None:
        """Z-Stack 3 gives a joining device a unique TC link key derived from the TCLK seed:
        an address manager entry (associated, security) and a TCLK table entry (its shift)."""
        if self.product == 0 or dev.nwk is None:
            return
        ieee_le = bytes.fromhex(dev.ieee)[::-1]
        pad = b"\x00" if self.product == 1 else b""
        addr = b"\x03" + pad.replace(b"\x00", b"\xff") + dev.nwk.to_bytes(2, "little") + ieee_le
        shift = ieee_le[0] % 16
        tclk = (7).to_bytes(4, "little") + (42).to_bytes(4, "little") + ieee_le
        tclk += bytes([0x02, 0x00, shift]) + pad  # verified key, key type NONE, seed shift
        slots = self._addr_slots()
        index = next((i for i, v in enumerate(slots) if v[-8:] in (ieee_le, b"\xff" * 8)), None)
        if index is None:
            return  # the address manager is full: the device gets no unique key
        if self.product == 1:
            self.ex_nv[(1, EX_ADDRMGR, index)] = addr
            self.ex_nv[(1, EX_TCLK_TABLE, index)] = tclk
        else:
            size = len(addr)
            old = self.nv[ADDRMGR]
            self.nv[ADDRMGR] = old[: index * size] + addr + old[(index + 1) * size :]
            self.nv[LEGACY_TCLK_TABLE_START + index] = tclk

    def link_key(self, dev: SimDevice) -> bytes | None:
        """The unique TC link key the device got when it joined (for tests)."""
        ieee_le = bytes.fromhex(dev.ieee)[::-1]
        for i, v in enumerate(self._addr_slots()):
            if v[-8:] == ieee_le:
                tclk = (
                    self.ex_nv[(1, EX_TCLK_TABLE, i)]
                    if self.product == 1
                    else self.nv[LEGACY_TCLK_TABLE_START + i]
                )
                seed, shift = self.nv[NvId.TCLK_SEED][:16], tclk[18]
                rotated = seed[shift:] + seed[:shift]
                return bytes(a ^ b for a, b in zip(rotated, ieee_le * 2, strict=True))
        return None

    def _addr_slots(self) -> list[bytes]:
        if self.product == 1:
            return [self.ex_nv[(1, EX_ADDRMGR, i)] for i in range(KEY_TABLE_SIZE)]
        raw = self.nv.get(ADDRMGR, b"")
        return [raw[i : i + 11] for i in range(0, len(raw), 11)]

    def announce(self, dev: SimDevice, new_nwk: int | None = None) -> None:
        if new_nwk is not None:
            dev.nwk = new_nwk
        assert dev.nwk is not None
        dev.awake_until = time.monotonic() + AWAKE_S
        self._send(
            c.ZDO_END_DEVICE_ANNCE_IND.rsp(
                Src=dev.nwk,
                NWK=dev.nwk,
                IEEE=dev.ieee,
                Capabilities=t.MACCapabilities(dev.capabilities),
            )
        )

    def leave(self, dev: SimDevice) -> None:
        assert dev.nwk is not None
        self._send(c.ZDO_LEAVE_IND.rsp(NWK=dev.nwk, IEEE=dev.ieee, Request=0, Remove=0, Rejoin=0))
        dev.nwk = None
        self.save_nv()

    def report(self, dev: SimDevice) -> list[Report]:
        """One reporting cycle of ``dev`` (returns what was sent)."""
        if dev.nwk is None or not self.network_up:
            return []
        out = dev.reports()
        for rep in out:
            self.deliver(dev, *rep)
        return out

    def report_all(self) -> None:
        for dev in self.devices:
            self.report(dev)

    def deliver(
        self, dev: SimDevice, cluster: int, src_ep: int, data: bytes, broadcast: bool = False
    ) -> None:
        """Hand a device's ZCL frame to the host as AF_INCOMING_MSG."""
        if dev.nwk is None:
            return
        if dev.sleepy:
            dev.awake_until = time.monotonic() + AWAKE_S
        eps = sorted(self.endpoints) if broadcast else sorted(self.endpoints)[:1]
        if not eps:
            self.counters["dropped_no_endpoint"] += 1
            return
        if len(data) > HOLD_OVER:
            self._deliver_held(dev, cluster, src_ep, data, eps[0], broadcast)
            return
        for ep in eps:  # Z-Stack hands a broadcast to every registered endpoint
            self._send(
                incoming_msg(
                    dev.nwk,
                    cluster,
                    data,
                    src_ep=src_ep,
                    dst_ep=ep,
                    broadcast=broadcast,
                    lqi=max(0, min(255, dev.lqi + self.rng.randrange(-10, 10))),
                    stamp=int(time.monotonic() * 1000) & 0xFFFFFFFF,
                )
            )

    def _deliver_held(
        self, dev: SimDevice, cluster: int, src_ep: int, data: bytes, ep: int, broadcast: bool
    ) -> None:
        """Too large for AF_INCOMING_MSG: AF_INCOMING_MSG_EXT with the length only; the
        stick keeps the bytes until the host fetches them with AF_DATA_RETRIEVE."""
        assert dev.nwk is not None
        self._held_stamp = (self._held_stamp + 1) & 0xFFFFFFFF
        self.held[self._held_stamp] = data
        self._send(
            c.AF_INCOMING_MSG_EXT.rsp(
                GroupId=0,
                ClusterId=cluster,
                SrcAddrMode=t.AddrMode.NWK,
                SrcAddr=dev.nwk.to_bytes(2, "little") + bytes(6),
                SrcEndpoint=src_ep,
                SrcPanId=self.pan_id,
                DstEndpoint=ep,
                WasBroadcast=int(broadcast),
                LQI=dev.lqi,
                SecurityUse=0,
                TimeStamp=self._held_stamp,
                TSN=0,
                Data=cd.Held(len(data)),
            )
        )

    def _h_af_data_retrieve(self, f: dict[str, Any]) -> None:
        data = self.held.get(f["TimeStamp"])
        if f["Length"] == 0:  # the host is done: free the buffer
            self.held.pop(f["TimeStamp"], None)
            self._srsp(c.AF_DATA_RETRIEVE, Status=OK, Data=b"")
        elif data is None:
            self._srsp(c.AF_DATA_RETRIEVE, Status=t.Status.FAILURE, Data=b"")
        else:
            chunk = data[f["Index"] : f["Index"] + f["Length"]]
            self._srsp(c.AF_DATA_RETRIEVE, Status=OK, Data=chunk)

    async def _report_loop(self) -> None:
        assert self.report_interval is not None
        while True:
            await asyncio.sleep(self.report_interval * (0.5 + self.rng.random()))
            if not self.network_up:
                continue
            joined = [d for d in self.devices if d.nwk is not None]
            if joined:
                self.report(self.rng.choice(joined))

    # --- wire ---------------------------------------------------------------------------

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return  # no host attached (EIO) or a spurious wake-up
        if self.reset_ind_on_open and not self._greeted and not self.mute:
            self._greeted = True
            self._send(c.SYS_RESET_IND.rsp(Reason=t.ResetReason.POWER_UP, **self._release()))
        for frame in self._framer.feed(data):
            self.counters["frames_in"] += 1
            if self.mute:
                continue
            try:
                self._handle(c.decode(frame))
            except Exception as exc:  # noqa: BLE001 - answer like the stick: RPC error
                # header and length only: the bytes may be key material (PRECFGKEY writes)
                _LOGGER.debug(
                    "simulator cannot handle frame %s (%d data bytes): %s",
                    frame.header,
                    len(frame.data),
                    type(exc).__name__,
                )
                hdr = frame.cmd0 | (frame.cmd_id << 8)
                code = (
                    t.ErrorCode.INVALID_COMMAND_ID
                    if c.lookup(frame) is None
                    else t.ErrorCode.INVALID_LENGTH
                )
                self._srsp(c.RPC_ERROR, ErrorCode=code, RequestHeader=hdr)

    def _write(self, raw: bytes) -> None:
        if self._master is None:
            return
        if self.corruption_rate and self.rng.random() < self.corruption_rate:
            b = bytearray(raw)
            i = self.rng.randrange(1, len(b))
            b[i] ^= 1 << self.rng.randrange(8)
            raw = bytes(b)
            self.counters["corrupted"] += 1
        with contextlib.suppress(OSError):  # host not reading: a real UART drops too
            os.write(self._master, raw)

    def _send(self, frame: frames.Frame) -> None:
        self.counters["frames_out"] += 1
        self._write(frames.encode(frame))

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        handle: asyncio.TimerHandle

        def run() -> None:
            self._handles.discard(handle)
            if self.plugged:
                fn()

        handle = self._loop.call_later(delay, run)
        self._handles.add(handle)

    def _srsp(self, cmd: c.CommandDef, **fields: Any) -> None:
        frame = cmd.frame(Kind.RESPONSE, fields)
        if self.answer_delay:
            self._later(self.answer_delay, lambda: self._send(frame))
        else:
            self._send(frame)

    def _callback(self, cmd: c.CommandDef, delay: float = CALLBACK_DELAY, **fields: Any) -> None:
        frame = cmd.frame(Kind.CALLBACK, fields)
        self._later(self.answer_delay + delay, lambda: self._send(frame))

    # --- MT command handlers ------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        if msg.kind is not Kind.REQUEST:
            return
        name = msg.command.name
        self.commands_seen.append(name)
        if name in self.ignore_commands:
            return
        handler = getattr(self, f"_h_{name.lower()}", None)
        if handler is None:
            hdr = (msg.command.header(Kind.REQUEST)[1] << 8) | msg.command.header(Kind.REQUEST)[0]
            self._srsp(c.RPC_ERROR, ErrorCode=t.ErrorCode.INVALID_COMMAND_ID, RequestHeader=hdr)
            return
        handler(msg.fields)
        if name in NV_CHANGING:
            self.save_nv()

    def _h_sys_ping(self, f: dict[str, Any]) -> None:
        caps = t.MTCapabilities(0x0159 | (0x0400 if self.product else 0))
        self._srsp(c.SYS_PING, Capabilities=caps)

    def _release(self) -> dict[str, Any]:
        """The stick's transport revision, product and Z-Stack release, as SYS_VERSION and
        SYS_RESET_IND report them."""
        return {
            "TransportRev": 2,
            "ProductId": self.product,
            "MajorRel": 2,
            "MinorRel": 7,
            "MaintRel": 1,
        }

    def _h_sys_version(self, f: dict[str, Any]) -> None:
        self._srsp(
            c.SYS_VERSION,
            **self._release(),
            CodeRevision=20240710,
            BootloaderBuildType=t.BootloaderBuildType(0),
            BootloaderRevision=None,
        )

    def _h_sys_reset_req(self, f: dict[str, Any]) -> None:
        self.counters["resets"] += 1
        opt = self.nv.get(NvId.STARTUP_OPTION, b"\x00")[0]
        if opt & 0x02:  # clear state: the network is gone
            fresh = _default_nv(self.ieee, self.product)
            for nvid in (
                NvId.BDBNODEISONANETWORK,
                NvId.NWK_ACTIVE_KEY_INFO,
                NWK_ALTERN_KEY_INFO,
                NvId.NIB,
                NWKKEY,
            ):
                self.nv[nvid] = fresh[nvid]
            tables, self.ex_nv = _key_tables(self.product)
            self.nv.update(tables)
            self.nv.pop(LEGACY_SEC_MATERIAL_START, None)
            for d in self.devices:
                d.nwk = None
        if opt & 0x01:  # clear config
            keep: dict[int, bytes] = {
                NvId.EXTADDR: self.nv[NvId.EXTADDR],
                NvId.TCLK_SEED: self.nv[NvId.TCLK_SEED],
            }
            self.nv = {**_default_nv(self.ieee, self.product), **keep}
        self.nv[NvId.STARTUP_OPTION] = b"\x00"
        self.state = t.DeviceState.HOLD
        self.endpoints = {}
        self._callback(
            c.SYS_RESET_IND, delay=0.02, Reason=t.ResetReason.EXTERNAL, **self._release()
        )

    # NV ---------------------------------------------------------------------------------

    def _counter_nv_id(self) -> int | None:
        """Where this stack version keeps the NWK frame counter in OSAL NV (3.x.0: ex NV)."""
        return {0: NWKKEY, 2: LEGACY_SEC_MATERIAL_START}.get(self.product)

    def _sync_counter_out(self, nvid: int) -> None:
        value = self.nv.get(nvid)
        if value is None or nvid != self._counter_nv_id():
            return
        fc = self.frame_counter.to_bytes(4, "little")
        self.nv[nvid] = value[:17] + fc if nvid == NWKKEY else fc + value[4:]

    def _sync_counter_in(self, nvid: int) -> None:
        value = self.nv.get(nvid)
        if value is None or nvid != self._counter_nv_id():
            return
        raw = value[17:21] if nvid == NWKKEY else value[:4]
        self.frame_counter = int.from_bytes(raw, "little")

    def _refuses(self, nvid: int) -> bool:
        """Z-Stack 1.2 does not let SYS_OSAL_NV_READ read key material (zigpy-znp's
        ``is_secure_nvid``: the key items, the TCLK seed and the TCLK/APS key tables)."""
        return self.product == 0 and nvid in SECURE_NV_IDS

    def _h_zb_read_configuration(self, f: dict[str, Any]) -> None:
        nvid = f["ConfigId"]
        self._sync_counter_out(nvid)
        value = self.nv.get(nvid)
        if value is None:
            self._srsp(c.ZB_READ_CONFIGURATION, Status=t.Status.FAILURE, ConfigId=nvid, Value=b"")
        else:
            self._srsp(c.ZB_READ_CONFIGURATION, Status=OK, ConfigId=nvid, Value=value[:128])

    def _h_sys_osal_nv_read(self, f: dict[str, Any]) -> None:
        self._sync_counter_out(f["Id"])
        value = self.nv.get(f["Id"])
        if value is None or self._refuses(f["Id"]):
            self._srsp(c.SYS_OSAL_NV_READ, Status=t.Status.INVALID_PARAMETER, Value=b"")
        else:
            self._srsp(c.SYS_OSAL_NV_READ, Status=OK, Value=value[f["Offset"] :][:246])

    def _h_sys_osal_nv_read_ext(self, f: dict[str, Any]) -> None:
        value = self.nv.get(f["Id"])
        if value is None or self._refuses(f["Id"]):
            self._srsp(c.SYS_OSAL_NV_READ_EXT, Status=t.Status.INVALID_PARAMETER, Value=b"")
        else:
            self._srsp(c.SYS_OSAL_NV_READ_EXT, Status=OK, Value=value[f["Offset"] :][:246])

    def _nv_write(self, cmd: c.CommandDef, nvid: int, offset: int, value: bytes) -> None:
        if self.nv_broken:
            self._srsp(cmd, Status=t.Status.NV_OPER_FAILED)
            return
        old = self.nv.get(nvid)
        if old is None:
            self._srsp(cmd, Status=t.Status.NV_ITEM_UNINIT)
            return
        if offset + len(value) > len(old):
            self._srsp(cmd, Status=t.Status.NV_BAD_ITEM_LEN)
            return
        self.nv[nvid] = old[:offset] + value + old[offset + len(value) :]
        self._sync_counter_in(nvid)
        self.counters["nv_writes"] += 1
        self._srsp(cmd, Status=OK)

    def _h_sys_osal_nv_write(self, f: dict[str, Any]) -> None:
        self._nv_write(c.SYS_OSAL_NV_WRITE, f["Id"], f["Offset"], f["Value"])

    def _h_sys_osal_nv_write_ext(self, f: dict[str, Any]) -> None:
        self._nv_write(c.SYS_OSAL_NV_WRITE_EXT, f["Id"], f["Offset"], f["Value"])

    def _h_sys_osal_nv_item_init(self, f: dict[str, Any]) -> None:
        if self.nv_broken:
            self._srsp(c.SYS_OSAL_NV_ITEM_INIT, Status=t.Status.NV_OPER_FAILED)
        elif f["Id"] in self.nv:
            self._srsp(c.SYS_OSAL_NV_ITEM_INIT, Status=OK)
        else:
            self.nv[f["Id"]] = (bytes(f["Value"]) + bytes(f["ItemLen"]))[: f["ItemLen"]]
            self._srsp(c.SYS_OSAL_NV_ITEM_INIT, Status=t.Status.NV_ITEM_UNINIT)

    def _h_sys_osal_nv_delete(self, f: dict[str, Any]) -> None:
        existed = self.nv.pop(f["Id"], None) is not None
        self._srsp(c.SYS_OSAL_NV_DELETE, Status=OK if existed else t.Status.INVALID_PARAMETER)

    def _h_sys_osal_nv_length(self, f: dict[str, Any]) -> None:
        self._srsp(c.SYS_OSAL_NV_LENGTH, ItemLen=len(self.nv.get(f["Id"], b"")))

    def _no_extended_nv(self, cmd: c.CommandDef) -> bool:
        """Z-Stack 1.2 and 3.0.x (CC2530/CC2531) have no extended NV: "not recognized"."""
        if self.product == 1:
            return False
        hdr = (cmd.header(Kind.REQUEST)[1] << 8) | cmd.header(Kind.REQUEST)[0]
        self._srsp(c.RPC_ERROR, ErrorCode=t.ErrorCode.INVALID_COMMAND_ID, RequestHeader=hdr)
        return True

    def _h_sys_nv_read(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["SYS_NV_READ"]
        if self._no_extended_nv(cmd):
            return
        key = (f["SysId"], f["ItemId"], f["SubId"])
        if key == (1, 0x0007, 0) and key in self.ex_nv:
            self.ex_nv[key] = self.frame_counter.to_bytes(4, "little") + self.ex_nv[key][4:]
        value = self.ex_nv.get(key)
        if value is None:
            self._srsp(cmd, Status=t.Status.INVALID_PARAMETER, Value=b"")
        else:
            self._srsp(cmd, Status=OK, Value=value[f["Offset"] : f["Offset"] + f["Length"]])

    def _h_sys_nv_write(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["SYS_NV_WRITE"]
        if self._no_extended_nv(cmd):
            return
        if self.nv_broken:
            self._srsp(cmd, Status=t.Status.NV_OPER_FAILED)
            return
        key = (f["SysId"], f["ItemId"], f["SubId"])
        if key not in self.ex_nv:  # firmware writes existing items only (create first)
            self._srsp(cmd, Status=t.Status.INVALID_PARAMETER)
            return
        old = self.ex_nv[key]
        off = f["Offset"]
        value = bytes(f["Value"])
        self.ex_nv[key] = old[:off] + value + old[off + len(value) :]
        if key == (1, 0x0007, 0):
            self.frame_counter = int.from_bytes(self.ex_nv[key][:4], "little")
        self._srsp(cmd, Status=OK)

    def _h_sys_nv_length(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["SYS_NV_LENGTH"]
        if self._no_extended_nv(cmd):
            return
        self._srsp(cmd, Length=len(self.ex_nv.get((f["SysId"], f["ItemId"], f["SubId"]), b"")))

    def _h_sys_nv_create(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["SYS_NV_CREATE"]
        if self._no_extended_nv(cmd):
            return
        key = (f["SysId"], f["ItemId"], f["SubId"])
        if key in self.ex_nv:
            self._srsp(cmd, Status=OK)
            return
        self.ex_nv[key] = bytes(f["Length"])
        self._srsp(cmd, Status=t.Status.NV_ITEM_UNINIT)  # created (TI's "initialized")

    def _h_sys_nv_delete(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["SYS_NV_DELETE"]
        if self._no_extended_nv(cmd):
            return
        existed = self.ex_nv.pop((f["SysId"], f["ItemId"], f["SubId"]), None) is not None
        self._srsp(cmd, Status=OK if existed else t.Status.NV_OPER_FAILED)

    def _h_sys_get_extaddr(self, f: dict[str, Any]) -> None:
        self._srsp(c.BY_NAME["SYS_GET_EXTADDR"], ExtAddr=self.nv[NvId.EXTADDR][::-1].hex())

    def _h_zb_write_configuration(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["ZB_WRITE_CONFIGURATION"]
        if self.product != 0:  # SAPI is a Z-Stack 1.2 subsystem here
            self._srsp(c.RPC_ERROR, ErrorCode=t.ErrorCode.INVALID_SUBSYSTEM, RequestHeader=0x0526)
            return
        old = self.nv.get(f["ConfigId"])
        if old is None:
            self._srsp(cmd, Status=t.Status.INVALID_PARAMETER)
            return
        value = bytes(f["Value"])
        self.nv[f["ConfigId"]] = value + old[len(value) :]
        self._sync_counter_in(f["ConfigId"])
        self._srsp(cmd, Status=OK)

    # network ----------------------------------------------------------------------------

    @property
    def has_network(self) -> bool:
        return self.nv.get(NvId.BDBNODEISONANETWORK) == b"\x01"

    def _form(self) -> None:
        pan = int.from_bytes(self.nv[NvId.PANID], "little")
        if pan in (0xFFFF, 0xFFFE, 0):
            pan = self.rng.randrange(1, 0xFFF7)
            self.nv[NvId.PANID] = pan.to_bytes(2, "little")
        ext = self.nv.get(NvId.EXTENDED_PAN_ID, b"\xff" * 8)
        if ext in (b"\xff" * 8, bytes(8)):
            ext = self.nv[NvId.EXTADDR]
            self.nv[NvId.EXTENDED_PAN_ID] = ext
        key = self.nv.get(NvId.PRECFGKEY, bytes(16))
        if key == bytes(16):
            key = secrets.token_bytes(16)
        mask = self.bdb_channel_mask or int.from_bytes(self.nv[NvId.CHANLIST], "little")
        channel = next((ch for ch in range(11, 27) if mask & (1 << ch)), 11)
        nib = bytearray(NIB_DEFAULTS[self.aligned])
        self._nib_put(nib, "dev_address", (0x0000).to_bytes(2, "little"))
        self._nib_put(nib, "coord_address", (0x0000).to_bytes(2, "little"))
        self._nib_put(nib, "manager", (0x0000).to_bytes(2, "little"))
        self._nib_put(nib, "channel", bytes([channel]))
        self._nib_put(nib, "channel_list", (1 << channel).to_bytes(4, "little"))
        self._nib_put(nib, "pan_id", pan.to_bytes(2, "little"))
        self._nib_put(nib, "state", bytes([NWK_STATE_ROUTER]))
        self._nib_put(nib, "ext_pan_id", ext)
        self._nib_put(nib, "key_loaded", b"\x01")
        self.nv[NvId.NIB] = bytes(nib)
        # both key descriptors: the active and the alternate (herdsman compares them)
        self.nv[NvId.NWK_ACTIVE_KEY_INFO] = b"\x00" + key
        self.nv[NWK_ALTERN_KEY_INFO] = b"\x00" + key
        self.nv[NvId.BDBNODEISONANETWORK] = b"\x01"
        self.frame_counter = 0
        pad = bytes(3) if self.aligned else b""
        self.nv[NWKKEY] = b"\x00" + key + pad + bytes(4)
        if self.product == 1:
            self.ex_nv[(1, 0x0007, 0)] = bytes(4) + ext
        elif self.product == 2:
            self.nv[LEGACY_SEC_MATERIAL_START] = bytes(4) + ext
        self.counters["formations"] += 1

    @property
    def aligned(self) -> bool:
        return _aligned(self.product)

    def _nib_put(self, nib: bytearray, name: str, value: bytes) -> None:
        off = NIB_OFFSETS[self.aligned][name]
        nib[off : off + len(value)] = value

    def _nib_get(self, name: str, size: int) -> bytes:
        off = NIB_OFFSETS[self.aligned][name]
        return self.nv[NvId.NIB][off : off + size]

    @property
    def channel(self) -> int:
        return self._nib_get("channel", 1)[0]

    @property
    def pan_id(self) -> int:
        return int.from_bytes(self._nib_get("pan_id", 2), "little")

    @property
    def extended_pan_id(self) -> str:
        return self._nib_get("ext_pan_id", 8)[::-1].hex()

    @property
    def network_key(self) -> bytes:
        return self.nv[NvId.NWK_ACTIVE_KEY_INFO][1:17]

    def _come_up(self, *, new: bool, commissioning: bool = False) -> None:
        """STARTING, then STARTED as coordinator (and on Z-Stack 3 the BDB notification).
        A formation requested over an existing network (``commissioning``) ends with a
        last notification, FORMATION_FAILURE with nothing remaining: "Success is only
        returned when the network is first formed" (zigpy-znp's start_network)."""

        def up() -> None:
            self.state = t.DeviceState.ZB_COORD
            self._send(c.ZDO_STATE_CHANGE_IND.rsp(State=t.DeviceState.ZB_COORD))
            if self.product:
                status = (
                    t.BDBCommissioningStatus.SUCCESS
                    if new
                    else t.BDBCommissioningStatus.NETWORK_RESTORED
                )
                remaining = (
                    t.BDBCommissioningMode.NONE if new else t.BDBCommissioningMode.NWK_FORMATION
                )
                self._send(
                    c.APP_CNF_BDB_COMMISSIONING_NOTIFICATION.rsp(
                        Status=status,
                        Mode=t.BDBCommissioningMode.NWK_FORMATION
                        if new
                        else t.BDBCommissioningMode.NONE,
                        RemainingModes=remaining,
                    )
                )
                if commissioning and not new:
                    self._send(
                        c.APP_CNF_BDB_COMMISSIONING_NOTIFICATION.rsp(
                            Status=t.BDBCommissioningStatus.FORMATION_FAILURE,
                            Mode=t.BDBCommissioningMode.NWK_FORMATION,
                            RemainingModes=t.BDBCommissioningMode.NONE,
                        )
                    )

        self.state = t.DeviceState.COORD_STARTING
        self._callback(c.ZDO_STATE_CHANGE_IND, State=t.DeviceState.COORD_STARTING)
        self._later(self.answer_delay + 0.02, up)

    def _h_zdo_startup_from_app(self, f: dict[str, Any]) -> None:
        if self.state == t.DeviceState.ZB_COORD:
            self._srsp(c.ZDO_STARTUP_FROM_APP, State=t.StartupState.RESTORED_NETWORK)
        elif self.has_network:
            self._srsp(c.ZDO_STARTUP_FROM_APP, State=t.StartupState.RESTORED_NETWORK)
            self._come_up(new=False)
        elif self.product == 0:  # Z-Stack 1.2 forms from its NV configuration
            self._form()
            self._srsp(c.ZDO_STARTUP_FROM_APP, State=t.StartupState.NEW_NETWORK)
            self._come_up(new=True)
        else:
            self._srsp(c.ZDO_STARTUP_FROM_APP, State=t.StartupState.NOT_STARTED)

    def _h_app_cnf_bdb_set_channel(self, f: dict[str, Any]) -> None:
        if f["IsPrimary"]:
            self.bdb_channel_mask = int(f["Channel"])
        self._srsp(c.APP_CNF_BDB_SET_CHANNEL, Status=OK)

    def _h_app_cnf_bdb_start_commissioning(self, f: dict[str, Any]) -> None:
        self._srsp(c.APP_CNF_BDB_START_COMMISSIONING, Status=OK)
        if f["Mode"] & t.BDBCommissioningMode.NWK_FORMATION:
            new = not self.has_network
            if new:
                self._form()
            self._come_up(new=new, commissioning=True)

    def _h_util_get_device_info(self, f: dict[str, Any]) -> None:
        self._srsp(
            c.UTIL_GET_DEVICE_INFO,
            Status=OK,
            IEEE=self.nv[NvId.EXTADDR][::-1].hex(),
            NWK=0,
            DeviceType=t.DeviceTypeCapabilities(7),
            DeviceState=self.state,
            AssociatedDevices=[d.nwk for d in self.devices if d.nwk is not None][:32],
        )

    def _h_zdo_ext_nwk_info(self, f: dict[str, Any]) -> None:
        up = self.state == t.DeviceState.ZB_COORD
        self._srsp(
            c.ZDO_EXT_NWK_INFO,
            Dst=0 if up else 0xFFFE,
            DevState=self.state,
            PanId=self.pan_id if up else 0xFFFF,
            ParentNWK=0xFFFE,
            ExtendedPanId=self.extended_pan_id if up else "0" * 16,
            ParentIEEE="0" * 16,
            Channel=self.channel if up else 0,
        )

    def _h_af_register(self, f: dict[str, Any]) -> None:
        if f["Endpoint"] in self.endpoints:
            self._srsp(c.AF_REGISTER, Status=t.Status.APS_DUPLICATE_ENTRY)
            return
        self.endpoints[f["Endpoint"]] = tuple(f["InputClusters"])
        self._srsp(c.AF_REGISTER, Status=OK)

    def _h_zdo_active_ep_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_ACTIVE_EP_REQ, Status=OK)
        nwk = f["NWKAddrOfInterest"]
        if nwk == 0:
            eps = sorted(self.endpoints)
        else:
            dev = self.by_nwk(nwk)
            if dev is None:
                return
            eps = [1, 2] if dev.model == "lumi.plug" else [1]
        self._callback(c.ZDO_ACTIVE_EP_RSP, Src=nwk, Status=OK, NWK=nwk, ActiveEndpoints=eps)

    def _h_zdo_msg_cb_register(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_MSG_CB_REGISTER, Status=OK)

    def _h_zdo_ieee_addr_req(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["ZDO_IEEE_ADDR_REQ"]
        self._srsp(cmd, Status=OK)
        dev = self.by_nwk(f["NWK"])
        if dev is not None:
            self._callback(
                c.BY_NAME["ZDO_IEEE_ADDR_RSP"],
                Status=OK,
                IEEE=dev.ieee,
                NWK=f["NWK"],
                StartIndex=0,
                AssocDevices=[],
            )

    def _h_zdo_mgmt_permit_join_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_MGMT_PERMIT_JOIN_REQ, Status=OK)
        duration = f["Duration"]
        if f["AddrMode"] == t.AddrMode.NWK:
            self._callback(c.ZDO_MGMT_PERMIT_JOIN_RSP, Src=0, Status=OK)
            self._callback(c.ZDO_PERMIT_JOIN_IND, Duration=duration)
        self.permit_until = time.monotonic() + duration
        if duration and self.network_up:
            pending = [d for d in self.devices if d.nwk is None]
            for i, dev in enumerate(pending):
                self._later(JOIN_GAP_S * (i + 1), functools.partial(self._join_if_open, dev))

    def _join_if_open(self, dev: SimDevice) -> None:
        if dev.nwk is None and time.monotonic() < self.permit_until and self.network_up:
            self.join(dev)

    def _h_zdo_mgmt_leave_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_MGMT_LEAVE_REQ, Status=OK)
        dev = self.by_nwk(f["DstAddr"])
        if dev is not None:
            self._later(CALLBACK_DELAY, lambda: self.leave(dev))

    def _h_af_data_request(self, f: dict[str, Any]) -> None:
        if not self.network_up:
            self._srsp(c.AF_DATA_REQUEST, Status=t.Status.NWK_INVALID_REQUEST)
            return
        self._srsp(c.AF_DATA_REQUEST, Status=OK)
        self._deliver_request(f["DstAddr"], f)

    def _deliver_request(self, nwk: int, f: dict[str, Any]) -> None:
        """An AF data request on its way to a device: the confirm, then what it answers."""
        self.frame_counter += 1
        trans = f["TSN"]
        dev = self.by_nwk(nwk)

        def confirm(status: int, delay: float = CALLBACK_DELAY) -> None:
            self._callback(
                c.AF_DATA_CONFIRM,
                delay=delay,
                Status=t.Status(status),
                Endpoint=f["SrcEndpoint"],
                TSN=trans,
            )

        if dev is None:
            confirm(t.Status.NWK_NO_ROUTE)
            return
        if not dev.reachable:
            confirm(t.Status.MAC_NO_ACK)
            return
        if dev.sleepy and time.monotonic() > dev.awake_until:
            confirm(t.Status.MAC_TRANSACTION_EXPIRED, EXPIRE_S)
            return
        confirm(OK)
        data = bytes(f["Data"])
        with contextlib.suppress(ParseError):
            header, _ = zf.decode_header(data)
            if header.frame_type == zf.FrameType.GLOBAL and header.command_id == 0x0B:
                self.counters["default_responses"] += 1
        for rep in dev.handle(f["ClusterId"], f["DstEndpoint"], data):
            self._later(2 * CALLBACK_DELAY, functools.partial(self.deliver, dev, *rep))

    # --- what a second host (zigbee-herdsman) asks for -------------------------------------

    def _h_util_led_control(self, f: dict[str, Any]) -> None:
        self._srsp(c.BY_NAME["UTIL_LED_CONTROL"], Status=OK)

    def _h_zdo_ext_route_disc(self, f: dict[str, Any]) -> None:
        self._srsp(c.BY_NAME["ZDO_EXT_ROUTE_DISC"], Status=OK)

    def _h_zdo_ext_find_group(self, f: dict[str, Any]) -> None:
        # aps_Group_t: group id, then a name of up to 16 bytes (length first), 19 with status
        name = self.groups.get((f["Endpoint"], f["GroupId"]))
        if name is None:
            group = f["GroupId"].to_bytes(2, "little") + bytes(17)
            self._srsp(c.BY_NAME["ZDO_EXT_FIND_GROUP"], Status=t.Status.FAILURE, Group=group)
            return
        body = (bytes([len(name)]) + name).ljust(17, b"\x00")[:17]
        group = f["GroupId"].to_bytes(2, "little") + body
        self._srsp(c.BY_NAME["ZDO_EXT_FIND_GROUP"], Status=OK, Group=group)

    def _h_zdo_ext_add_group(self, f: dict[str, Any]) -> None:
        key = (f["Endpoint"], f["GroupId"])
        if key in self.groups:
            self._srsp(c.BY_NAME["ZDO_EXT_ADD_GROUP"], Status=t.Status.APS_DUPLICATE_ENTRY)
            return
        self.groups[key] = bytes(f["GroupName"])[:16]
        self._srsp(c.BY_NAME["ZDO_EXT_ADD_GROUP"], Status=OK)

    def _assoc_entry(self, index: int, dev: SimDevice | None) -> bytes:
        size = 36 if self.aligned else 28
        if dev is None or dev.nwk is None:
            return b"\xff" * size
        entry = dev.nwk.to_bytes(2, "little") + index.to_bytes(2, "little") + b"\x01"
        return entry.ljust(size, b"\x00")

    def _h_util_assoc_find_device(self, f: dict[str, Any]) -> None:
        children = [d for d in self.devices if d.nwk is not None]
        i = f["Index"]
        dev = children[i] if i < len(children) else None
        self._srsp(c.BY_NAME["UTIL_ASSOC_FIND_DEVICE"], Device=self._assoc_entry(i, dev))

    def _h_util_assoc_get_with_address(self, f: dict[str, Any]) -> None:
        """associated_devices_t of a child: short address, index, relation (1 = child, end
        device), status, count, age, link info, end device info, timeout counter, keepalive
        (28 bytes packed, 36 aligned); all 0xFF when not a child."""
        found = next(
            (
                (i, d)
                for i, d in enumerate(self.devices)
                if d.nwk is not None and (d.nwk == f["NWK"] or d.ieee == str(f["IEEE"]))
            ),
            (0, None),
        )
        entry = self._assoc_entry(*found)
        self._srsp(c.BY_NAME["UTIL_ASSOC_GET_WITH_ADDRESS"], Device=entry)

    #: Node descriptors (13 bytes: logical type, frequency band, MAC capabilities,
    #: manufacturer code, buffer size, incoming size, server mask, outgoing size, flags).
    COORDINATOR_NODE_DESCRIPTOR = bytes.fromhex("00408f000050a000012ca00000")
    END_DEVICE_NODE_DESCRIPTOR = bytes.fromhex("0240805f117f6400002c640000")
    ROUTER_NODE_DESCRIPTOR = bytes.fromhex("01408e5f117f6400002c640000")

    def _h_zdo_node_desc_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_NODE_DESC_REQ, Status=OK)
        nwk = f["NWKAddrOfInterest"]
        if nwk == 0:
            desc = self.COORDINATOR_NODE_DESCRIPTOR
        else:
            dev = self.by_nwk(nwk)
            if dev is None or (dev.sleepy and time.monotonic() > dev.awake_until):
                return  # no answer: out of range or asleep
            desc = self.END_DEVICE_NODE_DESCRIPTOR if dev.sleepy else self.ROUTER_NODE_DESCRIPTOR
        self._callback(
            c.BY_NAME["ZDO_NODE_DESC_RSP"], Src=nwk, Status=OK, NWK=nwk, NodeDescriptor=desc
        )

    def _h_zdo_simple_desc_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_SIMPLE_DESC_REQ, Status=OK)
        nwk, ep = f["NWKAddrOfInterest"], f["Endpoint"]
        if nwk == 0:
            reg = self.endpoints.get(ep)
            if reg is None:
                return
            desc = {
                "endpoint": ep,
                "profile": 0x0104,
                "device_type": 0x0005,
                "device_version": 0,
                "input_clusters": list(reg),
                "output_clusters": [],
            }
        else:
            dev = self.by_nwk(nwk)
            if dev is None or (dev.sleepy and time.monotonic() > dev.awake_until):
                return
            desc = {
                "endpoint": ep,
                "profile": 0x0104,
                "device_type": 0x5F01,  # what Xiaomi devices say
                "device_version": 1,
                "input_clusters": [0x0000, 0x0003, 0xFFFF],
                "output_clusters": [0x0000, 0x0004, 0xFFFF],
            }
        self._callback(c.ZDO_SIMPLE_DESC_RSP, Src=nwk, Status=OK, NWK=nwk, SimpleDescriptor=desc)

    def _h_af_data_request_ext(self, f: dict[str, Any]) -> None:
        """Green Power broadcasts at permit join and inter-PAN: queued and confirmed; a
        unicast to a joined device's NWK address is handled as AF_DATA_REQUEST."""
        cmd = c.BY_NAME["AF_DATA_REQUEST_EXT"]
        if not self.network_up:
            self._srsp(cmd, Status=t.Status.NWK_INVALID_REQUEST)
            return
        mode = f["DstAddrMode"]
        if mode == t.AddrMode.NWK:
            nwk = int.from_bytes(bytes(f["DstAddr"])[:2], "little")
            self._srsp(cmd, Status=OK)
            self._deliver_request(nwk, f)
            return
        self._srsp(cmd, Status=OK)
        self.frame_counter += 1
        self._callback(c.AF_DATA_CONFIRM, Status=OK, Endpoint=f["SrcEndpoint"], TSN=f["TSN"])


async def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--link", help="port path to create (default: a temporary one)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    p.add_argument("--product", type=int, default=1, help="0 = Z-Stack 1.2, 1 = 3.x.0, 2 = 3.0.x")
    p.add_argument("--corrupt", type=float, default=0.0, help="byte corruption rate 0..1")
    args = p.parse_args(argv)
    sim = ZStackSimulator(
        link_path=args.link,
        product=args.product,
        devices=MODELS,
        report_interval=args.interval,
        corruption_rate=args.corrupt,
    )
    async with sim:
        print(sim.path, flush=True)  # the one line a user needs
        await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
