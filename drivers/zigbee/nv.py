"""NV access on the stick: OSAL items, key items (Z-Stack 1.2's way too), the NWK frame counter.

Any NV_OPER_FAILED status is a needs-a-human error ("NVRAM corrupted, re-flash the stick").
"""

from __future__ import annotations

from drivers.errors import NeedsHumanError, ProtocolError
from drivers.zigbee.api import CommandNotRecognized, ZnpApi
from drivers.zigbee.base import NVRAM_CORRUPTED, check
from drivers.zigbee.probe import PRODUCT_ZSTACK_12, PRODUCT_ZSTACK_30X
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.types import NvId

#: Z-Stack 3.x extended NV: system id and the NWK security material table.
NVINTF_SYSID_ZSTACK = 1
EX_NWK_SEC_MATERIAL_TABLE = 0x0007
#: Z-Stack 3.0.x (no extended NV): the same table as OSAL items 0x0075-0x0080.
LEGACY_NWK_SEC_MATERIAL_TABLE_START = 0x0075
LEGACY_NWK_SEC_MATERIAL_TABLE_END = 0x0080
#: The SAPI config id is one byte: ZB_READ_CONFIGURATION reaches items up to this.
SAPI_MAX_CONFIG_ID = 0xFF


class Nv:
    """The NV of one stick in one session (``product`` is its SYS_VERSION product id)."""

    def __init__(self, api: ZnpApi, product: int) -> None:
        self.api = api
        self.product = product

    async def read(self, nvid: int) -> bytes | None:
        rsp = await self.api.request(c.SYS_OSAL_NV_READ, Id=nvid, Offset=0)
        status = rsp["Status"]
        if status == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if status != t.Status.SUCCESS:
            return None
        return bytes(rsp["Value"])

    async def read_secret(self, nvid: int) -> bytes | None:
        """An item holding key material: Z-Stack 1.2 refuses SYS_OSAL_NV_READ of those
        (INVALID_PARAMETER) but answers ZB_READ_CONFIGURATION for ids up to 0xFF, the way
        zigpy-znp and zigbee-herdsman read the key there."""
        value = await self.read(nvid)
        if value is not None or nvid > SAPI_MAX_CONFIG_ID:
            return value
        try:
            rsp = await self.api.request(c.ZB_READ_CONFIGURATION, ConfigId=nvid)
        except CommandNotRecognized:  # a build without the SAPI subsystem
            return None
        if rsp["Status"] == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if rsp["Status"] != t.Status.SUCCESS or rsp["ConfigId"] != nvid:
            return None
        return bytes(rsp["Value"])

    async def write(self, nvid: int, value: bytes) -> None:
        rsp = await self.api.request(c.SYS_OSAL_NV_WRITE, Id=nvid, Offset=0, Value=value)
        status = rsp["Status"]
        if status in (t.Status.NV_ITEM_UNINIT, t.Status.INVALID_PARAMETER):
            init = await self.api.request(
                c.SYS_OSAL_NV_ITEM_INIT, Id=nvid, ItemLen=len(value), Value=value
            )
            if init["Status"] == t.Status.NV_OPER_FAILED:
                raise NeedsHumanError(NVRAM_CORRUPTED)
            rsp = await self.api.request(c.SYS_OSAL_NV_WRITE, Id=nvid, Offset=0, Value=value)
            status = rsp["Status"]
        if status == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        if status != t.Status.SUCCESS:
            raise ProtocolError(f"NV write of 0x{nvid:04X} failed: {t.Status(status).name}")

    async def ensure(self, nvid: int, value: bytes) -> None:
        """Write only when it differs (spares the flash)."""
        if await self.read(nvid) != value:
            await self.write(nvid, value)

    # --- the NWK frame counter ---------------------------------------------------------

    async def read_frame_counter(self, ext_pan: str) -> int:
        """The NWK outgoing frame counter; where it lives depends on the stack version.

        Z-Stack 1.2: after the key in NWKKEY (0x0082). Z-Stack 3.0.x (CC2530/CC2531, no
        extended NV): the legacy security material table, OSAL items 0x0075-0x0080.
        Z-Stack 3.x.0: the extended NV table (system 1, item 7). A table entry is the
        counter and the extended PAN id it belongs to; ours wins over the global one (FF..).
        """
        if self.product == PRODUCT_ZSTACK_12:
            value = await self.read_secret(NvId.NWKKEY)
            return int.from_bytes(value[17:21], "little") if value and len(value) >= 21 else 0
        ext_le = bytes.fromhex(ext_pan)[::-1]
        best = 0
        for value in await self._sec_material_entries():
            counter = int.from_bytes(value[:4], "little")
            if value[4:12] == ext_le:
                return counter
            if value[4:12] == b"\xff" * 8:
                best = max(best, counter)
        return best

    async def _sec_material_entries(self) -> list[bytes]:
        out: list[bytes] = []
        if self.product == PRODUCT_ZSTACK_30X:
            for nvid in range(
                LEGACY_NWK_SEC_MATERIAL_TABLE_START, LEGACY_NWK_SEC_MATERIAL_TABLE_END + 1
            ):
                value = await self.read(nvid)
                if value is None or len(value) < 12:
                    break
                out.append(value)
            return out
        for sub in range(4):
            rsp = await self.api.request(
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

    async def write_frame_counter(self, counter: int, ext_le: bytes) -> None:
        """Write the NWK frame counter where this stack version keeps it (see the reader)."""
        fc = counter.to_bytes(4, "little")
        if self.product == PRODUCT_ZSTACK_12:
            old = await self.read_secret(NvId.NWKKEY)
            if old is None or len(old) < 21:
                raise ProtocolError("the stick has no NWKKEY item to hold the frame counter")
            await self.write(NvId.NWKKEY, old[:17] + fc + old[21:])
            return
        value = fc + ext_le
        if self.product == PRODUCT_ZSTACK_30X:
            await self.write(LEGACY_NWK_SEC_MATERIAL_TABLE_START, value)
            # other entries (an older network's) are blanked, as a new table would be
            for nvid in range(
                LEGACY_NWK_SEC_MATERIAL_TABLE_START + 1, LEGACY_NWK_SEC_MATERIAL_TABLE_END + 1
            ):
                if await self.read(nvid) is None:
                    break
                await self.write(nvid, bytes(12))
            return
        rsp = await self.api.request(
            c.BY_NAME["SYS_NV_WRITE"],
            SysId=NVINTF_SYSID_ZSTACK,
            ItemId=EX_NWK_SEC_MATERIAL_TABLE,
            SubId=0,
            Offset=0,
            Value=value,
        )
        check(rsp, "NV write of the NWK frame counter")
