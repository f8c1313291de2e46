"""Our Aqara/Xiaomi decoding against the values zha and zigbee2mqtt assert in their tests.

tests/vectors/aqara_peers.jsonl holds every Aqara/Xiaomi payload of zha-device-handlers'
tests/test_xiaomi.py and zigbee-herdsman-converters' test/lumi.test.ts that carries a value
(bytes and the asserted value; provenance per line, see tests/vectors/README.md). Each is fed
through our interpreter (a whole frame) or the Xiaomi TLV decoder (a bare 0xFF01/0x00F7
value) and every asserted value is compared with ours after unit conversion. A value that
differs is listed in DIFFERENCES with its reason (also in docs/zigbee.md); the test fails if a
listed difference disappears or an unlisted one appears.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.zcl.interpret import Interpreter

VECTORS = Path(__file__).parent / "vectors" / "aqara_peers.jsonl"
LINES: list[dict[str, object]] = [json.loads(x) for x in VECTORS.read_text().splitlines()]


def _lux(v: float) -> float:
    """zha's illuminance measured value (10000·log10(lx) + 1) in lux, as we round it."""
    return round(10 ** ((v - 1) / 10000), 1)


#: (peer, peer field) -> (our metric, scale applied to the peer's number); a peer's boolean
#: field is compared as a boolean.
CONVERT: dict[tuple[str, str], tuple[str, float]] = {
    ("zha", "occupancy"): ("motion", 1),
    ("zha", "on_off"): ("opening", 1),
    ("zha", "battery_voltage_mV"): ("voltage", 1e-3),
    ("zha", "battery_voltage"): ("voltage", 0.1),  # units of 100 mV, rounded by zha
    ("zha", "battery_percentage_remaining"): ("battery", 0.5),  # half percent
    ("zha", "temperature"): ("temperature", 0.01),
    ("zha", "humidity"): ("humidity", 0.01),
    ("zha", "pressure"): ("pressure", 1),
    ("zha", "device_temperature"): ("device_temperature", 0.01),
    ("zha", "illuminance"): ("illuminance", 1),  # through _lux
    ("zha", "rms_voltage"): ("voltage", 1),
    ("zha", "active_power_x10"): ("power", 0.1),
    ("zha", "current_summ_delivered_x1000"): ("energy", 1e-3),
    ("z2m", "battery"): ("battery", 1),
    ("z2m", "voltage"): ("voltage", 1e-3),  # mV
    ("z2m", "device_temperature"): ("device_temperature", 1),
}
#: zha rounds the battery voltage it publishes to 100 mV
TOLERANCE = {("zha", "battery_voltage"): 0.05}

#: Models of the peers' tests that are not in our device table: we decode their common tags
#: only and do not guess what their model-specific tags mean, so a value the peer asserts
#: and we do not produce at all is expected for them (a value we produce must still match).
NOT_OUR_MODELS = frozenset(
    {
        "lumi.vibration.aq1",
        "lumi.sensor_motion",
        "lumi.curtain.acn002",
        "lumi.sensor_smoke.acn03",
        "lumi.motion.ac02",
        "lumi.motion.agl02",
        "lumi.motion.acn001",
        "lumi.airrtc.agl001",
        "lumi.bhf_light.acn001",
        "PS-S04D",
    }
)
BATTERY_CURVE = (
    "battery % from voltage: we use zigbee2mqtt's Aqara curve (2.85-3.0 V linear); "
    "zha's curve is another (about 2.82-3.1 V)"
)
#: (source, peer field) -> (our value, why it differs from the peer's)
DIFFERENCES: dict[tuple[str, str], tuple[object, str]] = {
    ("test_xiaomi_weather[Weather2-basic]", "battery_percentage_remaining"): (
        30.0,
        BATTERY_CURVE,
    ),
    ("test_xiaomi_weather[LumiSensorHtAgl02-opple_cluster]", "battery_percentage_remaining"): (
        99.0,
        BATTERY_CURVE,
    ),
    ("test_xiaomi_motion_sensor_misc", "battery_percentage_remaining"): (100.0, BATTERY_CURVE),
}


def _key(line: dict[str, object]) -> str:
    return str(line["source"]).split(":", 2)[2]


def _ours(line: dict[str, object]) -> dict[str, object]:
    data = bytes.fromhex(str(line["hex"]))
    model = line["model"] if isinstance(line["model"], str) else None
    if line["kind"] == "tlv":
        tlv = xiaomi.parse_tlv(data)
        assert not tlv.truncated
        return dict(xiaomi.tlv_metrics(model, tlv))
    res = Interpreter().interpret(
        "peer", model, int(str(line["cluster"]), 16), int(str(line["endpoint"])), data
    )
    assert res.error is None, res.error
    assert res.frame is not None
    return dict(res.readings)


def _accounts_for_every_byte(line: dict[str, object]) -> bool:
    """The frame decodes, re-encodes to the same bytes, and no Xiaomi TLV in it is cut."""
    data = bytes.fromhex(str(line["hex"]))
    frame = zf.decode(int(str(line["cluster"]), 16), data)
    if zf.encode(frame) != data or not isinstance(frame.payload, zf.ReportAttributes):
        return False
    tlvs = [
        xiaomi.parse_tlv(a.value)
        for a in frame.payload.attributes
        if a.attr_id == 0xFF01 and isinstance(a.value, bytes)
    ]
    return not any(t.truncated for t in tlvs)


def _compare(line: dict[str, object]) -> dict[str, tuple[object, object]]:
    """peer field -> (the peer's value in our units, ours) for every field that differs."""
    peer = str(line["peer"])
    ours = _ours(line)
    expected = line["expected"]
    assert isinstance(expected, dict)
    diffs: dict[str, tuple[object, object]] = {}
    for field, value in expected.items():
        if field == "parses_every_byte":  # zha: every byte is accounted for
            if not _accounts_for_every_byte(line):
                diffs[field] = (True, False)
            continue
        if field == "battery_updates":  # zha: no battery reading from a mains device
            got = {k: v for k, v in ours.items() if k in ("battery", "voltage")}
            if got:
                diffs[field] = ({}, got)
            continue
        conv = CONVERT.get((peer, field))
        if conv is None:
            diffs[field] = (value, None)  # a value we do not produce at all
            continue
        metric, scale = conv
        mine = ours.get(metric)
        if isinstance(value, bool) or metric in ("motion", "opening"):
            want: object = bool(value)
            same = mine is want or mine == want
        else:
            assert isinstance(value, int | float)
            want = _lux(value) if field == "illuminance" else value * scale
            tol = TOLERANCE.get((peer, field), 1e-9)
            same = isinstance(mine, float) and math.isclose(mine, float(want), abs_tol=tol)
        if not same:
            diffs[field] = (want, mine)
    return diffs


@pytest.mark.parametrize("line", LINES, ids=[_key(x) for x in LINES])
def test_peer_payload(line: dict[str, object]) -> None:
    diffs = _compare(line)
    known = {f: DIFFERENCES.get((_key(line), f)) for f in diffs}
    model = line["model"] if isinstance(line["model"], str) else None
    unsupported = model in NOT_OUR_MODELS
    unexplained = {
        f: diffs[f]
        for f, why in known.items()
        if why is None and not (unsupported and diffs[f][1] is None)  # a value we do not produce
    }
    assert unexplained == {}
    explained = {f: diffs[f][1] for f, why in known.items() if why is not None}
    assert explained == {f: why[0] for f, why in known.items() if why is not None}
    stale = {f for (src, f) in DIFFERENCES if src == _key(line) and f not in diffs}
    assert stale == set(), "listed as a difference but now matches"


def test_models_listed_as_not_ours_are_not_in_our_table() -> None:
    assert {m for m in NOT_OUR_MODELS if xiaomi.spec_for(m) is not None} == set()
    used = {x["model"] for x in LINES}
    assert used >= NOT_OUR_MODELS
