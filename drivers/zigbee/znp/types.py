"""Wire enums (the MT header's command type and subsystem too) and NV item ids of the MT/ZNP
command tables (pure); the field codecs that read them are :mod:`drivers.zigbee.znp.codecs`.

Every enum is a :class:`drivers.wire.WireEnum`: an unknown wire value becomes a pseudo-member
named ``UNKNOWN`` that keeps the raw number, so decoding never raises on a new firmware's
code and re-encoding is exact.
"""

from __future__ import annotations

import enum

from drivers.wire import WireEnum


class CommandType(WireEnum):
    POLL = 0
    SREQ = 1
    AREQ = 2
    SRSP = 3


class Subsystem(WireEnum):
    RPC_ERROR = 0x00
    SYS = 0x01
    MAC = 0x02
    NWK = 0x03
    AF = 0x04
    ZDO = 0x05
    SAPI = 0x06
    UTIL = 0x07
    DEBUG = 0x08
    APP = 0x09
    OTA = 0x0A
    ZNP = 0x0B
    UBL_FUNC = 0x0D
    APP_CNF = 0x0F
    ZGP = 0x15


class Status(WireEnum):
    """MT / Z-Stack status codes (shared by SYS, AF, ZDO and MAC layers)."""

    SUCCESS = 0x00
    FAILURE = 0x01
    INVALID_PARAMETER = 0x02
    INVALID_TASK = 0x03
    MSG_BUFFER_NOT_AVAIL = 0x04
    INVALID_MSG_POINTER = 0x05
    INVALID_EVENT_ID = 0x06
    INVALID_INTERRUPT_ID = 0x07
    NO_TIMER_AVAIL = 0x08
    NV_ITEM_UNINIT = 0x09
    NV_OPER_FAILED = 0x0A
    INVALID_MEM_SIZE = 0x0B
    NV_BAD_ITEM_LEN = 0x0C
    MEM_ERROR = 0x10
    BUFFER_FULL = 0x11
    UNSUPPORTED_MODE = 0x12
    MAC_MEM_ERROR = 0x13
    MAC_UNSUPPORTED = 0x18
    MAC_BAD_STATE = 0x19
    MAC_NO_RESOURCES = 0x1A
    NOT_AUTHORIZED = 0x7E
    MALFORMED_CMD = 0x80
    UNSUP_CLUSTER_CMD = 0x81
    SEC_NO_KEY = 0xA1
    SEC_OLD_FRM_COUNT = 0xA2
    SEC_MAX_FRM_COUNT = 0xA3
    SEC_CCM_FAIL = 0xA4
    SEC_FAILURE = 0xAD
    APS_FAIL = 0xB1
    APS_TABLE_FULL = 0xB2
    APS_ILLEGAL_REQUEST = 0xB3
    APS_INVALID_BINDING = 0xB4
    APS_UNSUPPORTED_ATTRIB = 0xB5
    APS_NOT_SUPPORTED = 0xB6
    APS_NO_ACK = 0xB7
    APS_DUPLICATE_ENTRY = 0xB8
    APS_NO_BOUND_DEVICE = 0xB9
    APS_NOT_ALLOWED = 0xBA
    APS_NOT_AUTHENTICATED = 0xBB
    NWK_INVALID_PARAM = 0xC1
    NWK_INVALID_REQUEST = 0xC2
    NWK_NOT_PERMITTED = 0xC3
    NWK_STARTUP_FAILURE = 0xC4
    NWK_ALREADY_PRESENT = 0xC5
    NWK_SYNC_FAILURE = 0xC6
    NWK_TABLE_FULL = 0xC7
    NWK_UNKNOWN_DEVICE = 0xC8
    NWK_UNSUPPORTED_ATTRIBUTE = 0xC9
    NWK_NO_NETWORKS = 0xCA
    NWK_LEAVE_UNCONFIRMED = 0xCB
    NWK_NO_ACK = 0xCC
    NWK_NO_ROUTE = 0xCD
    MAC_BEACON_LOSS = 0xE0
    MAC_CHANNEL_ACCESS_FAILURE = 0xE1
    MAC_DENIED = 0xE2
    MAC_DISABLE_TRX_FAILURE = 0xE3
    MAC_FAILED_SECURITY_CHECK = 0xE4
    MAC_FRAME_TOO_LONG = 0xE5
    MAC_INVALID_GTS = 0xE6
    MAC_INVALID_HANDLE = 0xE7
    MAC_INVALID_PARAMETER = 0xE8
    MAC_NO_ACK = 0xE9
    MAC_NO_BEACON = 0xEA
    MAC_NO_DATA = 0xEB
    MAC_NO_SHORT_ADDR = 0xEC
    MAC_OUT_OF_CAP = 0xED
    MAC_PAN_ID_CONFLICT = 0xEE
    MAC_REALIGNMENT = 0xEF
    MAC_TRANSACTION_EXPIRED = 0xF0
    MAC_TRANSACTION_OVERFLOW = 0xF1
    MAC_TX_ACTIVE = 0xF2
    MAC_UNAVAILABLE_KEY = 0xF3
    MAC_UNSUPPORTED_ATTRIBUTE = 0xF4
    MAC_UNSUPPORTED_LEGACY = 0xF5
    MAC_UNSUPPORTED_SECURITY = 0xF6


#: Delivery failures of a sleepy or unreachable device: soft failures, not errors.
SOFT_DELIVERY_FAILURES = frozenset(
    {
        Status.NWK_NO_ROUTE,
        Status.MAC_NO_ACK,
        Status.MAC_TRANSACTION_EXPIRED,
        Status.APS_NO_ACK,
        Status.MAC_CHANNEL_ACCESS_FAILURE,
        Status.NWK_NO_ACK,
    }
)


class DeviceState(WireEnum):
    HOLD = 0
    INIT = 1
    NWK_DISC = 2
    NWK_JOINING = 3
    NWK_REJOIN = 4
    END_DEVICE_UNAUTH = 5
    END_DEVICE = 6
    ROUTER = 7
    COORD_STARTING = 8
    ZB_COORD = 9
    NWK_ORPHAN = 10


class StartupState(WireEnum):
    RESTORED_NETWORK = 0
    NEW_NETWORK = 1
    NOT_STARTED = 2


class ResetType(WireEnum):
    HARD = 0
    SOFT = 1
    SHUTDOWN = 2


class ResetReason(WireEnum):
    POWER_UP = 0
    EXTERNAL = 1
    WATCHDOG = 2


class BootloaderBuildType(WireEnum):
    NON_BOOTLOADER_BUILD = 0
    BUILT_AS_BIN = 1
    BUILT_AS_HEX = 2


class ErrorCode(WireEnum):
    INVALID_SUBSYSTEM = 1
    INVALID_COMMAND_ID = 2
    INVALID_PARAMETER = 3
    INVALID_LENGTH = 4


class AddrMode(WireEnum):
    NOT_PRESENT = 0x00
    GROUP = 0x01
    NWK = 0x02
    IEEE = 0x03
    BROADCAST = 0x0F


class BDBCommissioningStatus(WireEnum):
    SUCCESS = 0x00
    IN_PROGRESS = 0x01
    NO_NETWORK = 0x02
    TL_TARGET_FAILURE = 0x03
    TL_NOT_AA_CAPABLE = 0x04
    TL_NO_SCAN_RESPONSE = 0x05
    TL_NOT_PERMITTED = 0x06
    TCLK_EX_FAILURE = 0x07
    FORMATION_FAILURE = 0x08
    FB_TARGET_IN_PROGRESS = 0x09
    FB_INITIATOR_IN_PROGRESS = 0x0A
    FB_NO_IDENTIFY_QUERY_RESPONSE = 0x0B
    FB_BINDING_TABLE_FULL = 0x0C
    NETWORK_RESTORED = 0x0D
    FAILURE = 0x0E


class BDBCommissioningMode(enum.IntFlag):
    NONE = 0x00
    INITIATOR_TOUCHLINK = 0x01
    NWK_STEERING = 0x02
    NWK_FORMATION = 0x04
    FINDING_BINDING = 0x08
    TOUCHLINK = 0x10
    PARENT_LOST = 0x20


class MTCapabilities(enum.IntFlag):
    SYS = 1 << 0
    MAC = 1 << 1
    NWK = 1 << 2
    AF = 1 << 3
    ZDO = 1 << 4
    SAPI = 1 << 5
    UTIL = 1 << 6
    DEBUG = 1 << 7
    APP = 1 << 8
    GP = 1 << 9
    APP_CNF = 1 << 10
    ZOAD = 1 << 12


class TransmitOptions(enum.IntFlag):
    NONE = 0x00
    WILDCARD_PROFILE = 0x02
    APS_PREPROCESS = 0x04
    LIMIT_CONCENTRATOR = 0x08
    ACK_REQUEST = 0x10
    SUPPRESS_ROUTE_DISC = 0x20
    ENABLE_SECURITY = 0x40
    SKIP_ROUTING = 0x80


class MACCapabilities(enum.IntFlag):
    NONE = 0x00
    PAN_COORDINATOR = 0x01
    ROUTER = 0x02
    MAINS_POWERED = 0x04
    RX_WHEN_IDLE = 0x08
    SECURITY = 0x40
    ALLOCATE_ADDRESS = 0x80


class DeviceTypeCapabilities(enum.IntFlag):
    NONE = 0x00
    COORDINATOR = 0x01
    ROUTER = 0x02
    END_DEVICE = 0x04


class NvId(enum.IntEnum):
    """OSAL NV item ids used for network configuration."""

    EXTADDR = 0x0001
    STARTUP_OPTION = 0x0003
    NIB = 0x0021
    EXTENDED_PAN_ID = 0x002D
    BCAST_DELIVERY_TIME = 0x0030
    CONCENTRATOR_ENABLE = 0x0032
    CONCENTRATOR_DISCOVERY = 0x0033
    CONCENTRATOR_RC = 0x0036
    SRC_RTG_EXPIRY_TIME = 0x0038
    NWK_ACTIVE_KEY_INFO = 0x003A
    NWK_ALTERN_KEY_INFO = 0x003B
    NWK_CHILD_AGE_ENABLE = 0x003E
    APS_USE_EXT_PANID = 0x0047
    BDBNODEISONANETWORK = 0x0055
    HAS_CONFIGURED_ZSTACK3 = 0x0060
    PRECFGKEY = 0x0062
    PRECFGKEYS_ENABLE = 0x0063
    #: Z-Stack 1.2: the active network key descriptor and the NWK frame counter after it.
    NWKKEY = 0x0082
    PANID = 0x0083
    CHANLIST = 0x0084
    LOGICAL_TYPE = 0x0087
    ZDO_DIRECT_CB = 0x008F
    TCLK_SEED = 0x0101
    HAS_CONFIGURED_ZSTACK1 = 0x0F00


#: NV items holding key material: their values are never logged or printed.
SECRET_NV_IDS = frozenset(
    {
        NvId.PRECFGKEY,
        NvId.NWK_ACTIVE_KEY_INFO,
        NvId.NWK_ALTERN_KEY_INFO,
        NvId.TCLK_SEED,
        NvId.NWKKEY,
    }
)
