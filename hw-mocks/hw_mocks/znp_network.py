"""The simulated Z-Stack stick's network formation and start-up (see :mod:`hw_mocks.znp`)."""

from __future__ import annotations

import secrets
from typing import Any

from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.types import NvId
from hw_mocks.znp_layout import (
    LEGACY_SEC_MATERIAL_START,
    NIB_DEFAULTS,
    NIB_OFFSETS,
    NWK_ALTERN_KEY_INFO,
    NWK_STATE_ROUTER,
    NWKKEY,
    OK,
    default_nv,
    key_tables,
)
from hw_mocks.znp_nv import NvStick
from hw_mocks.znp_wire import StickOptions


class NetworkStick(NvStick):
    """Forming and starting the network: BDB commissioning (Z-Stack 3) or STARTUP_FROM_APP
    from the NV configuration (1.2), the NIB, resets that clear state or config, endpoint
    registration, and the network's parameters as a host reads them."""

    def __init__(self, options: StickOptions) -> None:
        super().__init__(options)
        self.bdb_channel_mask = 0

    @property
    def network_up(self) -> bool:
        return self.plugged and self.state == t.DeviceState.ZB_COORD

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

    def _h_sys_reset_req(self, f: dict[str, Any]) -> None:
        self.counters["resets"] += 1
        opt = self.nv.get(NvId.STARTUP_OPTION, b"\x00")[0]
        if opt & 0x02:  # clear state: the network is gone
            fresh = default_nv(self.ieee, self.product)
            for nvid in (
                NvId.BDBNODEISONANETWORK,
                NvId.NWK_ACTIVE_KEY_INFO,
                NWK_ALTERN_KEY_INFO,
                NvId.NIB,
                NWKKEY,
            ):
                self.nv[nvid] = fresh[nvid]
            tables, self.ex_nv = key_tables(self.product)
            self.nv.update(tables)
            self.nv.pop(LEGACY_SEC_MATERIAL_START, None)
            for d in self.devices:
                d.nwk = None
        if opt & 0x01:  # clear config
            keep: dict[int, bytes] = {
                NvId.EXTADDR: self.nv[NvId.EXTADDR],
                NvId.TCLK_SEED: self.nv[NvId.TCLK_SEED],
            }
            self.nv = {**default_nv(self.ieee, self.product), **keep}
        self.nv[NvId.STARTUP_OPTION] = b"\x00"
        self.state = t.DeviceState.HOLD
        self.endpoints = {}
        self._callback(
            c.SYS_RESET_IND, delay=0.02, Reason=t.ResetReason.EXTERNAL, **self._release()
        )
