"""Downgrade protection: a plaintext frame never impersonates a MAC that encrypts.

Real frames are from bthome-ble's tests (``test_bindkey_correct``,
``test_encryption_downgrade_fails``, ``test_downgrade_detected_flag_v1``/``_v2``,
@d55bd3ae) and xiaomi-ble's MS1BB(MI) vectors (tests/vectors/ble.jsonl); the spoofed
plaintext MiBeacon frames are synthetic (built with our encoder, labelled so below).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from drivers.ble import atc, mibeacon_encode
from drivers.ble.downgrade import DowngradeGuard
from drivers.ble.keys import BindKey, parse_key
from drivers.ble.types import (
    UUID_ATC,
    UUID_BTHOME_V1,
    UUID_BTHOME_V1_ENC,
    UUID_BTHOME_V2,
    UUID_MIBEACON,
    Advertisement,
    normalize_uuid,
)
from gateway.adapters.ble import WARNED_MAX, BleDriver, device_id
from hw_mocks.ble import ReplayScanner
from tests.helpers import RecordingSink

VECTORS = Path(__file__).parent / "vectors" / "ble.jsonl"

BT_MAC = "54:48:E6:8F:80:A5"
BT_KEY = "231d39c1d7cc1ab1aee224cd096db932"
#: Encrypted: bthome-ble test_bindkey_correct (v2 and v1); plain: its
#: test_downgrade_detected_flag_v2 / _v1 and test_encryption_downgrade_fails.
V2_ENCRYPTED = bytes.fromhex("41a47266c95f730011223378237214")
V2_PLAIN = bytes.fromhex("4004138a01")  # pressure 1008.83 hPa
V1_ENCRYPTED = bytes.fromhex("fba435e4d3c312fb0011223357d90a99")
V1_PLAIN = bytes.fromhex("02000c0404138a01")  # packet id 12, pressure 1008.83 hPa


def _adv(mac: str, uuid: str, data: bytes) -> Advertisement:
    return Advertisement(mac, -60, {uuid: data}, {}, None)


def _driver(keys: dict[str, BindKey]) -> tuple[BleDriver, RecordingSink]:
    driver = BleDriver(lambda cb: ReplayScanner(cb, []), keys)
    sink = RecordingSink()
    driver._sink = sink
    return driver, sink


def _readings(sink: RecordingSink, mac: str) -> list[tuple[str, object]]:
    dev = device_id(mac)
    return [(m, v) for d, m, v in sink.readings if d == dev]


@pytest.mark.parametrize(
    ("uuid_enc", "encrypted", "uuid_plain", "plain"),
    [
        (UUID_BTHOME_V2, V2_ENCRYPTED, UUID_BTHOME_V2, V2_PLAIN),
        (UUID_BTHOME_V1_ENC, V1_ENCRYPTED, UUID_BTHOME_V1, V1_PLAIN),
        # one family: a keyed v2 device is not impersonated by a plain v1 frame either
        (UUID_BTHOME_V2, V2_ENCRYPTED, UUID_BTHOME_V1, V1_PLAIN),
    ],
)
def test_plain_bthome_from_a_keyed_mac_is_rejected_and_counted(
    uuid_enc: str, encrypted: bytes, uuid_plain: str, plain: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    driver, sink = _driver({BT_MAC: parse_key(BT_KEY)})
    with caplog.at_level(logging.WARNING, logger="gateway.adapters.ble"):
        driver.handle(_adv(BT_MAC, uuid_enc, encrypted))
        before = list(sink.readings)
        assert before, "the encrypted frame decodes"
        driver.handle(_adv(BT_MAC, uuid_plain, plain))
        driver.handle(_adv(BT_MAC, uuid_plain, plain))  # a repeat is a duplicate, not counted
    assert sink.readings == before
    health = driver.health()
    assert health.counters["downgrade_rejected"] == 1
    assert health.info["downgrade_last"] == f"{BT_MAC} (bthome)"
    warnings = [r.getMessage() for r in caplog.records if "plaintext" in r.getMessage()]
    assert len(warnings) == 1 and BT_MAC in warnings[0]
    assert BT_KEY not in caplog.text


def test_a_configured_key_protects_before_any_encrypted_frame() -> None:
    """bthome-ble test_encryption_downgrade_fails: key set, first frame plain -> refused."""
    mac = "A4:C1:38:8D:18:B2"
    driver, sink = _driver({mac: parse_key("814aac74c4f17b6c1581e1ab87816b99")})
    driver.handle(_adv(mac, UUID_BTHOME_V2, V2_PLAIN))
    assert sink.readings == [] and sink.devices == []
    assert driver.health().counters["downgrade_rejected"] == 1


def test_an_encrypted_frame_without_a_key_teaches_that_the_mac_encrypts() -> None:
    driver, sink = _driver({})
    driver.handle(_adv(BT_MAC, UUID_BTHOME_V2, V2_ENCRYPTED))  # needs_key
    driver.handle(_adv(BT_MAC, UUID_BTHOME_V2, V2_PLAIN))
    assert _readings(sink, BT_MAC) == []
    # another MAC, and another family from the same MAC, are not affected
    other = "A4:C1:38:00:00:01"
    driver.handle(_adv(other, UUID_BTHOME_V2, V2_PLAIN))
    assert _readings(sink, other) == [("pressure", 1008.83)]
    pvvx = atc.encode_pvvx(
        mac=BT_MAC, temperature=21.5, humidity=40.0, battery=90, mv=3000, counter=1
    )
    driver.handle(_adv(BT_MAC, UUID_ATC, pvvx))
    assert ("temperature", 21.5) in _readings(sink, BT_MAC)
    counters = driver.health().counters
    assert (counters["downgrade_rejected"], counters["needs_key"]) == (1, 1)


def test_plain_frames_of_unkeyed_devices_are_untouched() -> None:
    driver, sink = _driver({})
    driver.handle(_adv(BT_MAC, UUID_BTHOME_V2, V2_PLAIN))
    driver.handle(_adv(BT_MAC, UUID_BTHOME_V1, V1_PLAIN))
    assert _readings(sink, BT_MAC) == [("pressure", 1008.83)] * 2
    assert driver.health().counters["downgrade_rejected"] == 0


def _vector(test_name: str) -> dict[str, str]:
    for line in VECTORS.read_text().splitlines():
        v: dict[str, str] = json.loads(line)
        if v["source"].endswith(":" + test_name):
            return v
    raise LookupError(test_name)


MS1BB_MAC = "A4:C1:38:66:E5:67"
MS1BB_PID = 0x1889


def test_mibeacon_keyed_device_keeps_its_real_plain_frames_but_refuses_spoofed_readings() -> None:
    """What the MS1BB(MI) door sensor really sends (xiaomi-ble's vectors): encrypted
    0x4804/0x4A12/0x4A13 frames and a *plain* 0x4A1A "door left open" frame. The spoofed
    frames are synthetic: plain 0x4804 "open", plain 0x1004 temperature."""
    enc = _vector("test_Xiaomi_MS1BB_MI_obj4804")
    plain_4a1a = _vector("test_Xiaomi_MS1BB_MI_obj4a1a")
    driver, sink = _driver({MS1BB_MAC: parse_key(enc["bindkey_hex"])})
    driver.handle(_adv(MS1BB_MAC, UUID_MIBEACON, bytes.fromhex(enc["service_data_hex"])))
    driver.handle(_adv(MS1BB_MAC, UUID_MIBEACON, bytes.fromhex(plain_4a1a["service_data_hex"])))
    real = _readings(sink, MS1BB_MAC)
    assert ("door_left_open", True) in real
    for counter, objects in (
        (40, [(0x4804, b"\x01")]),  # synthetic spoof: "open"
        (41, [(0x1004, (215).to_bytes(2, "little"))]),  # synthetic spoof: 21.5 °C
        (42, [(0x4A1A, b"\x01"), (0x4804, b"\x02")]),  # allowed object + a spoofed one
    ):
        spoof = mibeacon_encode.encode(
            product_id=MS1BB_PID, frame_counter=counter, mac=MS1BB_MAC, objects=objects
        )
        driver.handle(_adv(MS1BB_MAC, UUID_MIBEACON, spoof))
    # a frame without objects carries no reading and passes (device still seen)
    bare = mibeacon_encode.encode(product_id=MS1BB_PID, frame_counter=43, mac=MS1BB_MAC, objects=[])
    driver.handle(_adv(MS1BB_MAC, UUID_MIBEACON, bare))
    assert _readings(sink, MS1BB_MAC) == real
    counters = driver.health().counters
    assert (counters["downgrade_rejected"], counters["decoded"]) == (3, 3)


def test_mibeacon_learned_from_an_undecryptable_frame() -> None:
    enc = _vector("test_Xiaomi_MS1BB_MI_obj4804")
    driver, sink = _driver({})
    driver.handle(_adv(MS1BB_MAC, UUID_MIBEACON, bytes.fromhex(enc["service_data_hex"])))
    spoof = mibeacon_encode.encode(
        product_id=MS1BB_PID, frame_counter=7, mac=MS1BB_MAC, objects=[(0x4804, b"\x01")]
    )
    driver.handle(_adv(MS1BB_MAC, UUID_MIBEACON, spoof))
    assert _readings(sink, MS1BB_MAC) == []
    assert driver.health().counters["downgrade_rejected"] == 1


def test_pvvx_plain_formats_from_a_keyed_mac_are_rejected() -> None:
    enc = _vector("TestATC.test_atc_custom_encrypted")
    mac = enc["mac"]
    driver, sink = _driver({mac: parse_key(enc["bindkey_hex"])})
    driver.handle(_adv(mac, normalize_uuid(enc["uuid"]), bytes.fromhex(enc["service_data_hex"])))
    real = _readings(sink, mac)
    assert ("temperature", 23.45) in real
    for spoof in (
        atc.encode_pvvx(mac=mac, temperature=30.0, humidity=10.0, battery=5, mv=2000,
                        counter=9),
        atc.encode_atc1441(mac=mac, temperature=30.0, humidity=10, battery=5, mv=2000,
                           counter=9),
    ):  # fmt: skip
        driver.handle(_adv(mac, UUID_ATC, spoof))
    assert _readings(sink, mac) == real
    assert driver.health().counters["downgrade_rejected"] == 2


def test_guard_alone_learns_families_and_forgets_the_oldest() -> None:
    from drivers.ble import downgrade
    from drivers.ble.decoder import decode_payload
    from drivers.ble.types import Decoded

    guard = DowngradeGuard(max_learned=2)
    enc = decode_payload(UUID_BTHOME_V2, V2_ENCRYPTED, BT_MAC, parse_key(BT_KEY))
    plain = decode_payload(UUID_BTHOME_V2, V2_PLAIN, BT_MAC, None)
    assert isinstance(enc, Decoded) and isinstance(plain, Decoded)
    assert guard.accept(plain, keyed=False)
    assert guard.accept(enc, keyed=False)
    assert guard.learned(BT_MAC) == {downgrade.Family.BTHOME}
    assert not guard.accept(plain, keyed=False)
    guard.learn("00:00:00:00:00:01", enc.format)
    guard.learn("00:00:00:00:00:02", enc.format)
    assert guard.learned(BT_MAC) == frozenset()  # forgotten: bounded memory
    assert not guard.accept(plain, keyed=True)  # a configured key always protects
    assert guard.rejected == 2


def test_a_flood_of_spoofed_downgrades_warns_a_bounded_number_of_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two adverts from a new address (one encrypted, one plain) make a downgrade: a flood
    of them is rejected and counted, but warned about for at most WARNED_MAX MACs (the
    memory of who was warned about, and the WARNING lines, stay bounded)."""
    driver, sink = _driver({})
    flood = WARNED_MAX + 100
    with caplog.at_level(logging.WARNING, logger="gateway.adapters.ble"):
        for i in range(flood):
            mac = f"C0:FF:EE:{i >> 16:02X}:{i >> 8 & 0xFF:02X}:{i & 0xFF:02X}"
            driver.handle(_adv(mac, UUID_BTHOME_V2, V2_ENCRYPTED))  # needs_key: it encrypts
            driver.handle(_adv(mac, UUID_BTHOME_V2, V2_PLAIN))
    assert sink.readings == []
    assert driver.health().counters["downgrade_rejected"] == flood
    warnings = [r for r in caplog.records if "plaintext" in r.getMessage()]
    assert len(warnings) == WARNED_MAX
    assert len(driver._warned_downgrade) == WARNED_MAX
