"""Bringing the network up on the stick: resume the configured one, or form a new one.

Never forms over a network that existed (that would orphan every device): a stick without
our marker but with a backup or a network of its own needs a human (restore or reset).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import MutableMapping

from drivers.errors import NeedsHumanError
from drivers.zigbee import backup as bk
from drivers.zigbee.api import ZnpApi
from drivers.zigbee.base import (
    BACKUP_FILE,
    COORDINATOR_ENDPOINT,
    CoordinatorConfig,
    StickInfo,
    check,
)
from drivers.zigbee.nv import Nv
from drivers.zigbee.probe import PRODUCT_ZSTACK_12
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.types import NvId

_LOGGER = logging.getLogger(__name__)

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
#: NIB (NV 0x0021) of Z-Stack 1.2 (CC2531, packed): nwkLogicalChannel and nwkKeyLoaded.
NIB_CHANNEL_12 = 22
NIB_KEY_LOADED_12 = 61


class Network:
    """Start-up of one session: the stick's NV, its network and our endpoint."""

    def __init__(
        self,
        api: ZnpApi,
        config: CoordinatorConfig,
        info: StickInfo,
        counters: MutableMapping[str, int],
    ) -> None:
        self.api = api
        self.config = config
        self.timing = config.timing
        self.info = info
        self.counters = counters
        self.nv = Nv(api, info.product)
        #: True while we reset the stick ourselves (its SYS_RESET_IND is expected).
        self.expecting_reset = False

    @property
    def zstack3(self) -> bool:
        return self.info.product != PRODUCT_ZSTACK_12

    @property
    def marker_id(self) -> int:
        return NvId.HAS_CONFIGURED_ZSTACK3 if self.zstack3 else NvId.HAS_CONFIGURED_ZSTACK1

    async def start(self, *, allow_form: bool) -> None:
        """Resume our network, or form one when allowed (and nothing would be orphaned)."""
        if await self.nv.read(self.marker_id) == MARKER:
            await self.resume()
            self.counters["networks_resumed"] += 1
        elif allow_form:
            await self._refuse_to_orphan()
            await self.form(None)
        else:
            raise NeedsHumanError("the stick has no network configured")
        await self.finish_startup()

    async def _refuse_to_orphan(self) -> None:
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
        if self.zstack3:
            formed = await self.nv.read(NvId.BDBNODEISONANETWORK) == b"\x01"
        else:  # Z-Stack 1.2 has no BDB item: the NIB has a channel and a loaded key
            nib = await self.nv.read(NvId.NIB)
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

    async def finish_startup(self) -> None:
        """Child ageing off, what the network is, our endpoint, ZDO callbacks."""
        # sleepy Xiaomi children are dropped by child ageing: keep it off
        await self.nv.ensure(NvId.NWK_CHILD_AGE_ENABLE, b"\x00")
        dev = await self.api.request(c.UTIL_GET_DEVICE_INFO)
        nwk = await self.api.request(c.ZDO_EXT_NWK_INFO)
        self.info.ieee = str(dev["IEEE"])
        self.info.pan_id = int(nwk["PanId"])
        self.info.extended_pan_id = str(nwk["ExtendedPanId"])
        self.info.channel = int(nwk["Channel"])
        await self._register_endpoint()
        check(await self.api.request(c.ZDO_MSG_CB_REGISTER, ClusterId=0xFFFF), "ZDO callbacks")
        _LOGGER.info(
            "zigbee network up: %s, channel %s, PAN 0x%04X",
            self.info.firmware,
            self.info.channel,
            self.info.pan_id,
        )

    async def resume(self) -> None:
        """Start the configured network without writing any network NV item."""
        dev = await self.api.request(c.UTIL_GET_DEVICE_INFO)
        if dev["DeviceState"] == t.DeviceState.ZB_COORD:
            return
        started = self.api.listen(c.ZDO_STATE_CHANGE_IND, {"State": t.DeviceState.ZB_COORD})
        try:
            rsp = await self.api.request(c.ZDO_STARTUP_FROM_APP, StartDelay=100)
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
            await self.api.wait(started, self.timing.startup_timeout)
        finally:
            self.api.cancel(started)

    async def form(self, params: bk.NetworkInfo | None) -> None:
        """Form a network: a new random one, or the one of a backup (restore)."""
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
        nv = self.nv
        await nv.write(NvId.STARTUP_OPTION, b"\x03")  # clear state and config
        await self.reset()
        if params is not None:
            await nv.write(NvId.EXTADDR, bytes.fromhex(params.coordinator_ieee)[::-1])
            # 3.x only: on 1.2 the id is the TC link key table's default entry, not a seed
            if params.tclk_seed is not None and self.zstack3:
                await nv.write(NvId.TCLK_SEED, params.tclk_seed)
        await nv.write(NvId.LOGICAL_TYPE, b"\x00")
        await nv.write(NvId.ZDO_DIRECT_CB, b"\x01")
        await nv.write(NvId.CHANLIST, mask)
        await nv.write(NvId.PANID, pan.to_bytes(2, "little"))
        await nv.write(NvId.EXTENDED_PAN_ID, ext_le)
        await nv.write(NvId.APS_USE_EXT_PANID, ext_le)
        await nv.write(NvId.PRECFGKEY, key)
        await nv.write(NvId.PRECFGKEYS_ENABLE, b"\x00")
        api = self.api
        started = api.listen(c.ZDO_STATE_CHANGE_IND, {"State": t.DeviceState.ZB_COORD})
        try:
            if self.zstack3:
                for primary, m in ((1, int.from_bytes(mask, "little")), (0, 0)):
                    rsp = await api.request(c.APP_CNF_BDB_SET_CHANNEL, IsPrimary=primary, Channel=m)
                    check(rsp, "BDB set channel")
                rsp = await api.request(
                    c.APP_CNF_BDB_START_COMMISSIONING, Mode=t.BDBCommissioningMode.NWK_FORMATION
                )
                check(rsp, "BDB start commissioning")
            else:
                await api.request(c.ZDO_STARTUP_FROM_APP, StartDelay=100)
            await api.wait(started, self.timing.formation_timeout)
        finally:
            api.cancel(started)
        if params is not None and params.frame_counter:
            await nv.write_frame_counter(params.frame_counter + FRAME_COUNTER_INCREMENT, ext_le)
        await nv.write(self.marker_id, MARKER)
        self.counters["networks_formed"] += 1

    async def reset(self) -> None:
        """Soft reset, and wait for the stick's SYS_RESET_IND."""
        self.expecting_reset = True
        waiter = self.api.listen(c.SYS_RESET_IND)
        try:
            self.api.send_areq(c.SYS_RESET_REQ, Type=t.ResetType.SOFT)
            await self.api.wait(waiter, self.timing.reset_timeout)
        finally:
            self.api.cancel(waiter)
            self.expecting_reset = False

    async def _register_endpoint(self) -> None:
        _, eps = await self.api.request_then(
            c.ZDO_ACTIVE_EP_REQ,
            c.ZDO_ACTIVE_EP_RSP,
            {"NWK": 0x0000},
            callback_wait_s=self.timing.startup_timeout / 4,
            DstAddr=0x0000,
            NWKAddrOfInterest=0x0000,
        )
        active = list(eps["ActiveEndpoints"]) if eps is not None else []
        if COORDINATOR_ENDPOINT in active:
            return
        rsp = await self.api.request(
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
            check(rsp, "AF register")
