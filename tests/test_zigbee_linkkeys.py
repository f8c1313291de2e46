"""Per-device link keys in backup and restore (issue 11.4), checked against zigpy-znp.

The oracle is zigpy-znp itself: its NV structs (AddrMgrEntry, TCLKDevEntry,
APSKeyDataTableEntry, APSLinkKeyTable) build the emulator's tables, and its own backup reader
(``zigpy_znp.znp.security.read_devices``, what ZHA puts in an open coordinator backup) reads
the emulator's NV in-process, through zigpy-znp's NVRAM helper, before and after our restore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zigpy_znp import types as zt
from zigpy_znp.exceptions import InvalidCommandResponse
from zigpy_znp.nvram import NVRAMHelper
from zigpy_znp.znp import security

from drivers.errors import NeedsHumanError
from drivers.zigbee import backup as bk
from drivers.zigbee import linkkeys as lk
from drivers.zigbee.coordinator import Coordinator, CoordinatorConfig
from tests.test_zstack_emulated import FAST, SENSOR_IEEE, weather_sensor
from tests.zigbee_support import Recorder, running, until
from tests.zstack_emulator import FAMILIES, HANDLERS, EmulatedDevice, ZStackEmulator

VERSIONS = {"1.2": 1.2, "3.0": 3.0, "3.30": 3.30}
OWN_KEY = bytes(range(0x10, 0x20))
KEYED_IEEE = "00158d000aabbcc1"


class ZigpyZnpReader:
    """zigpy-znp's ZNP as its NVRAM helper sees it, answered by the emulator's handlers."""

    def __init__(self, emu: ZStackEmulator) -> None:
        self.emu = emu
        self.version = VERSIONS[emu.family]
        self.capabilities = emu.capabilities
        self.nvram = NVRAMHelper(self)
        self.nvram.align_structs = emu.align

    async def request(self, req: Any, RspStatus: Any = None, **_: Any) -> Any:
        answers = HANDLERS[type(req).__qualname__.rsplit(".", 1)[0]](self.emu, req)
        assert answers, "every request zigpy-znp's NVRAM helper sends has an answer"
        rsp = answers[0]
        if RspStatus is not None and rsp.Status != RspStatus:
            raise InvalidCommandResponse("unexpected status", rsp)
        return rsp

    async def devices(self) -> dict[str, dict[str, Any] | None]:
        seed = self.emu.nv.get(0x0101) if self.version > 1.2 else None
        stored = await security.read_devices(
            self, tclk_seed=zt.KeyData(seed[:16]) if seed else None
        )
        return {
            str(d.node_info.ieee).replace(":", ""): None
            if d.key is None
            else {
                "key": bytes(d.key.key).hex(),
                "tx_counter": int(d.key.tx_counter),
                "rx_counter": int(d.key.rx_counter),
            }
            for d in stored
        }


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_link_keys_are_backed_up_and_restored(tmp_path: Path, family: str) -> None:
    sensor = weather_sensor()
    keyed = EmulatedDevice(KEYED_IEEE, 0x1234, link_key=OWN_KEY)
    async with ZStackEmulator(family) as emu:
        emu.add_device(sensor)
        emu.add_device(keyed)
        coord = Coordinator(
            CoordinatorConfig(port=emu.path, state_dir=tmp_path / "a", timing=FAST), Recorder()
        )
        async with running(coord):
            await until(lambda: coord.connected)
            await coord.permit_join(60)
            await until(lambda: all(d.joined for d in emu.devices))
            doc = await coord.backup()
        before = await ZigpyZnpReader(emu).devices()
        seeded = emu.seeded_link_key(sensor) if emu.product else b""
    keys = {d["ieee_address"]: d.get("link_key") for d in doc["devices"]}
    if family == "1.2":  # Z-Stack 1.2 keeps no unique link keys (nor does zigpy-znp read any)
        assert before == {}
        assert all(k is None for k in keys.values())
        return
    expected: dict[str, dict[str, Any]] = {
        SENSOR_IEEE: {"key": seeded.hex(), "tx_counter": 11, "rx_counter": 5},
        KEYED_IEEE: {"key": OWN_KEY.hex(), "tx_counter": 21, "rx_counter": 8},
    }
    assert keys == expected == before
    # the backup reads back (ours and zigpy's reader of the format)
    assert {d.ieee: d.link_key for d in bk.from_open_coordinator(doc).devices} == {
        ieee: bk.LinkKey(bytes.fromhex(k["key"]), k["tx_counter"], k["rx_counter"])
        for ieee, k in expected.items()
    }
    zigpy_backups = pytest.importorskip("zigpy.backups")
    zb = zigpy_backups.NetworkBackup.from_open_coordinator_json(doc)
    assert {
        str(k.partner_ieee).replace(":", ""): bytes(k.key) for k in zb.network_info.key_table
    } == {ieee: bytes.fromhex(k["key"]) for ieee, k in expected.items()}
    # restore onto a blank stick: zigpy-znp reads every key back, tx counters moved on
    async with ZStackEmulator(family, ieee="00124b0024c2e1d6") as emu_b:
        coord_b = Coordinator(
            CoordinatorConfig(port=emu_b.path, state_dir=tmp_path / "b", timing=FAST)
        )
        async with coord_b.session(start=False) as session:
            await session.restore(doc)
            again = await session.backup()
        after = await ZigpyZnpReader(emu_b).devices()
    moved = {
        ieee: {**k, "tx_counter": k["tx_counter"] + lk.TX_COUNTER_INCREMENT}
        for ieee, k in expected.items()
    }
    assert after == moved
    assert {d["ieee_address"]: d.get("link_key") for d in again["devices"]} == moved


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16), st.integers(0, 15))
def test_seeded_key_is_zigpy_znps(ieee_le: bytes, seed: bytes, shift: int) -> None:
    ieee = zt.EUI64(ieee_le)
    theirs = bytes(security.compute_key(ieee, zt.KeyData(seed), shift))
    assert lk.seeded_key(ieee_le, seed, shift) == theirs
    found = lk.seed_shift(ieee_le, theirs, seed)
    assert found is not None
    assert lk.seeded_key(ieee_le, seed, found) == theirs


@pytest.mark.parametrize("aligned", [False, True])
def test_layouts_are_zigpy_znps(aligned: bool) -> None:
    lay = lk.Layout(aligned)
    ieee_le = bytes.fromhex("c1ccbb0a008d1500")
    addr = zt.AddrMgrEntry(
        type=zt.AddrMgrUserType.Assoc | zt.AddrMgrUserType.Security,
        nwkAddr=0x1234,
        extAddr=zt.EUI64(ieee_le),
    )
    assert lay.addr(0x03, 0x1234, ieee_le) == addr.serialize(align=aligned)
    assert lay.parse_addr(addr.serialize(align=aligned)) == (0x03, 0x1234, ieee_le)
    tclk = zt.TCLKDevEntry(
        txFrmCntr=7,
        rxFrmCntr=9,
        extAddr=zt.EUI64(ieee_le),
        keyAttributes=zt.KeyAttributes.VERIFIED_KEY,
        keyType=zt.KeyType.NONE,
        SeedShift_IcIndex=5,
    )
    assert lay.tclk(7, 9, ieee_le, lk.VERIFIED_KEY, 5) == tclk.serialize(align=aligned)
    assert lay.parse_tclk(tclk.serialize(align=aligned)) == (7, 9, ieee_le, 5)
    links = zt.APSLinkKeyTable(
        [
            zt.APSLinkKeyTableEntry(
                AddressManagerIndex=2,
                LinkKeyNvId=0x0203,
                AuthenticationState=zt.AuthenticationOption.AuthenticatedCBCK,
            )
        ]
    )
    raw = links.serialize(align=aligned)
    assert lay.link_table([(2, 0x0203)], len(raw) + 4) == raw + bytes(4)
    assert lay.parse_link_table(raw + bytes(4)) == [(2, 0x0203, lk.AUTHENTICATED)]
    with pytest.raises(NeedsHumanError):
        lay.link_table([(2, 0x0203)], len(raw) - 1)


def test_link_keys_in_the_backup_format_are_validated_and_never_shown() -> None:
    key = bk.LinkKey(OWN_KEY, 1, 2)
    assert OWN_KEY.hex() not in repr(bk.BackupDevice(KEYED_IEEE, 1, link_key=key))
    with pytest.raises(NeedsHumanError, match=r"link_key\.key must be 32 hex digits, got 4") as e:
        bk._link_key({"key": "abcd"})
    assert "abcd" not in str(e.value)
    with pytest.raises(NeedsHumanError, match="tx_counter"):
        bk._link_key({"key": OWN_KEY.hex(), "tx_counter": -1})
