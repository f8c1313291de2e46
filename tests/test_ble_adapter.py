"""The BLE pipeline end to end on simulated hardware: the scanner owner under injected
bleak/D-Bus faults, the bleak backend's passive->active fallback, and the gateway adapter
feeding a recording Sink from the synthetic fleet and from replayed vectors."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakError
from dbus_fast.errors import DBusError

from drivers.ble import bthome, mibeacon_encode
from drivers.ble import scanner as scanner_mod
from drivers.ble.keys import parse_key
from drivers.ble.products import product
from drivers.ble.scanner import (
    BleakBackend,
    BleScanner,
    DetectionCallback,
    Scanner,
    ScannerTiming,
    supervise,
)
from drivers.ble.types import UUID_BTHOME_V2, UUID_MIBEACON, Advertisement, normalize_uuid
from drivers.supervisor import Backoff, State, Supervisor
from gateway.adapters import AdapterContext, BleTransport, DemoOptions, Transports
from gateway.adapters.ble import KNOWN_MAX, WARNED_MAX, BleDriver, create, device_id
from gateway.adapters.ble_setup import load_keys
from gateway.config import BleSection, Config, Secret
from gateway.demo import demo_context
from gateway.driver import Health
from gateway.model import Command, CommandStatus, DeviceStatus, DeviceUpdate, Transport
from hw_mocks.ble import (
    FailingScanner,
    FakeAdvertisementData,
    FakeDevice,
    ReplayScanner,
    SyntheticFleet,
    bleak_shaped,
    demo_key,
)
from hw_mocks.ble_fleet import VirtualSensor
from tests.helpers import RecordingSink

VECTORS = Path(__file__).parent / "vectors" / "ble.jsonl"
MAC = "A4:C1:38:8D:18:B2"


async def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


FAST = Backoff(initial=0.001, maximum=0.002)
#: Watch every millisecond; a sensor silent for 10 ms is a wedged adapter.
QUICK_WATCH = ScannerTiming(silence_restart=0.01, watch_interval=0.001)
NO_SILENCE = ScannerTiming(silence_restart=None)


# --- the scanner owner ---------------------------------------------------------------------


async def test_scanner_restarts_after_bleak_and_dbus_faults_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adverts = [Advertisement(MAC, -60, {UUID_BTHOME_V2: bytes.fromhex("4002ca09")}, {}, "x")]
    got: list[Advertisement] = []
    holder: dict[str, BleScanner] = {}
    faults: list[BaseException] = [
        BleakError("org.bluez.Error.InProgress"),
        DBusError("org.freedesktop.DBus.Error.ServiceUnknown", "bluez went away"),
        BleakBluetoothNotAvailableError(
            "adapter is powered off", BleakBluetoothNotAvailableReason.POWERED_OFF
        ),
        BleakError("adapter 'hci1' not found"),
    ]

    def factory(callback: DetectionCallback) -> Scanner:
        if faults:
            return FailingScanner([faults.pop(0)])
        return ReplayScanner(callback, adverts, rate=1000.0, loop=True)

    owner = BleScanner(factory, timing=NO_SILENCE)
    holder["s"] = owner
    owner.subscribe(got.append)
    sup = supervise(owner, backoff=FAST)
    with caplog.at_level(logging.DEBUG, logger="drivers.ble.scanner"):
        task = asyncio.create_task(sup.run())
        await wait_for(lambda: len(got) >= 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sup.status.failures == 4
    assert sup.status.restarts == 4
    assert got[0] == Advertisement(MAC, -60, adverts[0].service_data, {}, "x", got[0].time)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "InProgress" in warnings[0].getMessage()
    repeats = [r.getMessage() for r in caplog.records if "failed again" in r.getMessage()]
    assert any("bluez went away" in m for m in repeats)
    assert any("powered off" in m for m in repeats)
    assert any("adapter missing" in m for m in repeats)


async def test_silent_adapter_is_restarted() -> None:
    scanners: list[ReplayScanner] = []
    one = [Advertisement(MAC, -60, {UUID_BTHOME_V2: b"\x40"}, {}, None)]

    def factory(callback: DetectionCallback) -> Scanner:
        # the first scanner delivers one advert, then the adapter goes silent
        scanners.append(ReplayScanner(callback, one if not scanners else [], rate=1000.0))
        return scanners[-1]

    owner = BleScanner(factory, timing=QUICK_WATCH)
    sup = supervise(owner, backoff=FAST)
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: sup.status.restarts >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "no adverts" in sup.status.reason or sup.status.state is State.STOPPED
    assert all(not s.running for s in scanners)  # every scanner was stopped


async def test_an_empty_neighbourhood_is_not_a_fault() -> None:
    owner = BleScanner(lambda cb: ReplayScanner(cb, [], rate=1.0), timing=QUICK_WATCH)
    sup = supervise(owner)
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: sup.status.state is State.RUNNING)
    for _ in range(50):
        await asyncio.sleep(0.002)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sup.status.failures == 0


async def test_a_failing_subscriber_does_not_stop_scanning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adverts = [Advertisement(MAC, -60, {UUID_BTHOME_V2: b"\x40"}, {}, None)]
    owner = BleScanner(
        lambda cb: ReplayScanner(cb, adverts, rate=1000.0, loop=True), timing=NO_SILENCE
    )
    good: list[Advertisement] = []

    def bad(_: Advertisement) -> None:
        raise RuntimeError("subscriber bug")

    owner.subscribe(bad)
    owner.subscribe(good.append)
    sup = supervise(owner)
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: len(good) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert owner.callback_errors >= 3
    assert sup.status.failures == 0
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1  # logged once, not per advert


# --- the bleak backend ---------------------------------------------------------------------


class StubBleakScanner:
    """Stands in for bleak.BleakScanner at the transport boundary."""

    made: ClassVar[list[StubBleakScanner]] = []
    passive_error: BaseException | None = None

    def __init__(self, detection_callback: Any, scanning_mode: str, bluez: dict[str, Any]) -> None:
        self.callback = detection_callback
        self.mode = scanning_mode
        self.bluez = bluez
        self.started = self.stopped = False
        StubBleakScanner.made.append(self)

    async def start(self) -> None:
        if self.mode == "passive" and StubBleakScanner.passive_error is not None:
            raise StubBleakScanner.passive_error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def stub_bleak() -> type[StubBleakScanner]:
    StubBleakScanner.made = []
    StubBleakScanner.passive_error = None
    return StubBleakScanner


async def test_passive_scanning_uses_or_patterns_on_the_chosen_adapter(
    stub_bleak: type[StubBleakScanner],
) -> None:
    backend = BleakBackend(
        lambda d, a: None, adapter="hci1", scanner_cls=stub_bleak, platform="linux"
    )
    await backend.start()
    [made] = stub_bleak.made
    assert (made.mode, made.bluez["adapter"], backend.mode) == ("passive", "hci1", "passive")
    patterns = {bytes(p.content_of_pattern) for p in made.bluez["or_patterns"]}
    assert bytes.fromhex("95fe") in patterns and bytes.fromhex("d2fc") in patterns
    await backend.stop()
    assert made.stopped


async def test_passive_not_supported_falls_back_to_active_with_a_logged_reason(
    stub_bleak: type[StubBleakScanner], caplog: pytest.LogCaptureFixture
) -> None:
    stub_bleak.passive_error = DBusError("org.bluez.Error.NotSupported", "No monitor support")
    backend = BleakBackend(lambda d, a: None, scanner_cls=stub_bleak, platform="linux")
    with caplog.at_level(logging.WARNING):
        await backend.start()
    assert [s.mode for s in stub_bleak.made] == ["passive", "active"]
    assert stub_bleak.made[1].started and stub_bleak.made[1].bluez == {"adapter": "hci0"}
    assert backend.mode == "active"
    assert "NotSupported" in backend.fallback_reason
    assert "falling back to active" in caplog.text


async def test_the_fallback_is_remembered_across_restarts(
    stub_bleak: type[StubBleakScanner],
) -> None:
    stub_bleak.passive_error = BleakError("org.bluez.Error.NotSupported")
    factory = scanner_mod.bleak_factory(
        "hci0", passive=True, scanner_cls=stub_bleak, platform="linux"
    )
    first = factory(lambda d, a: None)
    await first.start()
    second = factory(lambda d, a: None)
    await second.start()
    assert isinstance(first, BleakBackend) and isinstance(second, BleakBackend)
    assert [s.mode for s in stub_bleak.made] == ["passive", "active", "active"]
    assert [b.mode for b in (first, second)] == ["active", "active"]


async def test_a_busy_adapter_in_passive_mode_is_a_fault_not_a_fallback(
    stub_bleak: type[StubBleakScanner],
) -> None:
    stub_bleak.passive_error = BleakError("org.bluez.Error.InProgress")
    backend = BleakBackend(lambda d, a: None, scanner_cls=stub_bleak, platform="linux")
    with pytest.raises(BleakError):
        await backend.start()
    assert backend.mode == "passive"


def test_passive_is_not_tried_off_linux(stub_bleak: type[StubBleakScanner]) -> None:
    backend = BleakBackend(lambda d, a: None, scanner_cls=stub_bleak, platform="darwin")
    assert backend.mode == "active"
    assert "needs BlueZ" in backend.fallback_reason


# --- the adapter -----------------------------------------------------------------------------


def fleet_driver(
    fleet: SyntheticFleet, keys: dict[str, str] | None = None, unavailable_after_s: float = 900.0
) -> BleDriver:
    keyset = fleet.keys if keys is None else keys
    return BleDriver(
        fleet.factory(),
        {m: parse_key(k) for m, k in keyset.items()},
        unavailable_after_s=unavailable_after_s,
    )


def test_fleet_devices_appear_with_models_status_and_sleepy_flag() -> None:
    fleet = SyntheticFleet(7, repeats=3)
    driver = fleet_driver(fleet)
    sink = RecordingSink()
    driver._sink = sink  # what run() does before scanning
    for adv in fleet.adverts(7 * 6):
        driver.handle(adv)
    first = {u.id: u for u in reversed(sink.devices)}
    names = {s.mac: s.name for s in fleet.sensors}
    expected_models = {
        "mibeacon": ("LYWSD03MMC", False, "Xiaomi"),
        "mibeacon_encrypted": ("LYWSD03MMC", False, "Xiaomi"),
        "pvvx": ("pvvx", False, None),
        "bthome": ("BTHome", False, None),
        "bthome_encrypted": ("BTHome", False, None),
        "door": ("MCCGQ02HL", True, "Xiaomi"),
        "button": ("BTHome", True, None),
    }
    for s in fleet.sensors:
        model, sleepy, manufacturer = expected_models[s.kind]
        update = first[device_id(s.mac)]
        assert update == DeviceUpdate(
            id=device_id(s.mac),
            transport=Transport.BLE,
            model=model,
            name=names[s.mac],
            manufacturer=manufacturer,
            rssi=update.rssi,
            status=DeviceStatus.OK,
            sleepy=sleepy,
            attrs={"encrypted": "true" if s.key is not None else "false"},
        )
    health = driver.health()
    assert health.counters["adverts"] == 42
    assert health.counters["decoded"] == 14  # 2 frames per device, each sent 3 times
    assert health.counters["duplicates_dropped"] == 28
    assert health.counters["decrypt_failures"] == 0
    assert health.health is Health.OK
    metrics = {(d, m) for d, m, _ in sink.readings}
    door = device_id(fleet.sensors[5].mac)
    assert (door, "opening") in metrics
    temp_sensors = {d for d, m, _ in sink.readings if m == "temperature"}
    assert len(temp_sensors) == 5
    button = device_id(fleet.sensors[6].mac)
    assert {(d, e) for d, e, _, _ in sink.events} == {(button, "button")}


def test_missing_and_wrong_keys_show_as_device_status(caplog: pytest.LogCaptureFixture) -> None:
    fleet = SyntheticFleet(7)
    wrong = dict.fromkeys(fleet.keys, "00" * 16)
    driver = fleet_driver(fleet, keys={})
    sink = RecordingSink()
    driver._sink = sink
    for adv in fleet.adverts(14):
        driver.handle(adv)
    status = {u.id: u.status for u in sink.devices}
    for s in fleet.sensors:
        want = DeviceStatus.NEEDS_KEY if s.key is not None else DeviceStatus.OK
        assert status[device_id(s.mac)] == want, s.kind
    assert driver.health().counters["needs_key"] == 6
    driver = fleet_driver(fleet, keys=wrong)
    sink = RecordingSink()
    driver._sink = sink
    with caplog.at_level(logging.WARNING, logger="gateway.adapters.ble"):
        for adv in fleet.adverts(7 * 9):
            driver.handle(adv)
    bad = {u.id for u in sink.devices if u.status is DeviceStatus.KEY_INVALID}
    assert bad == {device_id(m) for m in wrong}
    assert driver.health().counters["decrypt_failures"] == 27
    assert len([r for r in caplog.records if "does not decrypt" in r.getMessage()]) == 3
    assert "00000000" not in caplog.text
    for s in fleet.sensors:  # no readings from devices we cannot decrypt
        if s.key is not None:
            assert all(d != device_id(s.mac) for d, _, _ in sink.readings)


def _bthome_enc(counter: int, temp: float) -> Advertisement:
    key = parse_key(demo_key(0))
    frame = bthome.encode_v2(bthome.encode_number(0x02, temp), mac=MAC, key=key, counter=counter)
    return Advertisement(MAC, -60, {UUID_BTHOME_V2: frame}, {}, None)


def test_replayed_bthome_counters_are_rejected() -> None:
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {MAC: parse_key(demo_key(0))})
    sink = RecordingSink()
    driver._sink = sink
    for counter, temp in ((10, 20.0), (11, 21.0), (11, 25.0), (5, 19.0), (12, 22.0), (12, 22.0)):
        driver.handle(_bthome_enc(counter, temp))
    dev = device_id(MAC)
    assert sink.readings == [
        (dev, "temperature", 20.0),
        (dev, "temperature", 21.0),
        (dev, "temperature", 22.0),
    ]
    counters = driver.health().counters
    assert (counters["replays_rejected"], counters["duplicates_dropped"]) == (2, 1)


def _mi_v5_temp(counter: int, temp: float) -> Advertisement:
    """An encrypted MiBeacon v5 temperature frame of ``MAC`` with the 4-byte ``counter``."""
    frame = mibeacon_encode.encode(
        product_id=0x055B,  # LYWSD03MMC
        frame_counter=counter & 0xFF,
        ext_counter=counter >> 8,
        mac=MAC,
        objects=[(0x1004, round(temp * 10).to_bytes(2, "little", signed=True))],
        key=parse_key(demo_key(0)),
    )
    return Advertisement(MAC, -60, {UUID_MIBEACON: frame}, {}, None)


def test_replayed_mibeacon_v5_frames_are_rejected() -> None:
    """The 4-byte counter of an encrypted MiBeacon v4/v5 frame is in its nonce (Xiaomi's
    SDK numbers frames with a sequence number kept in flash, so it only grows, reboots
    included): a recorded frame sent again, once the de-duplication no longer holds it,
    is refused like a BTHome one. A counter restarting low (pvvx's firmware counts from 0
    after a reboot) is the reboot rule's case."""
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {MAC: parse_key(demo_key(0))})
    sink = RecordingSink()
    driver._sink = sink
    start = 0x1_2345
    sent = [_mi_v5_temp(start + i, 20.0 + i / 10) for i in range(12)]
    for adv in sent:  # the later frames push the first ones out of the dedup memory
        driver.handle(adv)
    driver.handle(sent[0])  # recorded in the air and sent again: the counter went back
    driver.handle(sent[3])
    driver.handle(_mi_v5_temp(3, 21.5))  # the sensor restarted its count (a reboot)
    driver.handle(_mi_v5_temp(4, 21.6))
    temps = [v for d, m, v in sink.readings if d == device_id(MAC) and m == "temperature"]
    assert temps == [round(20.0 + i / 10, 1) for i in range(12)] + [21.5, 21.6]
    counters = driver.health().counters
    assert counters["replays_rejected"] == 2
    assert counters["duplicates_dropped"] == 0  # not caught as repeats: as replays
    assert counters["decoded"] == 14


def test_unknown_product_ids_show_in_diagnostics() -> None:
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    sink = RecordingSink()
    driver._sink = sink
    frame = mibeacon_encode.encode(
        product_id=0xBEEF, frame_counter=1, mac=MAC, objects=[(0x1004, b"\xe2\x00")]
    )
    driver.handle(Advertisement(MAC, -60, {UUID_MIBEACON: frame}, {}, None))
    health = driver.health()
    assert health.counters["unsupported"] == 1
    assert health.info["unknown_products"] == f"0xBEEF from {MAC}: {frame.hex()}"
    assert sink.devices == []


def test_an_unknown_product_id_is_logged_once_not_per_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each new frame of a neighbour's unsupported device (a new counter: a new payload) was
    logged again; now one INFO line per product id, for at most WARNED_MAX of them."""
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    driver._sink = RecordingSink()
    pids = [0xBEEF] * 20 + [0xBEEE] + [0xC000 + i for i in range(WARNED_MAX + 50)]
    assert not any(product(pid) for pid in pids)
    with caplog.at_level(logging.INFO, logger="gateway.adapters.ble"):
        for counter, pid in enumerate(pids):
            frame = _unknown(pid, counter)
            driver.handle(Advertisement(MAC, -60, {UUID_MIBEACON: frame}, {}, None))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == WARNED_MAX
    assert lines[:2] == [
        f"BLE: unknown MiBeacon product id 0x{pid:04X} from {MAC}: {frame.hex()}"
        for pid, frame in [(0xBEEF, _unknown(0xBEEF, 0)), (0xBEEE, _unknown(0xBEEE, 20))]
    ]
    assert driver.health().counters["unsupported"] == len(pids)


def _unknown(pid: int, counter: int) -> bytes:
    """A plain MiBeacon frame of ``MAC`` with the product id ``pid`` (22.6 °C)."""
    return mibeacon_encode.encode(
        product_id=pid, frame_counter=counter, mac=MAC, objects=[(0x1004, b"\xe2\x00")]
    )


def test_availability_honours_the_sleepy_flag() -> None:
    fleet = SyntheticFleet(7, repeats=1)
    driver = fleet_driver(fleet, unavailable_after_s=100.0)
    sink = RecordingSink()
    driver._sink = sink
    for adv in fleet.adverts(7):
        driver.handle(Advertisement(adv.address, adv.rssi, adv.service_data, {}, None, 1.0))
    assert driver.check_availability(50.0) == []
    gone = set(driver.check_availability(1000.0))
    sleepy = {device_id(s.mac) for s in fleet.sensors if s.kind in ("door", "button")}
    assert gone == {device_id(s.mac) for s in fleet.sensors} - sleepy
    unavailable = [u for u in sink.devices if u.status is DeviceStatus.UNAVAILABLE]
    assert unavailable == [
        DeviceUpdate(id=d, transport=Transport.BLE, status=DeviceStatus.UNAVAILABLE)
        for d in sorted(gone, key=list(driver._known).index)
    ]
    assert driver.check_availability(2000.0) == []  # reported once


def test_a_repeat_keeps_a_device_available_and_it_comes_back_in_place() -> None:
    fleet = SyntheticFleet(1, repeats=3)  # a plain MiBeacon thermometer, not sleepy
    driver = fleet_driver(fleet, unavailable_after_s=100.0)
    sink = RecordingSink()
    driver._sink = sink
    first, repeat, _, second = fleet.adverts(4)
    dev = device_id(first.address)

    def at(adv: Advertisement, t: float) -> Advertisement:
        return Advertisement(adv.address, adv.rssi, adv.service_data, {}, None, t)

    driver.handle(at(first, 1.0))
    known = driver._known[dev]
    driver.handle(at(repeat, 50.0))  # dropped as a repeat (60 s window), a sign of life
    assert driver.health().counters["duplicates_dropped"] == 1
    assert driver.check_availability(120.0) == []
    assert driver.check_availability(151.0) == [dev]
    driver.handle(at(second, 200.0))  # a new frame: back, in the same state object
    assert driver._known[dev] is known and known.status is DeviceStatus.OK
    assert [u.status for u in sink.devices] == [
        DeviceStatus.OK,
        DeviceStatus.UNAVAILABLE,
        DeviceStatus.OK,
    ]
    assert driver.check_availability(250.0) == []


def test_advertisers_of_nothing_we_decode_leave_no_state() -> None:
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    driver._sink = RecordingSink()
    phone = Advertisement("4C:11:22:33:44:55", -70, {}, {0x004C: b"\x10\x05\x01"}, None, 1.0)
    other = Advertisement("4C:11:22:33:44:66", -70, {"0000feaa" + UUID_BTHOME_V2[8:]: b"x"})
    driver.handle(phone)
    driver.handle(other)
    assert driver.health().counters["adverts"] == 2
    assert driver._ids == {} and len(driver._dedup) == 0


async def test_command_is_unsupported() -> None:
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    result = await driver.command("ble-a4c1388d18b2", Command("on"))
    assert result.status is CommandStatus.UNSUPPORTED
    assert driver.owns("ble-a4c1388d18b2") and not driver.owns("gpio-a")


async def test_run_from_the_fleet_scanner_into_a_sink() -> None:
    fleet = SyntheticFleet(7, rate=200.0)
    driver = fleet_driver(fleet)
    sink = RecordingSink()
    task = asyncio.create_task(driver.run(sink))
    await wait_for(
        lambda: (
            len({u.id for u in sink.devices}) == 7
            and len(sink.events) >= 1
            and driver.health().counters["duplicates_dropped"] > 0
        )  # sensors repeat each frame
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    health = driver.health()
    assert health.health is Health.OK
    assert health.counters["decrypt_failures"] == health.counters["malformed"] == 0
    assert health.counters["duplicates_dropped"] > 0


@pytest.mark.parametrize("ticks", [0, 1, 2, 3, 5, 8])
async def test_cancel_right_after_start_stops_scanner_and_fleet(ticks: int) -> None:
    """A stop (SIGTERM, reload) right after start must not leave the scanner running."""
    driver = fleet_driver(SyntheticFleet(3, rate=200.0))
    task = asyncio.create_task(driver.run(RecordingSink()))
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    # the autouse leak fixture fails the test if ble-fleet or ble-scanner is still running


async def test_run_degraded_while_the_adapter_fails() -> None:
    def factory(callback: DetectionCallback) -> Scanner:
        return FailingScanner([BleakError("org.bluez.Error.InProgress")])

    driver = BleDriver(factory, {})
    sink = RecordingSink()
    # run() is one session; the supervisor around it (the service's, here a bare one)
    # restarts it, and the driver stays degraded across the retries
    sup = Supervisor("ble", lambda: driver.run(sink), backoff=FAST)
    task = asyncio.create_task(sup.run())
    await wait_for(lambda: driver.health().health is Health.DEGRADED)
    await wait_for(lambda: sup.status.restarts >= 2)
    # the supervisor counts a restart before the next session's task has run; the driver
    # counts a session when it starts, so wait for that too (not a race on which runs first)
    await wait_for(lambda: driver.health().counters["scanner_restarts"] >= 2)
    health = driver.health()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "InProgress" in health.reason
    assert health.counters["scanner_restarts"] >= 2


async def test_replayed_public_vectors_through_the_driver() -> None:
    lines = [json.loads(line) for line in VECTORS.read_text().splitlines()]
    adverts = []
    keys = {}
    for v in lines:
        if v.get("uuid") and v.get("mac") and v.get("service_data_hex"):
            sd = {normalize_uuid(v["uuid"]): bytes.fromhex(v["service_data_hex"])}
            adverts.append(Advertisement(v["mac"], -70, sd, {}, v.get("local_name")))
            if v.get("bindkey_hex") and "NEGATIVE" not in v.get("note", ""):
                keys[v["mac"].upper()] = parse_key(v["bindkey_hex"])
    replay: list[ReplayScanner] = []

    def factory(callback: DetectionCallback) -> Scanner:
        replay.append(ReplayScanner(callback, adverts, rate=5000.0))
        return replay[-1]

    driver = BleDriver(factory, keys)
    sink = RecordingSink()
    task = asyncio.create_task(driver.run(sink))
    await wait_for(lambda: bool(replay) and replay[0].done.is_set())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    c = driver.health().counters
    assert c["adverts"] == len(adverts)
    # every advert is accounted for exactly once
    accounted = (
        c["decoded"]
        + c["duplicates_dropped"]
        + c["replays_rejected"]
        + c["downgrade_rejected"]
        + c["decrypt_failures"]
        + c["malformed"]
        + c["unsupported"]
        + c["needs_key"]
    )
    assert accounted == len(adverts)
    assert c["malformed"] == 0


def test_create_from_config_and_from_a_transport() -> None:
    assert create(AdapterContext(Config(), Path("/tmp"))) is None
    demo = create(demo_context(Config(), Path("/tmp"), DemoOptions(ble_devices=3)))
    assert isinstance(demo, BleDriver)
    assert demo.health().info["keys_configured"] == "1"  # one encrypted kind among three
    assert demo.health().info["adapter"] == "simulated"
    assert create(demo_context(Config(), Path("/tmp"), DemoOptions(ble_devices=0))) is None
    # a transport of a test: its scanner, whatever ble.enabled says, plus its keys
    replay: list[ReplayScanner] = []

    def factory(callback: DetectionCallback) -> Scanner:
        replay.append(ReplayScanner(callback, []))
        return replay[-1]

    transport = BleTransport(factory, keys={MAC: demo_key(0)}, info={"adapter": "replay"})
    driver = create(AdapterContext(Config(), Path("/tmp"), transports=Transports(ble=transport)))
    assert isinstance(driver, BleDriver)
    assert driver.health().info == {"adapter": "replay", "keys_configured": "1", "devices": "0"}
    cfg = Config(
        ble=BleSection(enabled=True, keys={MAC: Secret("231d39c1d7cc1ab1aee224cd096db932")})
    )
    real = create(AdapterContext(cfg, Path("/tmp")))
    assert isinstance(real, BleDriver)
    assert real.health().info == {
        "adapter": "hci0",
        "passive": "true",
        "keys_configured": "1",
        "devices": "0",
    }


def test_load_keys_reports_problems_by_mac_without_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.key"
    good.write_text("b853075158487ca39a5b5ea9\n")
    missing = tmp_path / "missing.key"
    section = BleSection(
        keys={MAC: Secret("231d39c1d7cc1ab1aee224cd096db9"), "11:22:33:44:55:66": Secret("x")},
        key_files={"aa:bb:cc:dd:ee:ff": good, "AA:BB:CC:DD:EE:00": missing},
    )
    keys, problems = load_keys(section)
    assert keys == {"AA:BB:CC:DD:EE:FF": parse_key("b853075158487ca39a5b5ea9")}
    assert len(problems) == 3
    text = " ".join(problems)
    assert "231d39" not in text and "30 hex characters" in text
    assert "missing.key" in text


def test_fleet_scanner_sends_what_its_adverts_are_bleak_shaped() -> None:
    """The fleet scanner's direct path gives the values of ``bleak_shaped(next_advert())``."""
    direct, shaped = SyntheticFleet(20, repeats=3, seed=3), SyntheticFleet(20, repeats=3, seed=3)
    for i in range(20 * 3 * 12):
        got = direct.sensors[i % 20].next_detection(3)
        assert got == bleak_shaped(shaped.sensors[i % 20].next_advert(3))
    rng, peer = random.Random(5), random.Random(5)
    sensor = VirtualSensor(0, "mibeacon", MAC, None, rng, "n")
    assert [sensor._rssi() for _ in range(500)] == [-50 - peer.randrange(40) for _ in range(500)]


def test_fake_advertisement_data_defaults_are_fresh() -> None:
    a, b = FakeAdvertisementData("x", -60), FakeAdvertisementData("x", -60)
    assert a == b and a.service_data == {} and a.service_data is not b.service_data
    assert a.service_uuids == [] and a.tx_power is None


def test_bleak_shaped_adverts_convert_to_advertisements() -> None:
    data = FakeAdvertisementData("ATC", -61, {UUID_BTHOME_V2: b"\x40"}, {0x0499: b"\x01"})
    adv = scanner_mod.to_advertisement(FakeDevice("a4:c1:38:8d:18:b2"), data, 5.0)
    assert adv == Advertisement(MAC, -61, {UUID_BTHOME_V2: b"\x40"}, {0x0499: b"\x01"}, "ATC", 5.0)


def test_devices_without_a_local_name_get_product_name_and_mac_suffix() -> None:
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    sink = RecordingSink()
    driver._sink = sink
    frame = mibeacon_encode.encode(
        product_id=0x055B, frame_counter=1, mac=MAC, objects=[(0x1004, b"\xe2\x00")], version=3
    )
    driver.handle(Advertisement(MAC, -60, {UUID_MIBEACON: frame}, {}, None))
    assert sink.devices == [
        DeviceUpdate(
            id="ble-a4c1388d18b2",
            transport=Transport.BLE,
            model="LYWSD03MMC",
            name="Temperature/Humidity Sensor 18B2",
            manufacturer="Xiaomi",
            rssi=-60,
            status=DeviceStatus.OK,
            sleepy=False,
            attrs={"encrypted": "false"},
        )
    ]
    assert sink.readings == [("ble-a4c1388d18b2", "temperature", 22.6)]


def test_macos_addresses_decode_plain_frames_and_count_encrypted_ones() -> None:
    """CoreBluetooth gives a UUID, not the MAC: plain frames still work; encrypted ones,
    whose nonce needs the MAC, are counted as malformed (no device, no exception)."""
    uuid_address = "F3A0E2B4-1111-2222-3333-444455556666"
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    sink = RecordingSink()
    driver._sink = sink
    plain = bthome.encode_v2(bthome.encode_number(0x02, 21.5), mac=MAC)
    enc = bthome.encode_v2(
        bthome.encode_number(0x02, 22.5), mac=MAC, key=parse_key(demo_key(0)), counter=1
    )
    driver.handle(Advertisement(uuid_address, -60, {UUID_BTHOME_V2: plain}, {}, None))
    driver.handle(Advertisement(uuid_address, -60, {UUID_BTHOME_V2: enc}, {}, None))
    dev = "ble-f3a0e2b4-1111-2222-3333-444455556666"
    assert sink.devices == [
        DeviceUpdate(
            id=dev,
            transport=Transport.BLE,
            model="BTHome",
            name="BTHome sensor 6666",
            rssi=-60,
            status=DeviceStatus.OK,
            sleepy=False,
            attrs={"encrypted": "false"},
        )
    ]
    assert sink.readings == [(dev, "temperature", 21.5)]
    counters = driver.health().counters
    assert (counters["decoded"], counters["malformed"]) == (1, 1)


def _plain_bthome(address: str, packet: int, t: float) -> Advertisement:
    """A plain BTHome v2 advert (packet id, 21.5 °C) from ``address`` at time ``t``."""
    objects = bthome.encode_number(0x00, packet & 0xFF) + bthome.encode_number(0x02, 21.5)
    frame = bthome.encode_v2(objects, mac=MAC)
    return Advertisement(address, -60, {UUID_BTHOME_V2: frame}, {}, None, t)


def _random_mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02X}" for _ in range(6))


def test_a_flood_of_random_addresses_keeps_device_state_bounded() -> None:
    """Anyone can advertise decodable frames from ever new addresses: the adapter keeps the
    state of at most KNOWN_MAX devices (the least recently heard are forgotten and counted),
    and a sensor that keeps sending stays known, announced once."""
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {})
    sink = RecordingSink()
    driver._sink = sink
    rng = random.Random(18)
    flood = 2 * KNOWN_MAX + 100
    for i in range(flood):
        t = 1.0 + i / 100
        if i % 100 == 0:  # a real sensor, every second
            driver.handle(_plain_bthome(MAC, i // 100, t))
        driver.handle(_plain_bthome(_random_mac(rng), 1, t))
        assert len(driver._known) <= KNOWN_MAX
    dev = device_id(MAC)
    assert dev in driver._known and driver._known[dev].status is DeviceStatus.OK
    assert [u.id for u in sink.devices if u.model].count(dev) == 1  # (and RSSI updates)
    counters = driver.health().counters
    assert counters["devices_forgotten"] == flood + 1 - len(driver._known)
    assert counters["decoded"] == flood + flood // 100 + 1
    assert driver.health().info["devices"] == str(len(driver._known))


def test_a_forgotten_device_that_speaks_again_is_known_again() -> None:
    """A device forgotten under a flood is announced again at its next frame and watched for
    availability again, also when its address's cached state outlived it."""
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), {}, unavailable_after_s=100.0)
    sink = RecordingSink()
    driver._sink = sink
    rng = random.Random(19)
    for _ in range(KNOWN_MAX + 1):  # (the address cache is cleared once on the way)
        driver.handle(_plain_bthome(_random_mac(rng), 1, 1000.0))
    dev = device_id(MAC)
    driver.handle(_plain_bthome(MAC, 1, 0.5))  # heard long ago, twice: its address
    driver.handle(_plain_bthome(MAC, 2, 0.6))  # caches its state
    while dev in driver._known:
        driver.handle(_plain_bthome(_random_mac(rng), 1, 1000.0))
    driver.handle(_plain_bthome(MAC, 3, 2000.0))
    assert driver._known[dev].last_seen == 2000.0
    announced = [u for u in sink.devices if u.id == dev and u.model]
    assert len(announced) == 2 and all(u.status is DeviceStatus.OK for u in announced)
    assert dev in driver.check_availability(2101.0)


def _mibeacon_enc(counter: int, objects: list[tuple[int, bytes]], t: float) -> Advertisement:
    """An encrypted MiBeacon v5 advert of ``MAC`` (LYWSD03MMC, key demo_key(0)) at ``t``."""
    frame = mibeacon_encode.encode(
        product_id=0x055B,
        frame_counter=counter,
        mac=MAC,
        objects=objects,
        key=parse_key(demo_key(0)),
    )
    return Advertisement(MAC, -60, {UUID_MIBEACON: frame}, {}, None, t)


def _forged(adv: Advertisement) -> Advertisement:
    """``adv`` with one bit of its ciphertext changed: it no longer authenticates."""
    frame = bytearray(adv.service_data[UUID_MIBEACON])
    frame[11] ^= 0x01
    return Advertisement(adv.address, adv.rssi, {UUID_MIBEACON: bytes(frame)}, {}, None, adv.time)


@pytest.mark.parametrize("unavailable_first", [True, False])
def test_a_frame_that_does_not_decrypt_does_not_mark_a_working_key_invalid(
    caplog: pytest.LogCaptureFixture, unavailable_first: bool
) -> None:
    """Anyone can send a frame that names a keyed sensor and does not authenticate. Once
    the key has decrypted this sensor's frames, such a frame is counted, not reported: the
    device stays ok (no key_invalid update, no 'key does not decrypt' warning) while frames
    that decrypt keep coming. A sensor whose key really changed (nothing decrypts any
    more) shows key_invalid once its frames have failed for ble.unavailable_after_s."""
    driver = BleDriver(
        lambda cb: ReplayScanner(cb, []),
        {MAC: parse_key(demo_key(0))},
        unavailable_after_s=100.0,
    )
    sink = RecordingSink()
    driver._sink = sink
    dev = device_id(MAC)
    genuine = [_mibeacon_enc(n, [(0x1004, bytes([200 + n, 0]))], float(n)) for n in range(1, 5)]
    with caplog.at_level(logging.WARNING, logger="gateway.adapters.ble"):
        driver.handle(genuine[0])
        driver.handle(_forged(genuine[1]))
        driver.handle(genuine[1])
        driver.handle(_forged(genuine[2]))
        driver.handle(_forged(genuine[3]))
        driver.handle(genuine[3])
    assert [u.status for u in sink.devices if u.id == dev] == [DeviceStatus.OK]
    assert [v for d, m, v in sink.readings if m == "temperature"] == [20.1, 20.2, 20.4]
    assert driver.health().counters["decrypt_failures"] == 3
    assert "does not decrypt" not in caplog.text
    # the key changed on the sensor (re-paired): only failures from now on
    if unavailable_first:  # silent for the gateway, so unavailable (a sleepy one is not)
        assert driver.check_availability(105.0) == [dev]
    rekeyed = _forged(_mibeacon_enc(9, [(0x1004, b"\x10\x01")], 110.0))
    with caplog.at_level(logging.WARNING, logger="gateway.adapters.ble"):
        driver.handle(rekeyed)
    assert sink.devices[-1].status is DeviceStatus.KEY_INVALID
    assert "does not decrypt" in caplog.text
