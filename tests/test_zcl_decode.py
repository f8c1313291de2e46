"""ZCL frames, data types, Xiaomi TLV and the metric interpreter against the public vectors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import ParseError
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import types as zt
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.zcl.interpret import Interpreter
from tests.helpers import vectors

ZCL = vectors("zigbee.jsonl", "zcl")


def _records(frame: zf.ZclFrame) -> list[dict[str, Any]]:
    """Our decode in the shape of the vector's derived_decode records."""
    p = frame.payload
    assert isinstance(p, zf.ReportAttributes)
    out: list[dict[str, Any]] = []
    for a in p.attributes:
        rec: dict[str, Any] = {"attr": f"0x{a.attr_id:04X}", "type": f"0x{a.type_id:02X}"}
        if (frame.cluster, a.attr_id) in zf.LENIENT_STRING_ATTRS:
            rec["declared_len"] = a.declared_len if a.declared_len is not None else len(a.value)
            rec["actual_len"] = len(a.value)
            rec["tlv"] = {str(k): v for k, v in xiaomi.parse_tlv(a.value).values.items()}
        elif isinstance(a.value, list):
            rec["value"] = [[t, int(v) if isinstance(v, bool) else v] for t, v in a.value]
        else:
            rec["value"] = int(a.value) if isinstance(a.value, bool) else a.value
        out.append(rec)
    return out


@pytest.mark.parametrize("vec", ZCL, ids=[v["hex"][:20] for v in ZCL])
def test_vector_frame(vec: dict[str, Any]) -> None:
    raw = bytes.fromhex(vec["hex"])
    cluster = int(vec["cluster"], 16)
    frame = zf.decode(cluster, raw)
    want = vec["derived_decode"]
    h = frame.header
    assert h.frame_type == (0 if want["frame_type"] == "global" else 1)
    assert h.manufacturer == (int(want["manufacturer"], 16) if want["manufacturer"] else None)
    assert h.direction == want["direction"]
    assert h.disable_default_response == bool(want["disable_default_response"])
    assert h.tsn == want["tsn"]
    assert h.command_id == int(want["command_id"], 16)
    if "records" in want:
        got = _records(frame)
        exp = [
            {k: v for k, v in r.items() if k != "tlv"} | ({"tlv": r["tlv"]} if "tlv" in r else {})
            for r in want["records"]
        ]
        assert got == exp
        if "trailing_bytes_ignored" in want:
            assert isinstance(frame.payload, zf.ReportAttributes)
            assert frame.payload.trailing.hex() == want["trailing_bytes_ignored"]
    # every vector re-encodes byte for byte (lenient lengths and stray bytes preserved)
    assert zf.encode(frame) == raw


def test_non_report_payloads() -> None:
    assert zf.decode(0x0500, bytes.fromhex("092100010000000000")).payload == (
        zf.ZoneStatusChangeNotification(zone_status=1, extended_status=0, zone_id=0, delay=0)
    )
    assert zf.decode(0x0000, bytes.fromhex("18040b0c82")).payload == zf.DefaultResponse(
        12, zf.ZclStatus.UNSUP_GENERAL_COMMAND
    )
    rsp = zf.decode(0x0000, bytes.fromhex("080101010002")).payload
    assert rsp == zf.ReadAttributesResponse((zf.ReadRecord(1, 2, None),))
    big = zf.decode(
        0x0000,
        bytes.fromhex(
            "180701050000421e545241444652492062756c6220453237205753206f70616c203938306c6d"
            "0600004208323031373033333107000030010a0000410f4c4544313534354731324532374555"
        ),
    ).payload
    assert big == zf.ReadAttributesResponse(
        (
            zf.ReadRecord(5, 0, zf.Attribute(5, 0x42, "TRADFRI bulb E27 WS opal 980lm")),
            zf.ReadRecord(6, 0, zf.Attribute(6, 0x42, "20170331")),
            zf.ReadRecord(7, 0, zf.Attribute(7, 0x30, 1)),
            zf.ReadRecord(10, 0, zf.Attribute(10, 0x41, b"LED1545G12E27EU")),
        )
    )
    # the Read Attributes request zigbee2mqtt sent in Koenkk/zigbee2mqtt#25788
    assert zf.read_attributes(0x0402, 0x3D, (0x0000,)) == bytes.fromhex("003d000000")
    req = zf.decode(0x0402, bytes.fromhex("103d000000"))
    assert req.payload == zf.ReadAttributes((0,))


def test_aqara_tlv_attr_value_only() -> None:
    """herdsman-converters lumi.test.ts: the 0x00F7 value of PS-S04D."""
    tlv = xiaomi.parse_tlv(bytes.fromhex("1721640b182061"))
    assert tlv == xiaomi.Tlv({0x17: 2916, 0x18: 97}, {0x17: 0x21, 0x18: 0x20})
    assert xiaomi.tlv_metrics(None, tlv) == [("voltage", 2.916), ("battery", 97.0)]


def test_tlv_tolerates_truncation_and_padding() -> None:
    assert xiaomi.parse_tlv(bytes.fromhex("0121b80b00")).values == {1: 3000}
    cut = xiaomi.parse_tlv(bytes.fromhex("0121b80b0328"))  # 0x03 int8 without its byte
    assert cut == xiaomi.Tlv({1: 3000}, {1: 0x21}, truncated=True)
    assert xiaomi.parse_tlv(bytes.fromhex("01ee00")).truncated  # unknown type


# --- the interpreter: metrics per model ----------------------------------------------------

EXPECTED_METRICS: dict[str, tuple[str | None, list[tuple[str, object]]]] = {
    # zha Weather2: FF01 as octet string, no manufacturer code
    "18200a01ff412501214f0b0421a84305214e020624010000000064299b096521be1b662b138d01000a21900d": (
        "lumi.weather",
        [
            ("voltage", 2.895),
            ("temperature", 24.59),
            ("humidity", 71.02),
            ("pressure", 1016.51),
            ("battery", 30.0),  # zigbee2mqtt's Aqara curve: 2.85 V 0 %, 3.0 V 100 %
        ],
    ),
    # T1 temperature sensor on 0xFCC0/0x00F7: tag 0x66 already in hPa
    "1c5f11860af700412d0121b60b0328170421a81305210b000624060000000008211d010a2100000c20016429"
    "2d09652904186629e903": (
        "lumi.sensor_ht.agl02",
        [
            ("voltage", 2.998),
            ("device_temperature", 23.0),
            ("temperature", 23.49),
            ("humidity", 61.48),
            ("pressure", 1001.0),
            ("battery", 99.0),
        ],
    ),
    # RTCGQ11LM heartbeat: tag 0x0B = 8 lx
    "1c5f11c10a01ff41210121db0b03281f0421a8430521b60006240b000000000a21ca356410000b210800": (
        "lumi.sensor_motion.aq2",
        [
            ("voltage", 3.035),
            ("device_temperature", 31.0),
            ("illuminance", 8.0),
            ("battery", 100.0),
        ],
    ),
    # zha test_xiaomi_t1_door_sensor: On/Off is the contact (1 = open), as z2m reads it
    "185d0a00001001": ("lumi.magnet.agl02", [("opening", True)]),
    "18640a00001000": ("lumi.magnet.agl02", [("opening", False)]),
    # T1 door sensor 0x00F7: tag 0x64 is not the contact (both peers read On/Off)
    "1c5f11670af700412e0121b00c0328190421a8130521090006240d0000000008211e010a2100000c2001641001"
    "6620036720016821a800": (
        "lumi.magnet.agl02",
        [("voltage", 3.248), ("device_temperature", 25.0), ("battery", 100.0)],
    ),
    # wrong length byte (34 declared, 33 sent); leak state tag ignored (IAS decides)
    "1c5f11120a050042156c756d692e73656e736f725f776c65616b2e61713101ff42220121b30b0328170421a843"
    "0521a70006240000000000082104020a210000641001": (
        None,  # the model string in the same frame makes it a known battery device
        [("voltage", 2.995), ("device_temperature", 23.0), ("battery", 97.0)],
    ),
    "08420a0000298c05": (None, [("temperature", 14.2)]),
    "181c0a000029b002": ("lumi.weather", [("temperature", 6.88)]),
    "181d0a0000210b0f": ("lumi.weather", [("humidity", 38.51)]),
    "18a80a000029f0d8": ("lumi.weather", []),  # -100 °C junk: dropped and counted
    "1c3412020a02ff4c0600100121b80b21a801240000000000216e002050": (
        "lumi.sensor_motion",
        [("voltage", 3.0)],
    ),
    "18640a00001801": ("lumi.sensor_motion.aq2", [("motion", True)]),
    "092100010000000000": (
        "lumi.sensor_wleak.aq1",
        [("water_leak", True), ("tamper", False), ("battery_low", False)],
    ),
    "193e00200000170000": (
        None,
        [("alarm", False), ("tamper", False), ("battery_low", False)],
    ),
}


@pytest.mark.parametrize("hex_", sorted(EXPECTED_METRICS))
def test_interpreter_metrics(hex_: str) -> None:
    vec = next(v for v in ZCL if v["hex"] == hex_)
    model, metrics = EXPECTED_METRICS[hex_]
    it = Interpreter()
    res = it.interpret("00158d0001a2b3c4", model, int(vec["cluster"], 16), 1, bytes.fromhex(hex_))
    assert list(res.readings) == metrics
    assert res.error is None
    assert it.junk_dropped == (1 if hex_ == "18a80a000029f0d8" else 0)


def test_model_learned_from_basic_report() -> None:
    raw = bytes.fromhex(
        "1c5f11030a050042156c756d692e73656e736f725f776c65616b2e61713101ff42220121d50c03282104"
        "21a81305212b0006240000050000082104020a210000641000"
    )
    res = Interpreter().interpret("a", None, 0x0000, 1, raw)
    assert res.model == "lumi.sensor_wleak.aq1"
    assert res.readings == (("voltage", 3.285), ("device_temperature", 33.0), ("battery", 100.0))
    assert not res.default_response  # FC 0x1C: disable default response set


def test_broadcast_on_many_endpoints_counted_once() -> None:
    """zigbee2mqtt#22841: one broadcast arrives once per registered endpoint."""
    it = Interpreter()
    data = bytes.fromhex("18d50a0000212a74")
    results = [
        it.interpret("cb0a", None, 0x0400, ep, data) for ep in (110, 11, 10, 8, 6, 5, 4, 3, 2, 1)
    ]
    assert [r.duplicate for r in results] == [False] + [True] * 9
    assert results[0].readings == (("illuminance", 941.2),)
    assert it.duplicates_dropped == 9


#: In order, through one interpreter: (sender, model, cluster, endpoint, ZCL frame, which part
#: of the result, what it must be).
BUTTON_FRAMES: tuple[tuple[str, str, int, int, str, str, object], ...] = (
    ("s", "lumi.sensor_switch.aq2", 0x0006, 1, "18010a00001001", "events", (("single", 1),)),
    ("s", "lumi.sensor_switch.aq2", 0x0006, 1, "18020a00802002", "events", (("double", 1),)),
    ("s", "lumi.sensor_switch.aq2", 0x0006, 1, "18030a00802003", "events", (("triple", 1),)),
    ("s", "lumi.sensor_switch.aq2", 0x0012, 1, "18040a5500210000", "events", (("long", 1),)),
    ("s", "lumi.sensor_switch.aq2", 0x0012, 1, "18050a550021ff00", "events", (("release", 1),)),
    ("n", "lumi.ctrl_neutral1", 0x0006, 2, "18010a00001001", "readings", (("switch", True),)),
    ("n", "lumi.ctrl_neutral1", 0x0006, 4, "18020a00001000", "events", (("hold", 1),)),
    ("n", "lumi.ctrl_neutral1", 0x0006, 4, "18030a00001001", "events", (("release", 1),)),
    ("n", "lumi.ctrl_neutral1", 0x0006, 4, "18040a00001001", "events", (("single", 1),)),
)


def test_button_actions() -> None:
    it = Interpreter()
    for sender, model, cluster, ep, frame, part, expected in BUTTON_FRAMES:
        res = it.interpret(sender, model, cluster, ep, bytes.fromhex(frame))
        assert getattr(res, part) == expected, frame


def test_plug_power_and_heartbeat() -> None:
    it = Interpreter()
    res = it.interpret("p", "lumi.plug", 0x000C, 2, bytes.fromhex("184a0a5500390000c842"))
    assert res.readings == (("power", 100.0),)
    hb = bytes.fromhex(
        "1c5f11030a01ff424403281d0521be2d08212f12092102156410016510006e20ff6f20ff9420049539b81e"
        "153e9639d3f9114597390030683b9839000000009b2101009c20010a2138260c280000"
    )
    res = it.interpret("p", "lumi.plug", 0x0000, 1, hb)
    assert res.readings == (
        ("device_temperature", 29.0),
        ("switch", True),
        ("energy", 0.146),
        ("voltage", 233.6),
        ("current", 0.0),
        ("power", 0.0),
    )


def test_pressure_scaled_value() -> None:
    it = Interpreter()
    # measured 995 hPa, scaled 9950 with scale -1 (Abeille#2784 / zigate#63)
    raw = bytes.fromhex("18010a000029e303100029de261400" + "28ff")
    assert it.interpret("w", "lumi.weather", 0x0403, 1, raw).readings == (("pressure", 995.0),)


# --- properties ----------------------------------------------------------------------------


@given(st.integers(0, 0xFFFF), st.binary(max_size=120))
def test_random_bytes_only_parse_error(cluster: int, data: bytes) -> None:
    try:
        frame = zf.decode(cluster, data)
    except ParseError:
        return
    assert zf.encode(frame) == data


@given(st.binary(max_size=120))
def test_tlv_never_raises(data: bytes) -> None:
    tlv = xiaomi.parse_tlv(data)
    for model in (None, *xiaomi.MODELS):
        xiaomi.tlv_metrics(model, tlv)


#: One interpreter for every example: per-device state (pressure scale, multipliers, held
#: buttons) carries from one example to the next, as it does on a live network.
SHARED = Interpreter()


@given(
    st.sampled_from([None, *xiaomi.MODELS]),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.binary(max_size=80),
)
def test_interpreter_never_raises(model: str | None, cluster: int, ep: int, data: bytes) -> None:
    SHARED.interpret("d", model, cluster, ep, data)


#: The attributes the interpreter gives a meaning to, per cluster.
MEANINGFUL: dict[int, tuple[int, ...]] = {
    0x0000: (0x0005, 0xFF01),
    0x0001: (0x0020, 0x0021),
    0x0006: (0x0000, 0x8000),
    0x000C: (0x0055,),
    0x0012: (0x0055,),
    0x0400: (0x0000,),
    0x0402: (0x0000,),
    0x0403: (0x0000, 0x0010, 0x0014),
    0x0405: (0x0000,),
    0x0406: (0x0000,),
    0x0500: (0x0002,),
    0x0702: (0x0000, 0x0301, 0x0302, 0x0400),
    0x0B04: (0x0505, 0x0508, 0x050B, *range(0x0600, 0x0606)),
}


@st.composite
def typed_report(draw: st.DrawFn) -> tuple[int, list[zf.Attribute]]:
    cluster = draw(st.sampled_from(sorted(MEANINGFUL)))
    attrs = []
    for _ in range(draw(st.integers(1, 4))):
        type_id = draw(st.sampled_from(sorted(zt.FIXED_SIZE)))
        size = zt.FIXED_SIZE[type_id]
        value, _ = zt.read_value(type_id, draw(st.binary(min_size=size, max_size=size)), 0)
        attrs.append(zf.Attribute(draw(st.sampled_from(MEANINGFUL[cluster])), type_id, value))
    return cluster, attrs


@settings(max_examples=300)
@given(
    st.sampled_from(["a", "b"]),
    st.sampled_from([None, *xiaomi.MODELS]),
    typed_report(),
    st.integers(1, 4),
    st.integers(0, 255),
)
def test_interpreter_on_typed_reports(
    src: str, model: str | None, report: tuple[int, list[zf.Attribute]], ep: int, tsn: int
) -> None:
    """Well-formed reports of every numeric type reach the per-device state and the math."""
    cluster, attrs = report
    frame = zf.ZclFrame(
        cluster, zf.ZclHeader(0, 1, True, tsn, 0x0A), zf.ReportAttributes(tuple(attrs))
    )
    res = SHARED.interpret(src, model, cluster, ep, zf.encode(frame))
    assert res.error is None
    for metric, value in res.readings:
        assert cl.plausible(metric, value), (metric, value)


scalar_types = st.sampled_from(sorted(zt.FIXED_SIZE))


@given(scalar_types, st.data())
def test_scalar_round_trip(type_id: int, data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=zt.FIXED_SIZE[type_id], max_size=zt.FIXED_SIZE[type_id]))
    value, pos = zt.read_value(type_id, raw, 0)
    assert pos == len(raw)
    assert zt.write_value(type_id, value) == raw or value != value  # NaN payloads differ


@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF),
            st.sampled_from([0x20, 0x21, 0x29, 0x10, 0x39, 0x42]),
            st.integers(0, 255),
        ),
        max_size=5,
    ),
    st.integers(0, 255),
)
def test_report_round_trip(recs: list[tuple[int, int, int]], tsn: int) -> None:
    attrs = []
    for attr_id, type_id, n in recs:
        value: Any = {
            0x20: n,
            0x21: n * 257,
            0x29: n - 128,
            0x10: bool(n & 1),
            0x39: float(n),
            0x42: "x" * (n % 9),
        }[type_id]
        attrs.append(zf.Attribute(attr_id, type_id, value))
    frame = zf.ZclFrame(
        0x0402, zf.ZclHeader(0, 1, True, tsn, 0x0A), zf.ReportAttributes(tuple(attrs))
    )
    raw = zf.encode(frame)
    if attrs:
        assert zf.decode(0x0402, raw) == frame


tlv_entry = st.tuples(
    st.integers(1, 255),
    st.sampled_from([0x10, 0x20, 0x21, 0x23, 0x24, 0x28, 0x29, 0x2B, 0x39]),
    st.data(),
)


@given(st.lists(tlv_entry, max_size=12, unique_by=lambda e: e[0]), st.booleans())
def test_tlv_round_trip(entries: list[tuple[int, int, st.DataObject]], pad: bool) -> None:
    raw = b""
    want: dict[int, Any] = {}
    for tag, type_id, data in entries:
        size = zt.FIXED_SIZE[type_id]
        value_bytes = data.draw(st.binary(min_size=size, max_size=size))
        value, _ = zt.read_value(type_id, value_bytes, 0)
        if value != value:  # NaN never equals itself
            continue
        raw += bytes((tag, type_id)) + value_bytes
        want[tag] = value
    tlv = xiaomi.parse_tlv(raw + (b"\x00" if pad else b""))
    assert tlv.values == want
    assert not tlv.truncated


# --- arithmetic on hostile values (OverflowError must never escape) -------------------------


def test_pressure_scale_only_as_int8_within_ten() -> None:
    it = Interpreter()
    # scale 400 sent as int16: junk (counted), not kept for the device
    res = it.interpret("w", "lumi.weather", 0x0403, 1, bytes.fromhex("18010a140029" + "9001"))
    assert (res.readings, res.junk, res.error) == ((), 1, None)
    assert it.junk_dropped == 1
    # int8 scale 11 (outside +-10): junk too
    res = it.interpret("w", "lumi.weather", 0x0403, 1, bytes.fromhex("18020a140028" + "0b"))
    assert (res.readings, res.junk, res.error) == ((), 1, None)
    # the next report still uses the default scale -1
    res = it.interpret("w", "lumi.weather", 0x0403, 1, bytes.fromhex("18030a000029e303100029de26"))
    assert (res.readings, res.junk, res.error) == ((("pressure", 995.0),), 0, None)
    # an int8 scale within range is kept: -2 makes 9950 -> 99.5 hPa, implausible -> junk
    it.interpret("w", "lumi.weather", 0x0403, 1, bytes.fromhex("18040a140028fe"))
    res = it.interpret("w", "lumi.weather", 0x0403, 1, bytes.fromhex("18050a100029de26"))
    assert (res.readings, res.junk) == ((), 1)


def test_illuminance_of_a_huge_value_is_junk_not_a_crash() -> None:
    it = Interpreter()
    res = it.interpret("d", None, 0x0400, 1, bytes.fromhex("18010a000023feffffff"))
    assert (res.readings, res.junk, res.error) == ((), 1, None)
    assert it.junk_dropped == 1


def test_arithmetic_error_in_a_conversion_becomes_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.zigbee.zcl import clusters as cl

    def broken(type_id: int, v: zt.ZclValue) -> list[tuple[str, object]]:
        raise OverflowError("math range error")

    monkeypatch.setitem(cl.ATTRIBUTES, (cl.TEMPERATURE, 0x0000), broken)
    it = Interpreter()
    res = it.interpret("d", None, 0x0402, 1, bytes.fromhex("18010a00002934 08"))
    assert res.error == "cannot interpret the ZCL frame: OverflowError: math range error"
    assert res.readings == ()
    assert it.zcl_errors == 1


# --- collections cannot amplify (arrays of zero-size elements) ------------------------------


def _elements(value: object) -> int:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], list):
        return len(value[1]) + sum(_elements(v) for v in value[1])
    if isinstance(value, list):
        return len(value) + sum(_elements(v) for _, v in value)
    return 0


@pytest.mark.parametrize("etype", [0x00, 0xFF])
@pytest.mark.parametrize("ctype", [0x48, 0x50, 0x51])
def test_collection_of_zero_size_elements_is_rejected(ctype: int, etype: int) -> None:
    raw = bytes.fromhex("18010a0100") + bytes((ctype, etype)) + (0xFFFE).to_bytes(2, "little")
    with pytest.raises(ParseError, match="zero-size"):
        zf.decode(0x0000, raw)


def test_nested_arrays_cannot_amplify() -> None:
    """234 bytes used to decode to ~4.9 M elements (reviewer's amp.py)."""
    n_inner = 75
    raw = (
        bytes.fromhex("18010a010048 48")
        + n_inner.to_bytes(2, "little")
        + bytes.fromhex("00feff") * n_inner
    )
    with pytest.raises(ParseError):
        zf.decode(0x0000, raw)
    # an element count the remaining bytes cannot hold is refused before any element is read
    with pytest.raises(ParseError, match="elements"):
        zf.decode(0x0000, bytes.fromhex("18010a010048 21 feff") + bytes(10))
    # a legitimate nested array still decodes
    ok = zf.decode(0x0000, bytes.fromhex("18010a010048 48 0200 200100 05 20 0200 0607"))
    assert isinstance(ok.payload, zf.ReportAttributes)
    assert ok.payload.attributes[0].value == (0x48, [(0x20, [5]), (0x20, [6, 7])])


@given(st.binary(max_size=200))
def test_decoded_elements_never_exceed_the_bytes(body: bytes) -> None:
    raw = bytes.fromhex("18010a0100") + body
    try:
        frame = zf.decode(0x0000, raw)
    except ParseError:
        return
    assert isinstance(frame.payload, zf.ReportAttributes)
    assert sum(_elements(a.value) for a in frame.payload.attributes) <= len(raw)


def test_wxkg11lm_clicks_as_the_peers_read_them() -> None:
    """On/Off 1 is a click, 0 is not; attribute 0x8000 counts clicks 1-4 (zigbee2mqtt's
    WXKG11LM converter and zha's quirk). Synthetic frames built from the ZCL spec."""
    it = Interpreter()
    sw = "lumi.sensor_switch.aq2"
    assert it.interpret("s", sw, 0x0006, 1, bytes.fromhex("18110a00001000")).events == ()
    for tsn, count, action in ((0x12, 1, "single"), (0x13, 4, "quadruple"), (0x14, 5, None)):
        frame = bytes([0x18, tsn, 0x0A, 0x00, 0x80, 0x20, count])
        expected = ((action, 1),) if action else ()
        assert it.interpret("s", sw, 0x0006, 1, frame).events == expected


def test_battery_percent_follows_zigbee2mqtts_aqara_curve() -> None:
    assert [xiaomi.battery_percent(mv) for mv in (2500, 2850, 2895, 2924, 2925, 3000, 3300)] == [
        0.0,
        0.0,
        30.0,
        49.0,
        50.0,
        100.0,
        100.0,
    ]
    # a sent percentage wins over the curve (T1 devices: tag 0x18)
    tlv = xiaomi.parse_tlv(bytes.fromhex("1721640b182061"))
    assert xiaomi.tlv_metrics("lumi.sensor_ht.agl02", tlv) == [
        ("voltage", 2.916),
        ("battery", 97.0),
    ]
    # mains devices have no battery: their battery tags are not published (zha
    # test_xiaomi_power_cluster_not_used), and a plug's `voltage` is the mains voltage
    plug = xiaomi.parse_tlv(bytes.fromhex("0121b80b9639" + "00c00f45"))  # 0x96: 2300.0
    assert xiaomi.tlv_metrics("lumi.plug", plug) == [("voltage", 230.0)]


def test_every_model_has_a_manufacturer_and_a_human_name() -> None:
    for model, spec in xiaomi.MODELS.items():
        ident = xiaomi.identity(model)
        assert ident is not None
        assert ident.manufacturer in ("Aqara", "Xiaomi"), model
        assert ident.model_code and ident.model_code in spec.description, model
        assert ident.model_name, model
    assert xiaomi.identity("lumi.weather") == xiaomi.Identity(
        "Aqara", "WSDCGQ11LM", "Temperature, humidity and pressure sensor"
    )
    assert xiaomi.identity("lumi.remote.b1acn01") == xiaomi.identity("lumi.sensor_switch.aq2")
    assert xiaomi.identity("lumi.unknown") is None
