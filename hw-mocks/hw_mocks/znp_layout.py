"""The simulated stick's NV layout: default items, the NIB, the key tables (pure data).

Lengths and offsets are TI's structs as zigpy-znp and zigbee-herdsman read them: packed on
CC2530/CC2531 (Z-Stack 1.2, 3.0.x), aligned on CC26xx (3.x.0).
"""

from __future__ import annotations

import secrets

from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.types import NvId

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


def is_aligned(product: int) -> bool:
    """CC26xx (Z-Stack 3.x.0) aligns NV structs; CC2530/CC2531 (1.2, 3.0.x) packs them."""
    return product == 1


def default_nv(ieee: str, product: int = 1) -> dict[int, bytes]:
    aligned = is_aligned(product)
    return key_tables(product)[0] | {
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


def key_tables(product: int) -> tuple[dict[int, bytes], dict[tuple[int, int, int], bytes]]:
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
