"""Every vector of tests/vectors/ble.jsonl, decoded and compared as whole objects.

The vectors carry what the source library (mostly xiaomi-ble / bthome-ble) reports. Where
this gateway deliberately reports something else, :func:`translate` rewrites the expectation
by a named rule (voltage made up from %, truncated humidity, metric names of docs/metrics.md,
one unit per name, events in the gateway's event vocabulary), and :data:`OVERRIDES` lists
the remaining per-vector differences, each with its reason. Nothing is skipped.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.decoder import decode_advertisement, primary
from drivers.ble.keys import parse_key
from drivers.ble.types import Advertisement, Decoded, Failed, FailReason, normalize_uuid

VECTORS = Path(__file__).parent / "vectors" / "ble.jsonl"
LINES: list[dict[str, Any]] = [json.loads(line) for line in VECTORS.read_text().splitlines()]

#: Why a vector's expectation differs from its source, once per reason: reason ->
#: {vector index: values to set/replace in the translated expectation}.
_DEVIATIONS: dict[str, dict[int, dict[str, Any]]] = {
    "0x1006 carries 0.1 % (467); the source truncates to 46": {11: {"humidity": 46.7}},
    "key id as sent (u32), not the source's label": {
        49: {"key_id": 0xFFFFFFFF},
        50: {"key_id": 0},
        51: {"key_id": 0x80010002},
        52: {"key_id": 0},
        71: {"key_id": 0},
    },
    "0x4818 carries the no-motion time; we report it too": {
        62: {"no_motion_time": 60.0},
        73: {"no_motion_time": 60.0},
    },
    "0x07 is sent in lb; reported in kg (74.86 lb)": {
        130: {"mass": 33.956},
        205: {"mass": 33.956},
    },
    "0x40 is sent in mm; distance is reported in m": {152: {"distance": 0.012}},
    "0x48 is sent in mL; volume is reported in L": {161: {"volume": 34.78}},
    "S200 record of a finished weighing: stabilized (docs/ble.md)": {83: {"stabilized": True}},
}
#: Vector index -> (values to set/replace in the translated expectation, reason).
OVERRIDES: dict[int, tuple[dict[str, Any], str]] = {
    index: (values, reason)
    for reason, vectors in _DEVIATIONS.items()
    for index, values in vectors.items()
}

_ACTIONS = {
    "press": "single",
    "double_press": "double",
    "triple_press": "triple",
    "long_press": "long",
    "hold_press": "hold",
}
_PROPS = {"number_of_presses": "presses", "steps": "steps", "duration": "duration"}
_FLOAT_METRICS = {
    "temperature", "humidity", "battery", "illuminance", "moisture", "conductivity",
    "pm25", "pm10", "carbon_dioxide", "volatile_organic_compounds", "voltage",
}  # fmt: skip


def _button_number(key: str, model: str) -> int | None:
    if key == "button":
        return None
    suffix = key.removeprefix("button_")
    if suffix.isdigit():
        return int(suffix)
    if model == "YLYK01YL":  # remote: buttons numbered as sent (on = 1, off = 2, ...)
        return ["on", "off", "brightness", "plus", "M", "min"].index(suffix) + 1
    three = model == "K9B-3BTN"
    return {"left": 1, "middle": 2, "right": 3 if three else 2}[suffix]


def translate_event(ev: dict[str, Any], model: str) -> dict[str, Any]:
    key, kind = ev["key"], ev["event_type"]
    props = {_PROPS[k]: v for k, v in (ev.get("event_properties") or {}).items()}
    if key.startswith("button"):
        out: dict[str, Any] = {"event": "button", "action": _ACTIONS[kind]}
        number = _button_number(key, model)
        if number is not None:
            out["button"] = number
        return out
    if key == "motion" and kind == "motion_detected":
        return {"event": "motion", "action": "detected"}
    return {"event": key, "action": _ACTIONS.get(kind, kind), **props}


def translate(index: int, vec: dict[str, Any]) -> dict[str, Any]:
    """The whole expected result in this gateway's vocabulary."""
    if "NEGATIVE" in vec.get("note", ""):
        return {"error": FailReason.KEY_INVALID.value}
    model = (vec.get("expected_device") or {}).get("model", "")
    fmt = vec["format"]
    values: dict[str, Any] = {}
    counter: int | None = None
    for source_name, source_value in vec["expected"].items():
        name, value = source_name, source_value
        if name in ("packet_id", "packet"):
            counter = value
            continue
        if name == "voltage" and fmt == "mibeacon":
            continue  # quirk: made up from the battery percentage, not on the air
        if name == "moisture" and isinstance(value, bool):
            name = "water_leak"  # binary moisture is a leak (docs/metrics.md)
        if name == "power" and isinstance(value, bool):
            name = "power_on"  # binary power: W is the float metric "power"
        if name == "timestamp":
            value = int(datetime.datetime.fromisoformat(value).timestamp())
        if name == "charging_state":
            value = value.lower()
        values[name] = value
    extra, _reason = OVERRIDES.get(index, ({}, ""))
    values.update(extra)
    events = [translate_event(e, model) for e in vec.get("expected_events") or []]
    out: dict[str, Any] = {"values": values, "events": events}
    if counter is not None:
        out["counter"] = counter
    if fmt in ("mibeacon", "hhccjcy10") or fmt.startswith("xiaomi_scale"):
        out["model"] = model
    return out


def _uuid_of(vec: dict[str, Any]) -> str:
    return normalize_uuid(vec["uuid"])


def advert(vec: dict[str, Any], service_data_hex: str | None = None) -> Advertisement:
    if "all_service_data_hex" in vec:
        sd = {normalize_uuid(u): bytes.fromhex(h) for u, h in vec["all_service_data_hex"].items()}
    else:
        sd = {_uuid_of(vec): bytes.fromhex(service_data_hex or vec["service_data_hex"])}
    return Advertisement(vec["mac"] or "", -60, sd, {}, vec.get("local_name"))


def keys_of(vec: dict[str, Any]) -> dict[str, Any]:
    if vec.get("bindkey_hex") and vec.get("mac"):
        return {vec["mac"].upper(): parse_key(vec["bindkey_hex"])}
    return {}


def observed(vec: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    keys = keys_of(vec)
    values: dict[str, Any] = {}
    # cumulative expectations: the source kept state over the preceding adverts
    for before in vec.get("preceded_by_service_data_hex") or []:
        prior = primary(decode_advertisement(advert(vec, before), keys))
        assert isinstance(prior, Decoded), prior
        values.update(prior.values)
    outcome = primary(decode_advertisement(advert(vec), keys))
    if isinstance(outcome, Failed):
        return {"error": outcome.reason.value}
    assert isinstance(outcome, Decoded)
    values.update(outcome.values)
    out: dict[str, Any] = {"values": values, "events": [e.as_dict() for e in outcome.events]}
    if "counter" in expected:
        out["counter"] = outcome.counter
    if "model" in expected:
        out["model"] = outcome.model
    return out


DECODABLE = [
    (i, v) for i, v in enumerate(LINES) if v["format"] != "pvvx_custom_decrypted_payload"
    and "expected_split" not in v
]  # fmt: skip


@pytest.mark.parametrize(("index", "vec"), DECODABLE, ids=[str(i) for i, _ in DECODABLE])
def test_vector(index: int, vec: dict[str, Any]) -> None:
    expected = translate(index, vec)
    assert observed(vec, expected) == expected


@pytest.mark.parametrize(("index", "vec"), DECODABLE, ids=[str(i) for i, _ in DECODABLE])
def test_vector_value_types(index: int, vec: dict[str, Any]) -> None:
    """Measurements are floats (docs/metrics.md); booleans stay booleans."""
    outcome = primary(decode_advertisement(advert(vec), keys_of(vec)))
    if isinstance(outcome, Decoded):
        for name, value in outcome.values.items():
            base = name.rsplit("_", 1)[0] if name[-1].isdigit() else name
            if base in _FLOAT_METRICS:
                assert isinstance(value, float), (name, value)


def test_mibeacon_model_always_from_the_table() -> None:
    for vec in LINES:
        if vec["format"] == "mibeacon" and "NEGATIVE" not in vec.get("note", ""):
            outcome = primary(decode_advertisement(advert(vec), keys_of(vec)))
            assert isinstance(outcome, Decoded)
            assert outcome.model == vec["expected_device"]["model"]


def test_encrypted_without_key_is_no_key() -> None:
    for vec in LINES:
        if vec.get("encrypted") and vec.get("service_data_hex") and vec.get("uuid"):
            outcome = primary(decode_advertisement(advert(vec), {}))
            assert isinstance(outcome, Failed), vec["source"]
            assert outcome.reason is FailReason.NO_KEY


def test_pvvx_field_split_only_vector_needs_a_key() -> None:
    vec = next(v for v in LINES if "expected_split" in v)
    outcome = primary(decode_advertisement(advert({**vec, "mac": "A4:C1:38:9C:58:AB"}), {}))
    assert outcome == Failed(
        mac="A4:C1:38:9C:58:AB",
        format=outcome.format if outcome else None,
        reason=FailReason.NO_KEY,
        detail="encrypted 0x181A advert and no key for this MAC",
        model="pvvx",
        encrypted=True,
        uuid=normalize_uuid("181a"),
        payload=bytes.fromhex(vec["service_data_hex"]),
    )


def test_overrides_point_at_real_differences() -> None:
    """Each override changes the source's value (an override that changes nothing is noise)."""
    for index, (values, _reason) in OVERRIDES.items():
        source = LINES[index]["expected"]
        for name, value in values.items():
            assert source.get(name) != value, (index, name)
