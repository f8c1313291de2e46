"""The simulated Z-Stack stick's NV (see :mod:`hw_mocks.znp`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Kind
from drivers.zigbee.znp.types import NvId
from hw_mocks.aqara import SimDevice
from hw_mocks.znp_layout import (
    ADDRMGR,
    EX_ADDRMGR,
    EX_TCLK_TABLE,
    KEY_TABLE_SIZE,
    LEGACY_SEC_MATERIAL_START,
    LEGACY_TCLK_TABLE_START,
    NWKKEY,
    OK,
    SECURE_NV_IDS,
    default_nv,
    is_aligned,
    key_tables,
)
from hw_mocks.znp_wire import StickOptions, WireStick

_LOGGER = logging.getLogger(__name__)

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


class NvStick(WireStick):
    """The stick's NV: OSAL items and (Z-Stack 3.x.0) extended items, the NWK frame counter
    where each version keeps it, the per-device key tables, the MT NV commands, and the file
    that keeps it all across processes like a real stick's flash."""

    def __init__(self, options: StickOptions) -> None:
        super().__init__(options)
        nv_path, ieee = options.nv_path, options.ieee
        #: Where the stick keeps its NV across processes (None: in memory only), as a real
        #: stick keeps its flash: a restarted host resumes the same network.
        self.nv_path = Path(nv_path) if nv_path is not None else None
        self.ieee = ieee
        #: Fault: every NV write fails with NV_OPER_FAILED.
        self.nv_broken = False
        self.nv: dict[int, bytes] = default_nv(ieee, self.product)
        self.ex_nv: dict[tuple[int, int, int], bytes] = key_tables(self.product)[1]
        self.frame_counter = 0
        #: The devices in range; the NV file keeps which of them are on the network.
        self.devices: list[SimDevice] = []

    @property
    def aligned(self) -> bool:
        return is_aligned(self.product)

    def _handled(self, name: str) -> None:
        if name in NV_CHANGING:
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

    # per-device keys ------------------------------------------------------------

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
