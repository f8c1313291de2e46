"""The request/response layer against an in-memory link (the ByteLink seam), plus the
device table and backup codec."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import NeedsHumanError
from drivers.zigbee import backup as bk
from drivers.zigbee.api import CommandNotRecognized, LinkLost, ZnpApi
from drivers.zigbee.devices import DeviceRecord, DeviceTable, load_table
from drivers.zigbee.timing import ZigbeeTiming
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Message


class FakeLink:
    """Records what the API writes; the test plays the stick by calling api.data_received."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.on_write: Any = None

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.on_write is not None:
            self.on_write(data)

    async def aclose(self) -> None:
        self.closed = True

    def set_control_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        pass


@pytest.fixture
async def api() -> tuple[ZnpApi, FakeLink]:
    a = ZnpApi("test")
    link = FakeLink()
    a.attach(link)
    return a, link


async def test_request_gets_its_srsp(api: tuple[ZnpApi, FakeLink]) -> None:
    a, link = api
    # the answer arrives in the same loop turn as the write: the listener must already exist
    link.on_write = lambda data: a.data_received(bytes.fromhex("fe026101110073"))
    rsp = await a.request(c.SYS_PING)
    assert link.written == [bytes.fromhex("fe00210120")]
    assert rsp == Message(c.SYS_PING, c.Kind.RESPONSE, {"Capabilities": t.MTCapabilities(0x11)})


async def test_one_request_at_a_time(api: tuple[ZnpApi, FakeLink]) -> None:
    a, link = api
    first = asyncio.create_task(a.request(c.SYS_PING))
    second = asyncio.create_task(a.request(c.SYS_VERSION))
    await asyncio.sleep(0.01)
    assert link.written == [bytes.fromhex("fe00210120")]  # the second waits for the lock
    a.data_received(bytes.fromhex("fe026101110073"))
    await first
    await asyncio.sleep(0.01)
    assert link.written[1] == bytes.fromhex("fe00210223")
    a.data_received(bytes.fromhex("fe0a6102020102070146d9340100c4"))
    ver = await second
    assert ver["CodeRevision"] == 20240710


async def test_timeout_and_rpc_error(
    api: tuple[ZnpApi, FakeLink], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, link = api
    with pytest.raises(TimeoutError, match="SYS_PING"):
        await a.request(c.SYS_PING, wait_s=0.01)
    assert a.counters["timeouts"] == 1
    # RPC error naming our request header (cmd0 0x21, cmd1 0x02): not recognized
    link.on_write = lambda data: a.data_received(
        frames.encode(
            c.RPC_ERROR.rsp(ErrorCode=t.ErrorCode.INVALID_COMMAND_ID, RequestHeader=0x0221)
        )
    )
    with pytest.raises(CommandNotRecognized, match="INVALID_COMMAND_ID"):
        await a.request(c.SYS_VERSION)


async def test_callback_exceptions_are_isolated(api: tuple[ZnpApi, FakeLink]) -> None:
    a, _ = api
    got: list[Message] = []

    def bad(msg: Message) -> None:
        raise RuntimeError("subscriber bug")

    a.subscribe(bad)
    a.subscribe(got.append)
    a.data_received(bytes.fromhex("fe0145c0098d") + b"\x00\xfe\x01" + bytes.fromhex("fe0145c0088c"))
    assert [m["State"] for m in got] == [t.DeviceState.ZB_COORD, t.DeviceState.COORD_STARTING]
    assert a.counters["callback_errors"] == 2
    assert a.framer.bad_frames >= 1
    # unknown and undecodable frames are counted, not raised
    a.data_received(frames.encode(frames.Frame.from_header(0x4D, 0x99, b"\x01")))
    a.data_received(frames.encode(frames.Frame.from_header(0x45, 0xC0, b"")))
    assert a.counters["unknown_frames"] == 1
    assert a.counters["decode_errors"] == 1


async def test_request_then_matches_the_confirm(api: tuple[ZnpApi, FakeLink]) -> None:
    a, link = api

    def stick(data: bytes) -> None:
        a.data_received(bytes.fromhex("fe0164010064"))  # SRSP success
        a.data_received(bytes.fromhex("fe0344800001c503"))  # confirm for another TSN (197)
        a.data_received(bytes.fromhex("fe034480cd01959e"))  # ours: 149, NWK_NO_ROUTE

    link.on_write = stick
    _rsp, confirm = await a.request_then(
        c.AF_DATA_REQUEST,
        c.AF_DATA_CONFIRM,
        {"TSN": 149},
        callback_wait_s=1,
        DstAddr=0xA64D,
        DstEndpoint=1,
        SrcEndpoint=1,
        ClusterId=0x0402,
        TSN=149,
        Options=t.TransmitOptions.NONE,
        Radius=30,
        Data=bytes.fromhex("103d000000"),
    )
    assert link.written == [bytes.fromhex("fe0f24014da60101020495001e05103d00000064")]
    assert confirm is not None
    assert confirm.fields == {"Status": t.Status.NWK_NO_ROUTE, "Endpoint": 1, "TSN": 149}


async def test_link_lost_fails_waiters() -> None:
    a = ZnpApi("test", ZigbeeTiming(sreq_timeout=5.0))
    a.attach(FakeLink())
    pending = asyncio.create_task(a.request(c.SYS_PING))
    await asyncio.sleep(0.01)
    a.connection_lost(OSError("device disconnected"))
    with pytest.raises(LinkLost):
        await pending
    with pytest.raises(LinkLost):
        await a.wait_closed()
    with pytest.raises(LinkLost):
        await a.request(c.SYS_PING)


async def test_a_stalled_frame_does_not_hold_the_answer_behind_it() -> None:
    """A corrupted length byte claims more bytes than the stick sends: the incomplete frame
    is expired after frame_stall_s, counted as bad, and the SRSP in its bytes still read."""
    a = ZnpApi("test", ZigbeeTiming(sreq_timeout=5.0, frame_stall_s=0.05))
    link = FakeLink()
    a.attach(link)
    srsp = bytes.fromhex("fe026101110073")
    # SYS_PING's SRSP with LEN 0x02 flipped to 0x42, then the good SRSP: 71 bytes claimed
    link.on_write = lambda data: a.data_received(bytes.fromhex("fe426101110073") + srsp)
    rsp = await a.request(c.SYS_PING)
    assert rsp == Message(c.SYS_PING, c.Kind.RESPONSE, {"Capabilities": t.MTCapabilities(0x11)})
    assert (a.framer.bad_frames, a.framer.garbage_bytes, a.framer.waiting_at) == (1, 6, None)


async def test_a_frame_split_across_reads_is_not_expired() -> None:
    """The stall timer looks at the frame that waits when it fires: one that completed in
    time is delivered, a later one that never completes is expired."""
    a = ZnpApi("test", ZigbeeTiming(frame_stall_s=0.2))
    got: list[Message] = []
    a.subscribe(got.append)
    ind = bytes.fromhex("fe0145c0098d")  # ZDO_STATE_CHANGE_IND: coordinator started
    a.data_received(ind[:3])
    await asyncio.sleep(0.02)
    a.data_received(ind[3:])
    a.data_received(ind[:3])  # the next one starts and stops
    await asyncio.wait_for(_expired(a), 2.0)
    assert [m.fields for m in got] == [{"State": t.DeviceState.ZB_COORD}]
    assert (a.framer.bad_frames, a.framer.garbage_bytes) == (1, 2)


async def _expired(a: ZnpApi) -> None:
    while a.framer.bad_frames == 0:
        await asyncio.sleep(0.01)


# --- device table ------------------------------------------------------------------------


def test_device_table_round_trip_and_nwk_moves(tmp_path: Path) -> None:
    table = DeviceTable(tmp_path)
    rec = table.put(DeviceRecord("00158d0001a2b3c4", 0x1234, "lumi.plug", endpoints=(1, 2)))
    table.put(DeviceRecord("00158d0001a2b3c5", 0x2222))
    assert table.by_nwk(0x1234) == rec
    moved = table.update("00158d0001a2b3c4", nwk=0x5678)
    assert table.by_nwk(0x1234) is None
    assert table.by_nwk(0x5678) == moved
    table.save()
    assert not list(tmp_path.glob(".*tmp"))
    assert load_table(tmp_path) == sorted(table, key=lambda r: r.ieee)
    table.remove("00158d0001a2b3c5")
    assert table.by_nwk(0x2222) is None
    assert len(table) == 1


def test_corrupt_table_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "zigbee_devices.json").write_text("{not json")
    table = DeviceTable(tmp_path)
    table.load()
    assert len(table) == 0
    assert len(list(tmp_path.glob("zigbee_devices.json.corrupt-*"))) == 1


# --- backup codec --------------------------------------------------------------------------

Z2M_DOC = {
    "metadata": {
        "format": "zigpy/open-coordinator-backup",
        "version": 1,
        "source": "zigbee-herdsman@0.13.0",
        "internal": {"date": "2021-03-03T13:27:18.454Z", "znpVersion": 2},
    },
    "stack_specific": {"zstack": {"tclk_seed": "928a2c479e72a9a53e3b5133fc55021f"}},
    "coordinator_ieee": "00124b00234a6c4b",
    "pan_id": "007b",
    "extended_pan_id": "00124b00234a6c4b",
    "nwk_update_id": 0,
    "security_level": 5,
    "channel": 11,
    "channel_mask": [11],
    "network_key": {
        "key": "01030507090b0d0f00020406080a0c0d",
        "sequence_number": 0,
        "frame_counter": 16754,
    },
    "devices": [
        {
            "nwk_address": "ddf6",
            "ieee_address": "00124b002226ef87",
            "is_child": True,
            "link_key": {
                "key": "aab1d4f5d6e5a3d20d6c1dd4c0c6cbd5",
                "rx_counter": 0,
                "tx_counter": 275,
            },
        }
    ],
}


def test_backup_reads_zigbee2mqtt_and_round_trips() -> None:
    info = bk.from_open_coordinator(Z2M_DOC)
    assert info == bk.NetworkInfo(
        coordinator_ieee="00124b00234a6c4b",
        pan_id=0x007B,
        extended_pan_id="00124b00234a6c4b",
        channel=11,
        network_key=bytes.fromhex("01030507090b0d0f00020406080a0c0d"),
        key_sequence=0,
        frame_counter=16754,
        nwk_update_id=0,
        security_level=5,
        channel_mask=(11,),
        devices=(
            bk.BackupDevice(
                "00124b002226ef87",
                0xDDF6,
                True,
                bk.LinkKey(bytes.fromhex("aab1d4f5d6e5a3d20d6c1dd4c0c6cbd5"), 275, 0),
            ),
        ),
        tclk_seed=bytes.fromhex("928a2c479e72a9a53e3b5133fc55021f"),
    )
    assert "0103050709" not in repr(info)  # the key never shows in a repr
    assert "aab1d4f5" not in repr(info)  # nor a device's link key
    doc = bk.to_open_coordinator(info, source="migw")
    assert bk.from_open_coordinator(json.loads(json.dumps(doc))) == info
    assert doc["devices"] == Z2M_DOC["devices"]


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"format": "zigpy/open-coordinator-backup", "version": 2}},
        {"channel": 30},
        {"network_key": {"key": "abc"}},
        {"coordinator_ieee": "zz"},
        {"pan_id": None},
        {"devices": [{"ieee_address": "00124b002226ef87", "link_key": {"key": "ab"}}]},
    ],
)
def test_backup_rejects_bad_documents(change: dict[str, Any]) -> None:
    with pytest.raises(NeedsHumanError):
        bk.from_open_coordinator({**Z2M_DOC, **change})


async def test_trace_never_shows_key_material(
    api: tuple[ZnpApi, FakeLink], caplog: pytest.LogCaptureFixture
) -> None:
    from drivers import TRACE

    a, link = api
    key = bytes.fromhex("01030507090b0d0f00020406080a0c0d")

    def stick(data: bytes) -> None:
        nvid = c.decode(frames.decode(data))["Id"]
        value = key if nvid == t.NvId.PRECFGKEY else b"\x62\x1a"
        a.data_received(frames.encode(c.SYS_OSAL_NV_READ.rsp(Status=t.Status.SUCCESS, Value=value)))

    link.on_write = stick
    with caplog.at_level(TRACE, logger="drivers.zigbee.api"):
        got = await a.request(c.SYS_OSAL_NV_READ, Id=t.NvId.PRECFGKEY, Offset=0)
        await a.request(c.SYS_OSAL_NV_READ, Id=t.NvId.PANID, Offset=0)
    assert got["Value"] == key
    text = caplog.text
    assert key.hex() not in text
    assert "bytes redacted" in text
    assert "fe0321086200004c" not in text  # the key request itself is quiet too
    assert "fe03210883000" in text  # other NV items are traced


async def test_callback_exception_log_is_rate_limited(
    api: tuple[ZnpApi, FakeLink], caplog: pytest.LogCaptureFixture
) -> None:
    """A subscriber failing on every frame logs one traceback, then only at DEBUG."""
    a, _ = api

    def bad(msg: Message) -> None:
        raise RuntimeError("subscriber bug")

    a.subscribe(bad)
    caplog.set_level(logging.DEBUG, logger="drivers.zigbee.api")
    for _ in range(5):
        a.data_received(bytes.fromhex("fe0145c0098d"))
    assert a.counters["callback_errors"] == 5
    records = [r for r in caplog.records if r.name == "drivers.zigbee.api"]
    assert [(r.levelno, r.exc_info is not None) for r in records] == [
        (logging.ERROR, True),
        *[(logging.DEBUG, False)] * 4,
    ]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
async def test_permission_denied_from_pyserial_needs_a_human(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """pyserial raises SerialException(errno, ...), not PermissionError, on a locked port."""
    import serial
    import serial_asyncio_fast

    from drivers.zigbee import transport

    async def refuse(*args: object, **kwargs: object) -> None:
        raise serial.SerialException(
            code, f"could not open port /dev/ttyUSB0: [Errno {code}] {os.strerror(code)}"
        )

    monkeypatch.setattr(serial_asyncio_fast, "create_serial_connection", refuse)
    with pytest.raises(NeedsHumanError) as info:
        await transport.open_serial(
            "/dev/ttyUSB0", baudrate=115200, rtscts=False, on_bytes=print, on_lost=print
        )
    assert str(info.value) == (
        "permission denied on /dev/ttyUSB0: add the service user to the dialout group"
    )


async def test_other_serial_errors_stay_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    import serial
    import serial_asyncio_fast

    from drivers.errors import TransientError
    from drivers.zigbee import transport

    async def gone(*args: object, **kwargs: object) -> None:
        raise serial.SerialException(errno.ENOENT, "could not open port /dev/ttyUSB0: gone")

    monkeypatch.setattr(serial_asyncio_fast, "create_serial_connection", gone)
    with pytest.raises(TransientError, match="cannot open /dev/ttyUSB0"):
        await transport.open_serial(
            "/dev/ttyUSB0", baudrate=115200, rtscts=False, on_bytes=print, on_lost=print
        )


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("network_key", "01030507090b0d0f00020406080a0c0"),  # one digit lost in copy/paste
        ("network_key", "01030507090b0d0f00020406080a0cZZ"),
        ("tclk_seed", "928a2c479e72a9a53e3b5133fc55021"),
    ],
)
def test_backup_errors_never_echo_key_material(where: str, value: str) -> None:
    doc: dict[str, Any] = {
        "metadata": {"format": bk.FORMAT, "version": 1},
        "coordinator_ieee": "00124b0001020304",
        "pan_id": "1a62",
        "extended_pan_id": "dddddddddddddddd",
        "channel": 25,
        "network_key": {"key": "01" * 16, "sequence_number": 0, "frame_counter": 1},
    }
    if where == "network_key":
        doc["network_key"]["key"] = value
    else:
        doc["stack_specific"] = {"zstack": {"tclk_seed": value}}
    with pytest.raises(NeedsHumanError) as info:
        bk.from_open_coordinator(doc)
    msg = str(info.value)
    assert value[:8] not in msg
    assert f"{len(value)} characters" in msg


@pytest.mark.parametrize("which", ["devices", "backup"])
def test_atomic_writes_fsync_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """After the rename the directory entry is flushed too (power loss keeps the new file)."""
    import stat

    from drivers.zigbee import coordinator as co
    from drivers.zigbee import devices

    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(
            ("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", (tmp_path / "f").exists())
        )
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if which == "devices":
        devices.atomic_write_json(tmp_path / "f", {"a": 1})
    else:
        co.write_secret_json(tmp_path / "f", {"a": 1})
    # the file before the rename, the directory after it
    assert synced == [("file", False), ("dir", True)]
