"""BLE codecs: encrypted round trips with our own encryption, table walks, keys, dedup,
replay protection and Hypothesis properties (untrusted bytes only ever raise ParseError)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import atc, bthome, mibeacon, mibeacon_encode, xiaomi_other
from drivers.ble.decoder import FORMATS, decode_advertisement, decode_payload
from drivers.ble.dedup import RESET_BELOW, RESET_FROM, Deduplicator, ReplayGuard
from drivers.ble.errors import KeyFormatError, MalformedError
from drivers.ble.jsonio import advertisement_from_json, outcome_to_json
from drivers.ble.keys import BindKey, parse_key, parse_keys
from drivers.ble.mibeacon_objects import DISPATCH
from drivers.ble.products import PRODUCTS, product
from drivers.ble.types import (
    UUID_ATC,
    UUID_BTHOME_V1,
    UUID_BTHOME_V1_ENC,
    UUID_BTHOME_V2,
    UUID_MIBEACON,
    Advertisement,
    BleEvent,
    Decoded,
    Failed,
    FailReason,
    Format,
    FrameKind,
    KeyStatus,
    Value,
    normalize_mac,
)
from drivers.errors import ParseError

MAC = "A4:C1:38:8D:18:B2"
KEY16 = parse_key("231d39c1d7cc1ab1aee224cd096db932")
KEY12 = parse_key("b853075158487ca39a5b5ea9")
OTHER16 = parse_key("00112233445566778899aabbccddeeff")
VECTORS = Path(__file__).parent / "vectors"


def _plain_frame(*, product_id: int = 0x055B, extra_flags: int = 0) -> bytes:
    """A plain MiBeacon v5 frame of ``MAC`` with one temperature object (22.6 °C)."""
    return mibeacon_encode.encode(
        product_id=product_id,
        frame_counter=1,
        mac=MAC,
        objects=[(0x1004, b"\xe2\x00")],
        extra_flags=extra_flags,
    )


def _mi_failure(frame: bytes, mac: str, key: BindKey | None) -> Failed:
    """The outcome of a MiBeacon payload that must not decode."""
    out = decode_payload(UUID_MIBEACON, frame, mac, key)
    assert isinstance(out, Failed), out
    return out


# --- keys ------------------------------------------------------------------------------------


def test_key_lengths_and_errors_never_echo_the_key() -> None:
    assert parse_key("0x231D39C1D7CC1AB1AEE224CD096DB932") == KEY16
    assert not KEY16.is_legacy and KEY12.is_legacy
    assert KEY12.aes_key() == bytes.fromhex("b853075158488d3d3c977ca39a5b5ea9")
    secret = "231d39c1d7cc1ab1aee224cd096db9"  # 30 chars
    with pytest.raises(KeyFormatError) as err:
        parse_key(secret)
    assert secret not in str(err.value)
    assert "30 hex characters" in str(err.value)
    with pytest.raises(KeyFormatError, match="hexadecimal"):
        parse_key("zz" * 16)
    assert "231d" not in repr(KEY16) and "231d" not in str(KEY16)
    assert repr(KEY16) == "BindKey(<32 hex chars>)"


def test_parse_keys_normalizes_macs() -> None:
    keys = parse_keys({"a4c1388d18b2": "231d39c1d7cc1ab1aee224cd096db932"})
    assert keys == {MAC: KEY16}
    with pytest.raises(KeyFormatError, match="not a MAC"):
        parse_keys({"nope": "231d39c1d7cc1ab1aee224cd096db932"})


def test_24_char_token_where_a_bindkey_is_needed_gets_a_helpful_error() -> None:
    frame = mibeacon_encode.encode(
        product_id=0x055B, frame_counter=1, mac=MAC, objects=[(0x1004, b"\xe2\x00")], key=KEY16
    )
    outcome = decode_payload(UUID_MIBEACON, frame, MAC, KEY12)
    assert isinstance(outcome, Failed)
    assert outcome.reason is FailReason.KEY_INVALID
    assert "32-character bindkey" in outcome.detail and "token" in outcome.detail
    outcome = decode_payload(
        UUID_BTHOME_V2, bthome.encode_v2(b"\x01\x10", mac=MAC, key=KEY16), MAC, KEY12
    )
    assert isinstance(outcome, Failed) and "32-character" in outcome.detail


# --- round trips with our own encryption -----------------------------------------------------


@pytest.mark.parametrize("version", [4, 5])
def test_mibeacon_v45_round_trip(version: int) -> None:
    objects = [(0x100D, bytes.fromhex("1001ea01")), (0x100A, b"\x5d")]
    frame = mibeacon_encode.encode(
        product_id=0x055B,
        frame_counter=7,
        mac=MAC,
        objects=objects,
        key=KEY16,
        ext_counter=0x010203,
        version=version,
    )
    out = decode_payload(UUID_MIBEACON, frame, MAC, KEY16)
    assert out == Decoded(
        mac=MAC,
        kind=FrameKind(
            format=Format.MIBEACON,
            model="LYWSD03MMC",
            name=PRODUCTS[0x055B].name,
            encrypted=True,
            product_id=0x055B,
            manufacturer="Xiaomi",
            sleepy=False,
            version=version,
            uuid=UUID_MIBEACON,
        ),
        values={"temperature": 27.2, "humidity": 49.0, "battery": 93.0},
        counter=7 | 0x010203 << 8,
        # the 4-byte counter is in the nonce: authenticated, so the replay guard uses it
        replay_counter=7 | 0x010203 << 8,
        payload=frame,
        info={},
    )
    assert out.key_status is KeyStatus.OK
    wrong = _mi_failure(frame, MAC, OTHER16)
    assert wrong.reason is FailReason.KEY_INVALID
    assert wrong.model == "LYWSD03MMC"
    assert _mi_failure(frame, MAC, None).reason is FailReason.NO_KEY


def _legacy_dimmer_frame() -> bytes:
    """A legacy (v3, 12-byte key) YLKG07YL dimmer frame: one 0x1001 "single, 1 press"."""
    return mibeacon_encode.encode(
        product_id=0x03B6,
        frame_counter=0xD2,
        mac="F8:24:41:C5:98:8B",
        objects=[(0x1001, bytes.fromhex("000103"))],
        key=KEY12,
        version=3,
    )


def test_mibeacon_legacy_round_trip_and_wrong_key() -> None:
    frame = _legacy_dimmer_frame()
    out = decode_payload(UUID_MIBEACON, frame, "F8:24:41:C5:98:8B", KEY12)
    assert isinstance(out, Decoded)
    assert out.events == (BleEvent("dimmer", "single", None, (("presses", 1),)),)
    assert out.key_status is KeyStatus.OK
    wrong = _mi_failure(frame, "F8:24:41:C5:98:8B", parse_key("11" * 12))
    assert wrong.reason is FailReason.KEY_INVALID


def test_mibeacon_legacy_vector_matches_our_encryption() -> None:
    """Our legacy encoder reproduces the captured YLKG07YL frame byte for byte (but the
    trailing byte, whose meaning is unknown)."""
    captured = bytes.fromhex("5830b603d28b98c54124f8c3491476757e00000099")
    ours = _legacy_dimmer_frame()
    assert ours[:-1] == captured[:-1]


def test_bthome_v2_encrypted_round_trip_matches_the_spec_example() -> None:
    objects = bthome.encode_number(0x02, 25.06) + bthome.encode_number(0x03, 50.55)
    frame = bthome.encode_v2(objects, mac="54:48:E6:8F:80:A5", key=KEY16, counter=0x00112233)
    assert frame.hex() == "41e445f3c9962b332211006c7c4519"  # bthome.io worked example
    out = decode_payload(UUID_BTHOME_V2, frame, "54:48:E6:8F:80:A5", KEY16)
    assert isinstance(out, Decoded)
    assert (out.values, out.replay_counter) == (
        {"temperature": 25.06, "humidity": 50.55},
        0x00112233,
    )


def test_bthome_v1_encrypted_round_trip() -> None:
    plain = bytes.fromhex("2302ca090303bf13")
    frame = bthome.encode_v1_encrypted(plain, mac=MAC, key=KEY16, counter=5)
    out = bthome.decode_v1(frame, MAC, KEY16, encrypted=True)
    assert (out.values, out.replay_counter, out.key_status) == (
        {"temperature": 25.06, "humidity": 50.55},
        5,
        KeyStatus.OK,
    )


def test_pvvx_encrypted_round_trip_with_the_decrypted_payload_vector() -> None:
    vec = next(
        json.loads(line)
        for line in (VECTORS / "ble.jsonl").read_text().splitlines()
        if "NOT an advert" in line
    )
    temp, hum, batt = (vec["expected"][k] for k in ("temperature", "humidity", "battery"))
    frame = atc.encode_pvvx_encrypted(MAC, KEY16, temp, hum, batt, counter=9)
    ct = frame[1:-4]
    assert ct != bytes.fromhex(vec["service_data_hex"])  # really encrypted
    out = atc.decode(frame, MAC, KEY16)
    assert out.values == {"temperature": temp, "humidity": hum, "battery": float(batt)}
    assert (out.format, out.counter, out.encrypted) == (Format.PVVX, 9, True)


def test_atc_encrypted_and_plain_round_trips() -> None:
    frame = atc.encode_atc_encrypted(MAC, KEY16, 21.5, 40.5, 77, counter=3)
    out = atc.decode(frame, MAC, KEY16)
    assert (out.format, out.values) == (
        Format.ATC1441,
        {"temperature": 21.5, "humidity": 40.5, "battery": 77.0},
    )
    plain = atc.decode(atc.encode_atc1441(MAC, -4.5, 62, 81, 2939, 0x62), MAC, None)
    assert plain.values == {
        "temperature": -4.5,
        "humidity": 62.0,
        "battery": 81.0,
        "voltage": 2.939,
    }
    pv = atc.decode(atc.encode_pvvx(MAC, 21.12, 50.53, 3143, 100, 204, 0x0F), MAC, None)
    assert pv.values == {
        "temperature": 21.12,
        "humidity": 50.53,
        "voltage": 3.143,
        "battery": 100.0,
    }
    assert pv.info == {"flags": "0x0F"}


# --- tables ----------------------------------------------------------------------------------


def _sample(length: int) -> bytes:
    return bytes((0x01 + i) for i in range(length))


@pytest.mark.parametrize("oid", sorted(mibeacon.OBJECTS), ids=lambda o: f"0x{o:04X}")
def test_every_mibeacon_object_decodes_at_every_accepted_length(oid: int) -> None:
    obj = mibeacon.OBJECTS[oid]
    for length in sorted(obj.lengths)[:12]:
        for model in ("LYWSD03MMC", "K9B-3BTN", "XMWS01XS", "YLKG07YL/YLKG08YL", "DSL-C08"):
            pid = next(p.product_id for p in PRODUCTS.values() if p.model == model)
            frame = mibeacon_encode.encode(
                product_id=pid, frame_counter=1, mac=MAC, objects=[(oid, _sample(length))]
            )
            out = decode_payload(UUID_MIBEACON, frame, MAC, None)
            assert isinstance(out, Decoded), (oid, length, out)
            assert "skipped_objects" not in out.info
            for value in out.values.values():
                assert isinstance(value, float | int | bool | str)


def test_mibeacon_object_with_wrong_length_is_skipped_and_noted() -> None:
    frame = mibeacon_encode.encode(
        product_id=0x055B, frame_counter=1, mac=MAC, objects=[(0x1004, b"\x01"), (0x100A, b"\x50")]
    )
    out = decode_payload(UUID_MIBEACON, frame, MAC, None)
    assert isinstance(out, Decoded)
    assert out.values == {"battery": 80.0}
    assert out.info["skipped_objects"] == "0x1004/len1:01"


@pytest.mark.parametrize("oid", sorted(bthome.OBJECTS), ids=lambda o: f"0x{o:02X}")
def test_every_bthome_object_decodes_in_v2_and_v1(oid: int) -> None:
    obj = bthome.OBJECTS[oid]
    data = _sample(obj.length)
    if obj.kind in (bthome.Kind.TEXT, bthome.Kind.RAW):
        data = b"\x02AB"
    v2 = bthome.decode_v2(b"\x40" + bytes([oid]) + data, MAC, None)
    assert "stopped_at" not in v2.info
    fmt = 1 if obj.signed else 0
    v1 = bthome.decode_v1(
        bytes([fmt << 5 | (1 + len(data)), oid]) + data, MAC, None, encrypted=False
    )
    if obj.kind not in (bthome.Kind.TEXT, bthome.Kind.RAW):
        assert (v1.values, v1.events, v1.counter) == (v2.values, v2.events, v2.counter)
    produced = bool(v2.values or v2.events or v2.counter is not None or v2.info)
    assert produced or obj.kind is bthome.Kind.COMMAND, oid


def test_bthome_stops_at_the_first_unknown_id_and_numbers_repeats() -> None:
    out = bthome.decode_v2(
        bytes.fromhex("40 02ca09 02cf09 3a01 3a02 ff 0164".replace(" ", "")), MAC, None
    )
    assert out.values == {"temperature_1": 25.06, "temperature_2": 25.11}
    assert out.events == (BleEvent("button", "single", 1), BleEvent("button", "double", 2))
    assert out.info == {"stopped_at": "unknown object 0xFF at 10"}


def test_product_table_is_complete_and_consistent() -> None:
    rows = (VECTORS / "xiaomi_product_ids.tsv").read_text().splitlines()[1:]
    assert len(PRODUCTS) == len(rows) == 95
    for row in rows:
        pid, model, name, manufacturer, sleepy = row.split("\t")
        p = product(int(pid, 16))
        assert p is not None
        assert (p.model, p.name, p.manufacturer, p.sleepy) == (
            model,
            name,
            manufacturer,
            sleepy == "True",
        )


def test_unknown_product_id_is_unsupported_with_the_id() -> None:
    frame = _plain_frame(product_id=0xBEEF)
    out = _mi_failure(frame, MAC, None)
    assert (out.reason, out.product_id, out.payload) == (FailReason.UNSUPPORTED, 0xBEEF, frame)


def test_mibeacon_mac_mismatch_and_mesh_are_rejected() -> None:
    frame = _plain_frame()
    assert _mi_failure(frame, "11:22:33:44:55:66", None).reason is FailReason.MALFORMED
    mesh = _plain_frame(extra_flags=0x80)
    assert _mi_failure(mesh, MAC, None).reason is FailReason.UNSUPPORTED


def test_capability_and_io_capability_fields_are_skipped() -> None:
    frame = mibeacon_encode.encode(
        product_id=0x0098,
        frame_counter=1,
        mac=MAC,
        version=2,
        objects=[(0x1004, b"\xc4\x00")],
        capability=0x2D,
    )
    # capability 0x2D has bit 5: one I/O capability byte follows
    frame = frame[:12] + b"\x03" + frame[12:]
    out = decode_payload(UUID_MIBEACON, frame, MAC, None)
    assert isinstance(out, Decoded)
    assert out.values == {"temperature": 19.6}
    assert out.info == {"capability": "0x2D"}


# --- de-duplication and replay ---------------------------------------------------------------


def _bthome(counter: int | None, packet: int | None, payload: bytes | None = None) -> Decoded:
    """A decoded BTHome frame; its payload carries its counters as on the air."""
    if payload is None:
        payload = bytes([0x41, 0x00, (packet or 0) & 0xFF]) + (counter or 0).to_bytes(4, "little")
    kind = FrameKind(Format.BTHOME_V2, "BTHome", "", True, version=2, uuid=UUID_BTHOME_V2)
    return Decoded(MAC, kind, {}, counter=packet, replay_counter=counter, payload=payload)


def test_dedup_drops_repeats_within_the_window_and_counts_them() -> None:
    d = Deduplicator(window_s=60.0)
    a = _bthome(None, 7)
    assert not d.is_duplicate(a, 0.0)
    assert d.is_duplicate(a, 1.0)
    assert d.is_duplicate(a, 59.0)
    assert not d.is_duplicate(_bthome(None, 8), 59.5)
    assert not d.is_duplicate(a, 120.0)  # window passed: a new frame with a wrapped counter
    assert d.dropped == 2


def test_dedup_without_counter_uses_a_short_window() -> None:
    d = Deduplicator(window_s=60.0)
    press = _bthome(None, None, b"\x3a\x01")
    assert not d.is_duplicate(press, 0.0)
    assert d.is_duplicate(press, 0.5)
    assert not d.is_duplicate(press, 10.0)  # a second press, not a repeat
    assert d.dropped == 1


def test_dedup_memory_is_bounded() -> None:
    d = Deduplicator(window_s=60.0, max_entries=10)
    for i in range(100):
        d.is_duplicate(_bthome(None, i), 0.0)
    assert len(d) == 10


def test_dedup_keeps_the_last_frames_of_each_sender_and_interleaved_formats() -> None:
    d = Deduplicator(window_s=60.0, per_sender=3)
    other = _bthome(None, 1)._replace(mac="11:22:33:44:55:66")
    assert not d.is_duplicate(other, 0.0)
    frames = [_bthome(None, i) for i in range(4)]
    pvvx = frames[0]._replace(kind=dataclasses.replace(frames[0].kind, uuid=UUID_ATC))
    assert not d.is_duplicate(frames[0], 0.0)
    assert not d.is_duplicate(pvvx, 0.0)  # the same bytes in another format: not a repeat
    assert d.is_duplicate(frames[0], 0.5) and d.is_duplicate(pvvx, 0.5)  # interleaved
    assert not d.is_duplicate(frames[1], 1.0)
    assert d.is_duplicate(frames[0], 1.5)  # 3 frames kept: frames[0], pvvx, frames[1]
    assert not d.is_duplicate(frames[2], 2.0)  # the sender's oldest, frames[0], goes
    assert not d.is_duplicate(frames[0], 2.5)  # superseded by 3 newer ones: decoded again
    assert (len(d), d.dropped) == (4, 3)  # 3 of this sender, 1 of the other
    assert d.is_duplicate(other, 3.0)  # the other sender's frame is untouched


def test_dedup_total_bound_forgets_the_least_recent_sender_first() -> None:
    d = Deduplicator(window_s=60.0, max_entries=3)
    a = [_bthome(None, i)._replace(mac="11:22:33:44:55:66") for i in range(2)]
    b = [_bthome(None, i) for i in range(2)]
    for frame in (a[0], a[1], b[0], b[1]):  # 4 frames: a's oldest goes
        assert not d.is_duplicate(frame, 0.0)
    assert len(d) == 3
    assert [d.is_duplicate(f, 1.0) for f in (a[1], b[0], b[1])] == [True, True, True]
    assert not d.is_duplicate(a[0], 1.0)  # forgotten, so decoded again: a is now the most
    assert d.is_duplicate(a[1], 1.0)  # recent sender, so b's oldest went
    assert not d.is_duplicate(b[0], 1.0)


def test_dedup_expire_forgets_frames_whose_window_passed() -> None:
    d = Deduplicator(window_s=60.0)
    press = _bthome(None, None, b"\x3a\x01")  # no counter: a 2 s window
    frame = _bthome(None, 7)
    other = frame._replace(mac="11:22:33:44:55:66")
    for f in (press, frame, other):
        d.is_duplicate(f, 0.0)
    assert d.expire(1.0) == 0 and len(d) == 3
    assert d.expire(30.0) == 1 and len(d) == 2  # the press
    assert d.is_duplicate(frame, 30.0) and d.is_duplicate(other, 30.0)
    assert d.expire(61.0) == 2 and len(d) == 0
    assert not d.is_duplicate(frame, 61.0)


def test_replay_guard_rejects_counters_going_backwards() -> None:
    g = ReplayGuard()
    assert g.accept(_bthome(5000, None))
    assert g.accept(_bthome(5001, None))
    assert not g.accept(_bthome(5001, None))
    assert not g.accept(_bthome(4000, None))
    assert g.accept(_bthome(3, None))  # device reboot: counting restarts near zero
    assert g.accept(_bthome(None, None))  # not encrypted: not subject to replay checks
    assert (g.rejected, g.resets) == (2, 1)


# --- advertiser addresses that are not MACs (macOS UUIDs, typos) ------------------------------

#: What the advertiser address can be besides a MAC: macOS CoreBluetooth gives a UUID, and a
#: hand-written JSON line may hold anything (int(x, 16) accepted "_", "0x" and "+").
NOT_MACS = [
    "F3A0E2B4-1111-2222-3333-444455556666",
    "A4:C1:_3:81:A2:B3",
    "0x:A4:C1:38:8D:18",
    "+4C1381A2B3C",
    "AA:BB",
    "A4:C1:38:8D:18:BZ",
]


@pytest.mark.parametrize("address", NOT_MACS)
def test_plain_frames_decode_from_an_address_that_is_not_a_mac(address: str) -> None:
    v2 = bthome.encode_v2(bthome.encode_number(0x02, 25.06), mac=MAC)
    v1 = bytes.fromhex("2302ca09")
    mi = mibeacon_encode.encode(
        product_id=0x055B,
        frame_counter=7,
        mac=MAC,
        objects=[(0x1004, b"\xe2\x00")],
        include_mac=False,
    )
    pvvx = atc.encode_pvvx(MAC, 21.12, 50.53, 3143, 100, 204, 0x0F)
    t: dict[str, Value] = {"temperature": 25.06}
    up = address.upper()  # as the decoders give addresses
    assert decode_advertisement(Advertisement(address, -60, {UUID_BTHOME_V2: v2}), {}) == [
        Decoded(up, bthome._kind(Format.BTHOME_V2, False, False), t, (), None, None, v2, {})
    ]
    assert bthome.decode_v1(v1, address, None, encrypted=False) == Decoded(
        up, bthome._kind(Format.BTHOME_V1, False, False), t, (), None, None, v1, {}
    )
    kind = mibeacon._kind(0x055B, 5, False)
    assert kind is not None
    assert mibeacon.decode(mi, address, None) == Decoded(
        up, kind, {"temperature": 22.6}, (), 7, None, mi, {}
    )
    values: dict[str, Value] = {
        "temperature": 21.12,
        "humidity": 50.53,
        "voltage": 3.143,
        "battery": 100.0,
    }
    assert atc.decode(pvvx, address, None) == Decoded(
        address,  # 0x181A keeps the address as given
        atc._kind(Format.PVVX, atc.MODEL_PVVX, False),
        values,
        (),
        204,
        None,
        pvvx,
        {"flags": "0x0F"},
    )


@pytest.mark.parametrize("address", NOT_MACS)
def test_encrypted_frames_from_an_address_that_is_not_a_mac_fail_as_malformed(
    address: str,
) -> None:
    objects = bthome.encode_number(0x02, 25.06)
    cases = [
        (UUID_BTHOME_V2, bthome.encode_v2(objects, mac=MAC, key=KEY16, counter=5), "BTHome"),
        (
            UUID_BTHOME_V1_ENC,
            bthome.encode_v1_encrypted(objects, mac=MAC, key=KEY16, counter=5),
            "BTHome",
        ),
        (UUID_ATC, atc.encode_pvvx_encrypted(MAC, KEY16, 21.5, 40.5, 77, counter=3), "pvvx"),
        (UUID_ATC, atc.encode_atc_encrypted(MAC, KEY16, 21.5, 40.5, 77, counter=3), "ATC1441"),
        (
            UUID_MIBEACON,
            mibeacon_encode.encode(
                product_id=0x055B,
                frame_counter=7,
                mac=MAC,
                objects=[(0x1004, b"\xe2\x00")],
                key=KEY16,
                include_mac=False,
            ),
            "LYWSD03MMC",
        ),
    ]
    for uuid, frame, model in cases:
        out = decode_payload(uuid, frame, address, KEY16)
        assert isinstance(out, Failed), uuid
        assert (out.mac, out.reason, out.model, out.encrypted) == (
            address,
            FailReason.MALFORMED,
            model,
            True,
        )
        assert out.detail.endswith(f"the advertiser address {address!r} is not a MAC"), out.detail


@pytest.mark.parametrize("text", ["A4C1_381A2B3", "0xA4C1381A2B", "+A4C1381A2B3", "A4C1381A2BﬀA"])
def test_mac_text_with_non_hex_digits_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a MAC address"):
        normalize_mac(text)
    with pytest.raises(ParseError, match="is not a MAC address"):
        advertisement_from_json({"mac": text, "service_data": {"181c": "2302ca09"}})
    assert normalize_mac(" a4-c1-38-8d-18-b2 ") == MAC


def test_replay_guard_reboot_boundary_mirrors_bthome_ble() -> None:
    """The exact reboot rule: a counter below RESET_BELOW (100) is taken as a restart only
    after one of at least RESET_FROM (1000). This is the documented trade-off: such a
    frame, recorded early in a device's life and replayed later, is accepted and rewinds
    the guard, after which recorded frames above it are accepted again."""

    def run(counters: list[int]) -> tuple[list[bool], int, int]:
        g = ReplayGuard()
        accepted = [g.accept(_bthome(c, None)) for c in counters]
        return accepted, g.rejected, g.resets

    assert RESET_BELOW == 100 and RESET_FROM == 1000
    assert run([999, 99]) == ([True, False], 1, 0)  # last just below RESET_FROM: a replay
    assert run([999, 999]) == ([True, False], 1, 0)  # equal is a replay (bthome-ble: < only)
    assert run([1000, 100]) == ([True, False], 1, 0)  # RESET_BELOW itself is a replay
    assert run([1000, 99]) == ([True, True], 0, 1)  # the smallest accepted reboot
    assert run([2**32 - 1, 0]) == ([True, True], 0, 1)  # counter wrapped
    # The trade-off: after a replayed low frame, the recorded history plays again ...
    assert run([5000, 3, 4000, 5000, 5001]) == ([True, True, True, True, True], 0, 1)
    # ... while without the low frame it does not.
    assert run([5000, 4000, 5000, 5001]) == ([True, False, False, True], 2, 0)
    # Per MAC: another device's counters do not move this one's.
    g = ReplayGuard()
    other = _bthome(1, None)._replace(mac="11:22:33:44:55:66")
    assert [g.accept(_bthome(5000, None)), g.accept(other), g.accept(_bthome(5000, None))] == [
        True,
        True,
        False,
    ]


# --- JSON ------------------------------------------------------------------------------------


def test_json_round_trip_of_an_advert_and_outcome_forms() -> None:
    adv = advertisement_from_json(
        {
            "mac": "a4c1388d18b2",
            "service_data": {"fcd2": "4002ca09"},
            "rssi": -70,
            "local_name": "ATC",
        }
    )
    assert adv == Advertisement(MAC, -70, {UUID_BTHOME_V2: bytes.fromhex("4002ca09")}, {}, "ATC")
    [out] = decode_advertisement(adv, {})
    assert outcome_to_json(out) == {
        "mac": MAC,
        "format": "bthome_v2",
        "model": "BTHome",
        "values": {"temperature": 25.06},
        "events": [],
    }
    failed = Failed(MAC, Format.MIBEACON, FailReason.NO_KEY, "x")
    assert outcome_to_json(failed) == {"mac": MAC, "error": "no_key"}
    bad: object
    for bad in (
        [],
        {"mac": 5},
        {"mac": "zz"},
        {"service_data": {"fe95": "zz"}},
        {"service_data": []},
        {"rssi": "x"},
        {"time": "x"},
    ):
        with pytest.raises(ParseError):
            advertisement_from_json(bad)


# --- Hypothesis: untrusted bytes never raise anything but ParseError -------------------------

_DECODERS = [f.decode for f in FORMATS.values()]
_KEYS = st.sampled_from([None, KEY16, KEY12])
#: Advertiser addresses: real MACs, none, and any text (MAC-shaped or not: "_", "0x", "+",
#: separators in odd places, UUIDs as macOS gives them, non-ASCII digits).
_ADDRESSES = st.one_of(
    st.sampled_from([MAC, None, "", "F3A0E2B4-1111-2222-3333-444455556666", "A4:C1:_3:81:A2:B3"]),
    st.text(alphabet="0123456789abcdefABCDEF:-_+xX ", max_size=20),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=40),
    which=st.integers(0, len(_DECODERS) - 1),
    key=_KEYS,
    mac=_ADDRESSES,
)
def test_random_service_data_only_raises_parse_error(
    data: bytes, which: int, key: BindKey | None, mac: str | None
) -> None:
    with contextlib.suppress(ParseError):
        _DECODERS[which](data, mac, key)


def _outcome(fn: Callable[[], Decoded]) -> Decoded | tuple[type[ParseError], str]:
    try:
        return fn()
    except ParseError as exc:
        return type(exc), str(exc)


def _v5_frame(
    counter: int, objects: list[tuple[int, bytes]], *, mac: str = MAC, key: BindKey = KEY16
) -> bytes:
    """An encrypted MiBeacon v5 LYWSD03MMC frame; ``counter`` is frame counter + ext counter."""
    return mibeacon_encode.encode(
        product_id=0x055B,
        frame_counter=counter & 0xFF,
        ext_counter=counter >> 8,
        mac=mac,
        objects=objects,
        key=key,
    )


@settings(max_examples=300, deadline=None)
@given(
    objects=st.lists(
        st.tuples(
            st.sampled_from([*sorted(mibeacon.OBJECTS), 0x0000, 0xFFFF]),
            st.binary(min_size=0, max_size=10),
        )
        # or an object of an accepted length (the single-object shortcut decodes it)
        | st.sampled_from(sorted(DISPATCH)).flatmap(
            lambda k: st.tuples(st.just(k >> 8), st.binary(min_size=k & 0xFF, max_size=k & 0xFF))
        ),
        min_size=1,
        max_size=3,
    ),
    counter=st.integers(0, 0xFFFFFFFF),
    key=st.sampled_from([KEY16, OTHER16, KEY12]),
    mac=st.sampled_from([MAC, MAC.lower(), "A4:C1:38:00:00:01", None]),
    tail=st.binary(max_size=2),
    other_mac=st.sampled_from([MAC, "A4:C1:38:00:00:01"]),
)
def test_mibeacon_fast_path_equals_the_full_path(
    objects: list[tuple[int, bytes]],
    counter: int,
    key: BindKey,
    mac: str | None,
    tail: bytes,
    other_mac: str,
) -> None:
    """The per-advert fast path of an encrypted v5 frame gives exactly what the full path
    gives (the same Decoded, or the same error) for any objects, key, advertiser address
    and trailing garbage, wrong ones included (OTHER16 is bound to a sensor of this MAC or
    of another one, so the fast path also meets a wrong key and a key of another MAC)."""
    frame = _v5_frame(counter, objects)
    for bound_key, bound_mac in ((KEY16, MAC), (OTHER16, other_mac)):
        # a usual frame of the sensor, decoded by the full path: the fast path is open
        usual = _v5_frame(7, [(0x100A, b"\x50")], mac=bound_mac, key=bound_key)
        mibeacon.decode(usual, bound_mac, bound_key)
        assert mibeacon._BOUND[bound_key.raw][2] == usual[5:11]
    frame = frame[:-7] + tail + frame[-7:] if tail else frame
    head, frame_counter = mibeacon._HEAD(frame)
    fast = _outcome(lambda: mibeacon.decode(frame, mac, key))
    full = _outcome(lambda: mibeacon._decode(frame, mac, key, head, frame_counter))
    assert fast == full


#: Frame-control bits a frame may carry beside those ``mibeacon_encode`` sets from its
#: arguments: request timing, two reserved bits, mesh, registered, solicited, bit 11.
_EXTRA_FC_BITS = [0x0001, 0x0002, 0x0004, 0x0080, 0x0100, 0x0200, 0x0400, 0x0800]
_OTHER_MAC = "A4:C1:38:00:00:01"
#: One way a frame (or how it is decoded) may differ from the bound sensor's usual frame
#: (v5 LYWSD03MMC of MAC, MAC field, no capability, encrypted with KEY16, from MAC, KEY16
#: given): a field of the frame built, a byte changed, the frame cut short, the advertiser
#: address or the key it is decoded with.
_DEVIATIONS = st.one_of(
    st.tuples(st.just("version"), st.sampled_from([4, 3, 2])),
    # another known product (MCCGQ02HL), an unknown one
    st.tuples(st.just("product_id"), st.sampled_from([0x098B, 0xBEEF])),
    st.tuples(st.just("extra_flags"), st.sampled_from(_EXTRA_FC_BITS)),
    st.tuples(st.just("include_mac"), st.just(False)),
    st.tuples(st.just("capability"), st.integers(0, 0xFF)),
    st.tuples(st.just("mac"), st.just(_OTHER_MAC)),  # the MAC in the frame
    st.tuples(st.just("key"), st.sampled_from([OTHER16, None])),  # sent with
    st.tuples(
        st.just("objects"),
        st.sampled_from([[(0x100D, b"\xe8\x00\x90\x01")], [(0x1004, b"\xe8")], []]),
    ),
    st.tuples(st.just("flip"), st.tuples(st.integers(0, 30), st.integers(1, 0xFF))),
    st.tuples(st.just("cut"), st.integers(1, 30)),
    st.tuples(st.just("advertiser"), st.sampled_from([MAC.lower(), _OTHER_MAC, None, ""])),
    st.tuples(st.just("decode_key"), st.sampled_from([OTHER16, KEY12, None])),
)


@settings(max_examples=500, deadline=None)
@given(deviations=st.lists(_DEVIATIONS, max_size=2), counter=st.integers(0, 0xFFFFFFFF))
def test_mibeacon_fast_path_equals_the_full_path_for_any_header(
    deviations: list[tuple[str, Any]], counter: int
) -> None:
    """With KEY16 bound to this MAC's LYWSD03MMC, a frame gives the same Decoded or the same
    error through the fast path as through the full path whatever differs from the usual
    frame: another version, product id or MAC (in the frame or as the advertiser),
    frame-control bits added, the MAC field left out or a capability field added, plain or
    sent with another key, decoded with another key or none, cut short anywhere, or one
    byte changed anywhere (header, MAC, counter, ciphertext, tag)."""
    usual = _v5_frame(7, [(0x100A, b"\x50")])
    mibeacon.decode(usual, MAC, KEY16)
    assert mibeacon._BOUND[KEY16.raw][0] == usual[:4]
    args: dict[str, Any] = {
        "version": 5,
        "product_id": 0x055B,
        "mac": MAC,
        "key": KEY16,
        "objects": [(0x100A, b"\x50")],
    }
    how: dict[str, Any] = {"advertiser": MAC, "decode_key": KEY16, "flip": None, "cut": 0}
    for name, value in deviations:
        (how if name in how else args)[name] = value
    frame = mibeacon_encode.encode(frame_counter=counter & 0xFF, ext_counter=counter >> 8, **args)
    if how["flip"] is not None and how["flip"][0] < len(frame):
        changed = bytearray(frame)
        changed[how["flip"][0]] ^= how["flip"][1]
        frame = bytes(changed)
    frame = frame[: len(frame) - how["cut"]]
    mac, key = how["advertiser"], how["decode_key"]

    def full() -> Decoded:
        if len(frame) < 5:  # decode's own check, before the full path
            raise MalformedError(f"MiBeacon frame of {len(frame)} bytes is shorter than 5")
        return mibeacon._decode(frame, mac, key, *mibeacon._HEAD(frame))

    fast = _outcome(lambda: mibeacon.decode(frame, mac, key))
    assert fast == _outcome(full)


def test_mibeacon_fast_path_table_is_bounded_and_refills() -> None:
    """More bound keys than the table holds (one sensor each) clear it instead of growing
    it, and a sensor whose entry went decodes as before (the full path binds it again)."""
    mibeacon._BOUND.clear()
    keys = [BindKey(i.to_bytes(16, "big")) for i in range(mibeacon._CACHE_MAX + 5)]
    for i, key in enumerate(keys):
        sensor = f"A4:C1:38:{i >> 16:02X}:{i >> 8 & 0xFF:02X}:{i & 0xFF:02X}"
        mibeacon.decode(_v5_frame(1, [(0x100A, b"\x50")], mac=sensor, key=key), sensor, key)
        assert len(mibeacon._BOUND) <= mibeacon._CACHE_MAX
    assert keys[0].raw not in mibeacon._BOUND
    later = _v5_frame(2, [(0x1004, b"\xe8\x00")], mac="A4:C1:38:00:00:00", key=keys[0])
    out = mibeacon.decode(later, "A4:C1:38:00:00:00", keys[0])
    assert out.values == {"temperature": 23.2} and keys[0].raw in mibeacon._BOUND


def test_mibeacon_fast_path_is_taken_for_the_next_frame_of_a_bound_sensor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the full path decoded a usual frame of a sensor with its key, the sensor's
    next frames (new counters, other objects) decode without it, to the same result."""
    mibeacon._BOUND.clear()
    first = mibeacon.decode(_v5_frame(1, [(0x100A, b"\x50")]), MAC, KEY16)
    assert first.values == {"battery": 80} and first.counter == 1
    later = [
        (_v5_frame(0x12345678, [(0x100D, b"\xe8\x00\x90\x01")]), MAC),
        (_v5_frame(0xFFFFFF00, [(0x100A, b"\x50"), (0x1004, b"\xe8\x00")]), None),
    ]
    expected = [mibeacon._decode(data, mac, KEY16, *mibeacon._HEAD(data)) for data, mac in later]
    assert expected[0].values == {"temperature": 23.2, "humidity": 40.0}
    assert expected[0].counter == 0x12345678 and expected[1].counter == 0xFFFFFF00

    def no_full_path(*args: object) -> Decoded:
        raise AssertionError("the full path was taken")

    monkeypatch.setattr(mibeacon, "_decode", no_full_path)
    assert [mibeacon.decode(data, mac, KEY16) for data, mac in later] == expected


@settings(max_examples=300, deadline=None)
@given(
    uuid=st.sampled_from(sorted(FORMATS)),
    data=st.binary(max_size=40),
    key=_KEYS,
    address=_ADDRESSES.filter(lambda a: a is not None),
)
def test_any_address_decodes_to_an_outcome(
    uuid: str, data: bytes, key: BindKey | None, address: str
) -> None:
    """Addresses are untrusted too (macOS UUIDs, JSON lines): never an exception."""
    keys = {address.upper(): key} if key is not None else {}
    [out] = decode_advertisement(Advertisement(address, -60, {uuid: data}), keys)
    assert isinstance(out, Decoded | Failed)


@settings(max_examples=300, deadline=None)
@given(address=_ADDRESSES.filter(lambda a: a is not None))
def test_json_mac_is_canonical_or_a_parse_error(address: str) -> None:
    try:
        adv = advertisement_from_json({"mac": address, "service_data": {"181c": "2302ca09"}})
    except ParseError:
        return
    assert re.fullmatch("([0-9A-F]{2}:){5}[0-9A-F]{2}", adv.address), adv.address


def _seed_frames() -> list[tuple[str, bytes, BindKey | None]]:
    seeds: list[tuple[str, bytes, BindKey | None]] = []
    for line in (VECTORS / "ble.jsonl").read_text().splitlines():
        vec = json.loads(line)
        if vec.get("uuid") and vec.get("service_data_hex"):
            uuid = {"0xFE95": UUID_MIBEACON, "0xFCD2": UUID_BTHOME_V2, "0x181A": UUID_ATC}.get(
                vec["uuid"]
            )
            if uuid is None:
                continue
            key = parse_key(vec["bindkey_hex"]) if vec.get("bindkey_hex") else None
            seeds.append((uuid, bytes.fromhex(vec["service_data_hex"]), key))
    return seeds


SEEDS = _seed_frames()


@settings(max_examples=400, deadline=None)
@given(
    seed=st.sampled_from(SEEDS),
    pos=st.integers(0, 63),
    byte=st.integers(0, 255),
    cut=st.integers(0, 64),
    extra=st.binary(max_size=4),
    address=_ADDRESSES,
)
def test_mutated_vectors_never_raise(
    seed: tuple[str, bytes, BindKey | None],
    pos: int,
    byte: int,
    cut: int,
    extra: bytes,
    address: str | None,
) -> None:
    uuid, data, key = seed
    mutated = bytearray(data)
    if mutated:
        mutated[pos % len(mutated)] = byte
    frame = bytes(mutated[: max(cut, len(mutated) // 2)]) + extra
    outcome = decode_payload(uuid, frame, address, key)
    assert isinstance(outcome, Decoded | Failed)


@settings(max_examples=200, deadline=None)
@given(
    temp=st.floats(-40, 60),
    hum=st.floats(0, 99),
    batt=st.integers(0, 100),
    counter=st.integers(0, 2**32 - 1),
)
def test_bthome_encrypted_round_trip_property(
    temp: float, hum: float, batt: int, counter: int
) -> None:
    objects = (
        bthome.encode_number(0x01, batt)
        + bthome.encode_number(0x02, temp)
        + bthome.encode_number(0x03, hum)
    )
    frame = bthome.encode_v2(objects, mac=MAC, key=KEY16, counter=counter)
    out = bthome.decode_v2(frame, MAC, KEY16)
    assert out.values == {
        "battery": float(batt),
        "temperature": round(round(temp / 0.01) * 0.01, 2),
        "humidity": round(round(hum / 0.01) * 0.01, 2),
    }
    assert out.replay_counter == counter


def test_other_xiaomi_formats_reject_wrong_lengths() -> None:
    for fn in (
        xiaomi_other.decode_scale_v1,
        xiaomi_other.decode_scale_v2,
        xiaomi_other.decode_hhccjcy10,
    ):
        with pytest.raises(ParseError):
            fn(b"\x00", MAC)


def test_non_finite_floats_are_not_values() -> None:
    nan = b"\x00\x00\xc0\x7f"
    frame = mibeacon_encode.encode(
        product_id=0x2AEB, frame_counter=1, mac=MAC, objects=[(0x4801, nan), (0x4A08, nan)]
    )
    out = decode_payload(UUID_MIBEACON, frame, MAC, None)
    assert isinstance(out, Decoded)
    assert out.values == {"motion": True}
    v1 = bthome.decode_v1(bytes([0x43, 0x02]) + b"\x00\x7c", MAC, None, encrypted=False)  # +inf
    assert (v1.values, v1.info) == ({}, {"skipped_non_finite": "temperature"})


def test_codec_modules_import_neither_asyncio_nor_bleak() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import drivers.ble.decoder, drivers.ble.dedup, drivers.ble.jsonio; "
        "bad = [m for m in ('asyncio', 'bleak', 'gateway') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@settings(max_examples=200, deadline=None)
@given(
    temp=st.integers(-400, 600),
    hum=st.integers(0, 1000),
    batt=st.integers(0, 100),
    counter=st.integers(0, 2**32 - 1),
    version=st.sampled_from([4, 5]),
)
def test_mibeacon_encrypted_round_trip_property(
    temp: int, hum: int, batt: int, counter: int, version: int
) -> None:
    objects = [
        (0x100D, temp.to_bytes(2, "little", signed=True) + hum.to_bytes(2, "little")),
        (0x100A, bytes([batt])),
    ]
    frame = mibeacon_encode.encode(
        product_id=0x055B,
        frame_counter=counter & 0xFF,
        mac=MAC,
        objects=objects,
        key=KEY16,
        ext_counter=counter >> 8,
        version=version,
    )
    out = decode_payload(UUID_MIBEACON, frame, MAC, KEY16)
    assert isinstance(out, Decoded)
    assert out.values == {"temperature": temp / 10, "humidity": hum / 10, "battery": float(batt)}
    assert out.counter == counter
    flipped = bytearray(frame)
    flipped[-5] ^= 0x01  # one bit of ciphertext/counter: the tag no longer matches
    assert _mi_failure(bytes(flipped), MAC, KEY16).reason is FailReason.KEY_INVALID


# --- gaps found by the peer suites (issue 12) ---------------------------------------------


def test_a_truncated_bthome_object_keeps_the_objects_before_it() -> None:
    """bthome-ble stops at an object that overruns the payload and keeps the earlier ones."""
    # v2: temperature 25.06 °C, then humidity cut after one byte
    out = decode_payload(UUID_BTHOME_V2, bytes.fromhex("4002ca0903bf"), MAC, None)
    assert isinstance(out, Decoded)
    assert out.values == {"temperature": 25.06}
    assert out.info["truncated"] == "object 0x03 at 3 is truncated"
    # v1: the same, control-byte framing
    v1 = bytes.fromhex("2302ca090303bf")
    out = decode_payload(UUID_BTHOME_V1, v1, MAC, None)
    assert isinstance(out, Decoded) and out.values == {"temperature": 25.06}
    # nothing before the truncated object: malformed, as before
    bad = decode_payload(UUID_BTHOME_V2, bytes.fromhex("4002ca"), MAC, None)
    assert isinstance(bad, Failed) and bad.reason is FailReason.MALFORMED


@pytest.mark.parametrize(
    ("oid", "value", "expected"),
    [  # the table of xiaomi-ble's test_Xiaomi_SJWS02LM_water_state (@509f516e)
        (0x4806, 1, {"water_leak": True}),
        (0x4806, 0, {"water_leak": False}),
        (0x487B, 1, {"water_leak_2": True}),
        (0x487B, 0, {"water_leak_2": False}),
        (0x4A68, 0, {"water_leak": True}),
        (0x4A68, 1, {"water_leak": False}),
        (0x4A68, 2, {"water_leak_2": True}),
        (0x4A68, 3, {"water_leak_2": False}),
        (0x4A68, 4, {}),
    ],
)
def test_sjws02lm_two_probes(oid: int, value: int, expected: dict[str, bool]) -> None:
    key = parse_key("00112233445566778899aabbccddeeff")
    mac = "12:34:56:78:9A:BC"
    frame = mibeacon_encode.encode(
        product_id=0x6375, frame_counter=value + 1, mac=mac, objects=[(oid, bytes([value]))],
        key=key, ext_counter=value + 1,
    )  # fmt: skip
    out = decode_payload(UUID_MIBEACON, frame, mac, key)
    assert isinstance(out, Decoded)
    assert (out.model, out.sleepy, out.values) == ("SJWS02LM", True, expected)
    # another model sending 0x487B/0x4A68 gets nothing from them (as in xiaomi-ble)
    if oid != 0x4806:
        other = mibeacon_encode.encode(
            product_id=0x0863, frame_counter=1, mac=mac, objects=[(oid, bytes([value]))]
        )
        out = decode_payload(UUID_MIBEACON, other, mac, None)
        assert isinstance(out, Decoded) and out.values == {}
