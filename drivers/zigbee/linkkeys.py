"""Per-device link keys on the stick: the address manager and the TC link key tables.

Z-Stack 3 keeps, per device, an address manager entry (type, NWK, IEEE) and its link key in
one of two places: the TC link key table holds keys derived from the TCLK seed (16-byte seed
rotated by a per-device shift, XOR the IEEE twice: only the shift and the counters are
stored), and the APS key data table holds any other key (the key itself and its counters),
found through the APS link key table (address manager index, key data index, state).

- Z-Stack 3.x.0 (CC26x2, aligned structs): extended NV items ADDRMGR (1), TCLK_TABLE (4),
  APS_KEY_DATA_TABLE (6), one entry per sub-id; APS link key table OSAL 0x004C.
- Z-Stack 3.0.x (CC2530/CC2531, packed structs): address manager as one OSAL item (0x0023,
  an array), TCLK table OSAL 0x0111-0x01FF, APS key data OSAL 0x0201-0x02FF, 0x004C.
- Z-Stack 1.2 keeps no unique keys (its devices use the global default TC link key):
  nothing is read or written there.

Layouts and semantics follow zigpy-znp (``zigpy_znp.znp.security``), the open coordinator
backup's ``link_key`` ({key, tx_counter, rx_counter}). The codec here is pure; keys never
reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import NeedsHumanError, ProtocolError
from drivers.zigbee.backup import BackupDevice, LinkKey
from drivers.zigbee.base import NVRAM_CORRUPTED
from drivers.zigbee.nv import NVINTF_SYSID_ZSTACK, Nv
from drivers.zigbee.probe import PRODUCT_ZSTACK_3X0, PRODUCT_ZSTACK_30X
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Message

EX_ADDRMGR = 0x0001
EX_TCLK_TABLE = 0x0004
EX_APS_KEY_DATA_TABLE = 0x0006
OSAL_ADDRMGR = 0x0023
OSAL_APS_LINK_KEY_TABLE = 0x004C
LEGACY_TCLK_TABLE = range(0x0111, 0x0200)
LEGACY_APS_KEY_DATA = range(0x0201, 0x0300)
#: Extended NV tables are read up to this many entries (sub-ids).
EX_TABLE_MAX = 256

#: Address manager entry types (a bitmap).
ADDR_ASSOC = 0x01
ADDR_SECURITY = 0x02
#: APS link key table: key established ("AuthenticatedCBCK").
AUTHENTICATED = 0x01
#: TCLK table key attributes: a unique key verified by the trust center.
VERIFIED_KEY = 0x02
#: ... and of an unused entry.
DEFAULT_KEY = 0xFF
#: Added to a restored key's outgoing counter so devices accept our frames (zigpy-znp: 2500).
TX_COUNTER_INCREMENT = 2500


# --- pure codec ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    aligned: bool

    @property
    def addr_size(self) -> int:  # type u8, (pad), nwk u16, ieee 8
        return 12 if self.aligned else 11

    @property
    def tclk_size(self) -> int:  # tx u32, rx u32, ieee 8, attributes, type, shift (, pad)
        return 20 if self.aligned else 19

    @property
    def link_entry_size(self) -> int:  # addr index u16, key nv id u16, state u8 (, pad)
        return 6 if self.aligned else 5

    def parse_addr(self, raw: bytes) -> tuple[int, int, bytes]:
        """(type, nwk, ieee little-endian) of one address manager entry."""
        if len(raw) < self.addr_size:
            raise ProtocolError(f"address manager entry of {len(raw)} bytes")
        off = 2 if self.aligned else 1
        return raw[0], int.from_bytes(raw[off : off + 2], "little"), raw[off + 2 : off + 10]

    def addr(self, kind: int, nwk: int, ieee_le: bytes) -> bytes:
        pad = b"\xff" if self.aligned else b""  # Z-Stack's padding here (zigpy-znp)
        return bytes([kind]) + pad + nwk.to_bytes(2, "little") + ieee_le

    def empty_addr(self, zstack3x0: bool) -> bytes:
        return self.addr(0xFF if zstack3x0 else 0x00, 0xFFFF, b"\xff" * 8)

    def parse_tclk(self, raw: bytes) -> tuple[int, int, bytes, int]:
        """(tx, rx, ieee little-endian, seed shift) of one TC link key table entry."""
        if len(raw) < self.tclk_size - (1 if self.aligned else 0):
            raise ProtocolError(f"TC link key entry of {len(raw)} bytes")
        tx = int.from_bytes(raw[0:4], "little")
        rx = int.from_bytes(raw[4:8], "little")
        return tx, rx, raw[8:16], raw[18]

    def tclk(self, tx: int, rx: int, ieee_le: bytes, attributes: int, shift: int) -> bytes:
        raw = tx.to_bytes(4, "little") + rx.to_bytes(4, "little") + ieee_le
        raw += bytes([attributes, 0, shift])
        return raw + (b"\x00" if self.aligned else b"")

    def parse_link_table(self, raw: bytes) -> list[tuple[int, int, int]]:
        """(address manager index, key data NV id, state) of each APS link key table entry."""
        if len(raw) < 2:
            return []
        count, size = int.from_bytes(raw[:2], "little"), self.link_entry_size
        out = []
        for i in range(count):
            e = raw[2 + i * size : 2 + (i + 1) * size]
            if len(e) < 5:
                raise ProtocolError("APS link key table shorter than its count")
            out.append((int.from_bytes(e[0:2], "little"), int.from_bytes(e[2:4], "little"), e[4]))
        return out

    def link_table(self, entries: list[tuple[int, int]], size: int) -> bytes:
        pad = b"\xff" if self.aligned else b""
        raw = len(entries).to_bytes(2, "little") + b"".join(
            i.to_bytes(2, "little") + nvid.to_bytes(2, "little") + bytes([AUTHENTICATED]) + pad
            for i, nvid in entries
        )
        if len(raw) > size:
            raise NeedsHumanError("the stick's APS link key table cannot hold every key")
        return raw.ljust(size, b"\x00")


def seeded_key(ieee_le: bytes, seed: bytes, shift: int) -> bytes:
    """The key a TCLK table entry stands for: the seed rotated by ``shift``, XOR IEEE twice."""
    rotated = seed[shift:] + seed[:shift]
    return bytes(a ^ b for a, b in zip(rotated, ieee_le * 2, strict=True))


def seed_shift(ieee_le: bytes, key: bytes, seed: bytes) -> int | None:
    """The shift under which ``seed`` yields ``key`` for this device, if any."""
    for shift in range(16):
        if seeded_key(ieee_le, seed, shift) == key:
            return shift
    return None


# --- on the stick -------------------------------------------------------------------------


class LinkKeyStore:
    """Reads and writes the address manager and link key tables of one stick."""

    def __init__(self, nv: Nv) -> None:
        self.nv = nv
        self.product = nv.product
        self.layout = Layout(aligned=nv.product == PRODUCT_ZSTACK_3X0)

    @property
    def supported(self) -> bool:
        return self.product in (PRODUCT_ZSTACK_3X0, PRODUCT_ZSTACK_30X)

    async def _ex(self, name: str, item: int, sub: int, **fields: cd.FieldValue) -> Message:
        """SYS_NV_READ/WRITE of one extended NV entry; NV_OPER_FAILED needs a human."""
        rsp = await self.nv.api.request(
            c.BY_NAME[name], SysId=NVINTF_SYSID_ZSTACK, ItemId=item, SubId=sub, Offset=0, **fields
        )
        if rsp["Status"] == t.Status.NV_OPER_FAILED:
            raise NeedsHumanError(NVRAM_CORRUPTED)
        return rsp

    async def _ex_read(self, item: int, sub: int, length: int) -> bytes | None:
        rsp = await self._ex("SYS_NV_READ", item, sub, Length=length)
        return bytes(rsp["Value"]) if rsp["Status"] == t.Status.SUCCESS else None

    async def _ex_write(self, item: int, sub: int, value: bytes) -> bool:
        rsp = await self._ex("SYS_NV_WRITE", item, sub, Value=value)
        return bool(rsp["Status"] == t.Status.SUCCESS)

    async def _table(self, item: int, legacy: range, size: int) -> list[bytes]:
        """Every entry of a table (extended NV on 3.x.0, an OSAL id range on 3.0.x)."""
        out: list[bytes] = []
        if self.product == PRODUCT_ZSTACK_3X0:
            for sub in range(EX_TABLE_MAX):
                value = await self._ex_read(item, sub, size)
                if value is None:
                    break
                out.append(value)
        else:
            for nvid in legacy:
                value = await self.nv.read(nvid)
                if value is None:
                    break
                out.append(value)
        return out

    async def _write_table(
        self, item: int, legacy: range, values: list[bytes], fill: bytes
    ) -> None:
        """Our entries first, then blank every entry the table had after them."""
        if self.product == PRODUCT_ZSTACK_3X0:
            for sub in range(EX_TABLE_MAX):
                value = values[sub] if sub < len(values) else fill
                if not await self._ex_write(item, sub, value):
                    if sub < len(values):
                        raise NeedsHumanError("the stick's key tables cannot hold every device")
                    return
            return
        for i, nvid in enumerate(legacy):
            if i < len(values):
                await self.nv.write(nvid, values[i])
            elif await self.nv.read(nvid) is None:
                return
            else:
                await self.nv.write(nvid, fill)
        if len(values) > len(legacy):
            raise NeedsHumanError("the stick's key tables cannot hold every device")

    async def _addr_entries(self) -> list[bytes]:
        size = self.layout.addr_size
        if self.product == PRODUCT_ZSTACK_3X0:
            return await self._table(EX_ADDRMGR, range(0), size)
        raw = await self.nv.read(OSAL_ADDRMGR) or b""
        return [raw[i : i + size] for i in range(0, len(raw) - size + 1, size)]

    async def read(self, seed: bytes | None) -> list[BackupDevice]:
        """The devices the stick knows (address manager), each with its link key if any."""
        if not self.supported:
            return []
        lay = self.layout
        entries = [lay.parse_addr(e) for e in await self._addr_entries()]
        devices: dict[bytes, BackupDevice] = {}
        for kind, nwk, ieee_le in entries:
            if ieee_le in (bytes(8), b"\xff" * 8) or kind == 0xFF:
                continue
            if kind & (ADDR_ASSOC | ADDR_SECURITY):
                devices[ieee_le] = BackupDevice(ieee_le[::-1].hex(), nwk, bool(kind & ADDR_ASSOC))
        keys: dict[bytes, LinkKey] = {}
        if seed is not None and len(seed) >= 16:
            for raw in await self._table(EX_TCLK_TABLE, LEGACY_TCLK_TABLE, lay.tclk_size):
                tx, rx, ieee_le, shift = lay.parse_tclk(raw)
                if ieee_le != bytes(8) and shift < 16:
                    keys[ieee_le] = LinkKey(seeded_key(ieee_le, seed[:16], shift), tx, rx)
        base = 0 if self.product == PRODUCT_ZSTACK_3X0 else LEGACY_APS_KEY_DATA.start
        data = await self._table(EX_APS_KEY_DATA_TABLE, LEGACY_APS_KEY_DATA, 24)
        for index, nvid, state in lay.parse_link_table(
            await self.nv.read(OSAL_APS_LINK_KEY_TABLE) or b""
        ):
            if state != AUTHENTICATED:
                continue
            if not (0 <= nvid - base < len(data) and index < len(entries)):
                raise ProtocolError("APS link key table points outside its tables")
            raw = data[nvid - base]
            ieee_le = entries[index][2]
            keys[ieee_le] = LinkKey(
                raw[:16], int.from_bytes(raw[16:20], "little"), int.from_bytes(raw[20:24], "little")
            )
        return [
            BackupDevice(d.ieee, d.nwk, d.is_child, keys.get(ieee_le))
            for ieee_le, d in devices.items()
        ]

    async def write(self, devices: list[BackupDevice], seed: bytes | None) -> None:
        """Write the devices and their keys (replacing the tables' contents)."""
        if not self.supported:
            return
        lay = self.layout
        tclk: list[bytes] = []
        data: list[bytes] = []
        links: list[tuple[int, int]] = []
        addrs: list[bytes] = []
        base = 0 if self.product == PRODUCT_ZSTACK_3X0 else LEGACY_APS_KEY_DATA.start
        for index, dev in enumerate(devices):
            ieee_le = bytes.fromhex(dev.ieee)[::-1]
            kind = (ADDR_ASSOC if dev.is_child else 0) | (ADDR_SECURITY if dev.link_key else 0)
            addrs.append(lay.addr(kind, 0xFFFE if dev.nwk is None else dev.nwk, ieee_le))
            key = dev.link_key
            if key is None:
                continue
            tx = key.tx_counter + TX_COUNTER_INCREMENT
            shift = seed_shift(ieee_le, key.key, seed[:16]) if seed else None
            if shift is not None:
                tclk.append(lay.tclk(tx, key.rx_counter, ieee_le, VERIFIED_KEY, shift))
            else:
                links.append((index, base + len(data)))
                data.append(
                    key.key + tx.to_bytes(4, "little") + key.rx_counter.to_bytes(4, "little")
                )
        zstack3x0 = self.product == PRODUCT_ZSTACK_3X0
        if zstack3x0:
            await self._write_table(EX_ADDRMGR, range(0), addrs, lay.empty_addr(True))
        else:
            old = await self.nv.read(OSAL_ADDRMGR) or b""
            capacity = len(old) // lay.addr_size
            if len(addrs) > capacity:
                raise NeedsHumanError("the stick's address manager cannot hold every device")
            empty = lay.empty_addr(False)
            await self.nv.write(OSAL_ADDRMGR, b"".join(addrs + [empty] * (capacity - len(addrs))))
        old_links = await self.nv.read(OSAL_APS_LINK_KEY_TABLE)
        if old_links is None:
            raise ProtocolError("the stick has no APS link key table")
        await self.nv.write(OSAL_APS_LINK_KEY_TABLE, lay.link_table(links, len(old_links)))
        await self._write_table(
            EX_TCLK_TABLE, LEGACY_TCLK_TABLE, tclk, lay.tclk(0, 0, bytes(8), DEFAULT_KEY, 0)
        )
        await self._write_table(EX_APS_KEY_DATA_TABLE, LEGACY_APS_KEY_DATA, data, bytes(24))
