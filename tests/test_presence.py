"""BLE presence: the ah function against the Core spec's sample data, identities, tracking."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.presence import (
    Person,
    PresenceChange,
    PresenceConfigError,
    PresenceTimings,
    PresenceTracker,
    ah,
    identity,
    make_rpa,
    matches,
    parse_eddystone_uid,
    parse_ibeacon,
    resolves,
)
from drivers.ble.types import Advertisement, uuid16

# Bluetooth Core Specification v5.x, Vol 3 Part H, Appendix D.7 "ah random address hash
# function": IRK ec0234a357c8ad05341010a60a397d9b, prand 708194 -> hash 0dfbaa (all MSB first).
SPEC_IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
SPEC_PRAND = bytes.fromhex("708194")
SPEC_HASH = bytes.fromhex("0dfbaa")


def test_ah_spec_sample_data() -> None:
    assert ah(SPEC_IRK, SPEC_PRAND) == SPEC_HASH


def test_spec_rpa_resolves_from_irk() -> None:
    # the RPA built from the sample: prand || hash (0x70: top bits 01, a resolvable address)
    address = "70:81:94:0D:FB:AA"
    adv = Advertisement(address=address, rssi=-60)
    assert matches(identity("irk", SPEC_IRK.hex()), adv)
    assert not matches(identity("irk", "00" * 16), adv)
    # one bit off in the hash: not this phone
    assert not matches(identity("irk", SPEC_IRK.hex()), Advertisement("70:81:94:0D:FB:AB"))
    # a static random address (top bits 11) is never taken for an RPA
    assert not resolves(SPEC_IRK, bytes.fromhex("F08194") + SPEC_HASH)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=3, max_size=3))
def test_generated_rpa_resolves_only_with_its_irk(irk: bytes, prand: bytes) -> None:
    rpa = bytes.fromhex(make_rpa(irk, prand).replace(":", ""))
    assert rpa[0] >> 6 == 0b01
    assert resolves(irk, rpa)


def test_ibeacon_and_eddystone_parsing() -> None:
    u = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
    frame = b"\x02\x15" + u.bytes + (1).to_bytes(2, "big") + (258).to_bytes(2, "big") + b"\xc5"
    assert parse_ibeacon({0x004C: frame}) == parse_ibeacon({0x004C: frame})
    beacon = parse_ibeacon({0x004C: frame})
    assert beacon is not None
    assert (beacon.uuid, beacon.major, beacon.minor, beacon.tx_power) == (str(u), 1, 258, -59)
    assert parse_ibeacon({0x004C: frame[:10]}) is None
    assert parse_ibeacon({0x004C: b"\x10\x05" + frame[2:]}) is None
    adv = Advertisement("11:22:33:44:55:66", manufacturer_data={0x004C: frame})
    assert matches(identity("ibeacon", str(u).upper()), adv)
    assert matches(identity("ibeacon", f"{u}/1/258"), adv)
    assert not matches(identity("ibeacon", f"{u}/1/259"), adv)
    uid = bytes([0x00, 0xEE]) + bytes(range(10)) + bytes(range(10, 16)) + b"\x00\x00"
    parsed = parse_eddystone_uid({uuid16(0xFEAA): uid})
    assert parsed is not None
    assert (parsed.namespace, parsed.instance, parsed.tx_power) == (
        bytes(range(10)).hex(),
        bytes(range(10, 16)).hex(),
        -18,
    )
    eadv = Advertisement("11:22:33:44:55:66", service_data={uuid16(0xFEAA): uid})
    assert matches(identity("eddystone", bytes(range(10)).hex()), eadv)
    assert not matches(identity("eddystone", "ff" * 10), eadv)
    # a URL frame (type 0x10) is not a UID
    assert parse_eddystone_uid({uuid16(0xFEAA): b"\x10" + uid[1:]}) is None


@given(st.binary(max_size=40))
def test_random_beacon_bytes_never_raise(data: bytes) -> None:
    parse_ibeacon({0x004C: data})
    parse_eddystone_uid({uuid16(0xFEAA): data})


@pytest.mark.parametrize(
    ("kind", "value"),
    [("irk", "12"), ("ibeacon", "nope"), ("ibeacon", "e2c56db5-dffb-48d2-b060-d0f5a71096e0/70000"),
     ("eddystone", "zz"), ("address", "not-a-mac"), ("other", "x")],
)  # fmt: skip
def test_bad_identities_are_config_errors(kind: str, value: str) -> None:
    with pytest.raises(PresenceConfigError):
        identity(kind, value)


def test_tracker_home_away_with_hysteresis_and_rotating_address() -> None:
    irk = bytes(range(16))
    people = [Person("alice", (identity("irk", irk.hex()),))]
    tracker = PresenceTracker(
        people, PresenceTimings(home_rssi=-80, hysteresis_db=10, away_after_s=60, rssi_alpha=0.5)
    )
    a1 = make_rpa(irk, b"\x01\x02\x03")
    a2 = make_rpa(irk, b"\x09\x08\x07")  # rotated
    # a weak signal does not make her home
    assert tracker.observe(Advertisement(a1, rssi=-95), 0.0) == []
    # stronger: the average reaches -80
    changes = tracker.observe(Advertisement(a1, rssi=-60), 1.0)
    assert changes == [PresenceChange("alice", True, -77.5, 1.0, "irk")]
    # a rotated address, weaker but inside the hysteresis band, keeps her home
    assert tracker.observe(Advertisement(a2, rssi=-86), 50.0) == []
    assert tracker.tick(100.0) == []  # 50 s since the last sighting strong enough to stay
    assert tracker.tick(110.0) == [PresenceChange("alice", False, None, 110.0, "")]
    assert not tracker.is_home("alice")
    # an unknown phone's RPA never matches
    other = make_rpa(bytes(16), b"\x01\x02\x03")
    assert tracker.observe(Advertisement(other, rssi=-40), 120.0) == []


# A peer's vectors: Bluetooth-Devices/bluetooth-data-tools (the library Home Assistant's
# Private BLE Device integration resolves RPAs with), tests/test_privacy.py at commit
# 6735b3b673ffcee784c6727b8eb423ffdbe356a6: addresses that do and do not resolve.
PEER_VECTORS = [
    ("00" * 16, "40:01:02:0a:c4:a6", True),
    ("00" * 16, "40:02:03:d2:74:ce", True),
    ("00" * 16, "40:00:00:d2:74:ce", False),
    ("00" * 16, "00:01:ff:a0:3a:76", False),  # not an RPA (top bits 00)
    (SPEC_IRK.hex(), "40:01:02:b2:12:da", True),
    (SPEC_IRK.hex(), "55:aa:33:1d:27:08", True),
    (SPEC_IRK.hex(), "7f:ff:fe:7e:0e:08", True),
    (SPEC_IRK.hex(), "40:00:00:45:0c:63", True),
    (SPEC_IRK.hex(), "40:01:02:00:00:00", False),  # wrong hash
    ("11" * 16, "40:01:02:b2:12:da", False),  # wrong IRK
    (SPEC_IRK.hex(), "c0:01:02:b2:12:da", False),  # static random, not resolvable
]


@pytest.mark.parametrize(("irk", "address", "resolvable"), PEER_VECTORS)
def test_peer_rpa_vectors(irk: str, address: str, resolvable: bool) -> None:
    adv = Advertisement(address=address.upper(), rssi=-50)
    assert matches(identity("irk", irk), adv) is resolvable


def test_an_irk_never_shows_in_a_repr() -> None:
    ident = identity("irk", SPEC_IRK.hex())
    person = Person("alice", (ident,))
    for text in (repr(ident), repr(person), str(person)):
        assert SPEC_IRK.hex() not in text.lower()


def test_unknown_at_first_then_away_or_home() -> None:
    irk = bytes(range(16))
    people = [Person("alice", (identity("irk", irk.hex()),)), Person("bob", ())]
    tracker = PresenceTracker(people, PresenceTimings(home_rssi=-80, away_after_s=60))
    assert tracker.tick(0.0) == []
    # alice's phone is there at start: she is home, never reported away first
    assert tracker.observe(Advertisement(make_rpa(irk, b"\x05\x06\x07"), rssi=-50), 1.0) == [
        PresenceChange("alice", True, -50.0, 1.0, "irk")
    ]
    # bob was not seen since the start: away once away_after_s passed
    assert tracker.tick(59.0) == []
    assert tracker.tick(60.0) == [PresenceChange("bob", False, None, 60.0, "")]
