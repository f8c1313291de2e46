"""Conformance with the peers' own test suites: every advert in xiaomi-ble's, bthome-ble's
and Theengs decoder's tests (tests/vectors/peers/, extracted by tools/peer_vectors/, see
its README), decoded here and compared with what the peer asserts.

Names differ between projects, so each peer's result is first put into this gateway's
vocabulary by the named rules below (docs/ble.md, "Conformance with the peers' test
suites", explains each). Whatever still differs must be listed, advert by advert, in the
table of that docs section with its reason; a listed difference that no longer occurs
fails too, so the table stays true.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.decoder import decode_advertisement, primary
from drivers.ble.downgrade import DowngradeGuard
from drivers.ble.errors import KeyFormatError
from drivers.ble.keys import BindKey, parse_key
from drivers.ble.types import Advertisement, Decoded, Failed, normalize_uuid
from tests.test_ble_vectors import translate_event

PEERS = Path(__file__).parent / "vectors" / "peers"
DOCS = Path(__file__).parents[1] / "docs" / "ble.md"

#: Service-data UUIDs this gateway decodes (drivers.ble.decoder.FORMATS).
OUR_UUIDS = {"fe95", "181a", "181c", "181e", "fcd2", "181d", "181b", "fd50"}


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (PEERS / name).read_text().splitlines()]


# --- our side ------------------------------------------------------------------------------


def ours(adv: Advertisement, key_hex: str | None) -> dict[str, Any]:
    """Our decode of one advert, with the downgrade guard the gateway applies."""
    keys: dict[str, BindKey] = {}
    if key_hex:
        try:
            keys[adv.address.upper()] = parse_key(key_hex)
        except KeyFormatError:
            return {"error": "key_refused"}
    outcome = primary(decode_advertisement(adv, keys))
    if outcome is None:
        return {"error": "not_ours"}
    if isinstance(outcome, Failed):
        return {"error": outcome.reason.value}
    assert isinstance(outcome, Decoded)
    if not DowngradeGuard().accept(outcome, keyed=bool(keys)):
        return {"error": "downgrade_rejected"}
    out: dict[str, Any] = {"values": dict(outcome.values)}
    out["events"] = [e.as_dict() for e in outcome.events]
    out["counter"] = outcome.counter
    return out


# --- xiaomi-ble and bthome-ble ------------------------------------------------------------

#: Peer name -> ours, per docs/metrics.md (rule "names").
_NAMES = {"moisture_binary": "water_leak", "power_binary": "power_on", "packet_id": None}
#: SJWS02LM's two probes (rule "names").
_SJWS02LM = {"bottom_submersion": "water_leak", "top_splash": "water_leak_2"}


def _peer_python(rec: dict[str, Any]) -> dict[str, Any]:
    alone = rec["alone"]
    model = (alone["devices"].get("None") or {}).get("model") or ""
    values: dict[str, Any] = {}
    for name, raw in alone["values"].items():
        if name in ("signal_strength", "packet_id"):
            continue  # rules "rssi" (the advert's RSSI) and "counter" (the frame counter)
        value = raw
        if name == "timestamp" and isinstance(raw, str):  # rule "timestamp"
            value = int(datetime.datetime.fromisoformat(raw).timestamp())
        if name == "charging_state" and isinstance(raw, str):  # rule "enum case"
            value = raw.lower()
        values[name] = value
    for peer_name, value in alone["binary_values"].items():
        name = _SJWS02LM.get(peer_name, peer_name) if model == "SJWS02LM" else peer_name
        values[_NAMES.get(f"{name}_binary", name) or name] = value
    events = [translate_event(e, model) for e in alone["events"]]
    return {"values": values, "events": events}


def _python_records(name: str) -> list[dict[str, Any]]:
    """One record per distinct (advert, key): a test that calls supported() then update()
    on the same advert, or several tests sharing one, count once (the first)."""
    seen: set[str] = set()
    out = []
    for rec in _lines(name):
        ident = json.dumps([rec["advert"], rec["bindkey_hex"]], sort_keys=True)
        if ident not in seen:
            seen.add(ident)
            out.append(rec)
    return out


PYTHON_PEERS = {"xiaomi-ble": "xiaomi_ble.jsonl", "bthome-ble": "bthome_ble.jsonl"}
PYTHON = [(peer, rec) for peer, name in PYTHON_PEERS.items() for rec in _python_records(name)]


def _advert_of(rec: dict[str, Any]) -> Advertisement:
    adv = rec["advert"]
    sd = {u: bytes.fromhex(h) for u, h in adv["service_data"].items()}
    return Advertisement(adv["address"], -60, sd, {}, adv["local_name"])


def _test_id(peer: str, rec: dict[str, Any]) -> str:
    source: str = rec["source"]
    return source.split("::", 1)[1]


# --- Theengs ------------------------------------------------------------------------------

#: Theengs key -> (our metric, factor).
_THEENGS = {
    "tempc": "temperature",
    "hum": "humidity",
    "batt": "battery",
    "volt": "voltage",
    "lux": "illuminance",
    "moi": "moisture",
    "fer": "conductivity",
    "for": "formaldehyde",
    "impedance": "impedance",
    "motion": "motion",
    "open": "opening",
    "rot": "rotation",
}
#: Keys that describe the device or the frame, not a reading (rule "descriptive").
_THEENGS_DESCRIPTIVE = {
    "brand", "model", "model_id", "type", "mac", "tempf", "acts", "cont", "track",
    "unit", "weighing_mode", "cipher", "ctr", "mic", "encr",
}  # fmt: skip
#: Theengs button codes (its BTHome decoder) -> our action; 0 = no press.
_THEENGS_BUTTON = {1: "single", 2: "double", 3: "triple", 9: "long", 11: "hold"}
LB = 0.45359237
#: A placeholder advertiser address for rows that give none (bleak always gives one).
NO_ADDRESS = "00:00:00:00:00:00"


def _theengs_data(row: dict[str, Any]) -> str | None:
    """The row's service data hex; None when it has none (two rows hold a placeholder
    MAC such as ``YYYYYYYYYYYY``: not an advert)."""
    adv = row["advert"]
    data = adv.get("servicedata", adv.get("data") if adv.get("kind") == "servicedata" else None)
    return data if data and re.fullmatch(r"(?:[0-9a-fA-F]{2})+", data) else None


def _theengs_uuid(row: dict[str, Any]) -> str | None:
    adv = row["advert"]
    if row["table"] == "test_servicedata":
        return "fe95"  # the table's rows are MiBeacon frames given without their UUID
    uuid: str | None = adv.get("servicedatauuid")
    if uuid is None:
        return None
    return uuid.lower().removeprefix("0x")


def _theengs_advert(row: dict[str, Any]) -> Advertisement | None:
    uuid = _theengs_uuid(row)
    adv = row["advert"]
    data = _theengs_data(row)
    if uuid not in OUR_UUIDS or data is None:
        return None
    address = adv.get("id") or row["expected"].get("mac") or NO_ADDRESS
    sd = {normalize_uuid(uuid): bytes.fromhex(data)}
    return Advertisement(address, -60, sd, {}, adv.get("name"))


def _peer_theengs(row: dict[str, Any]) -> dict[str, Any]:
    exp = row["expected"]
    if "encr" in exp:  # rule "encrypted": Theengs shows the cipher fields, we need a key
        return {"error": "no_key"}
    values: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    buttons = sorted(k for k in exp if re.fullmatch(r"button\d", k))
    for key, value in exp.items():
        if key in _THEENGS_DESCRIPTIVE or key == "packet" or key.startswith("button"):
            continue
        if key == "weight":  # rule "mass": kg whatever the scale's display unit
            values["mass"] = round(value * LB, 3) if exp.get("unit") == "lb" else value
            continue
        values[_THEENGS.get(key, key)] = value
    if exp.get("button"):
        events.append({"event": "button", "action": _THEENGS_BUTTON.get(exp["button"], "?")})
    for key in buttons:
        if exp[key]:
            action = _THEENGS_BUTTON.get(exp[key], "?")
            events.append({"event": "button", "action": action, "button": int(key[-1])})
    out: dict[str, Any] = {"values": values, "events": events}
    if "packet" in exp:
        out["counter"] = exp["packet"]
    return out


THEENGS = _lines("theengs.jsonl")


# --- comparison and the documented differences ----------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        # rule "binary": a peer's binary sensor may hold 0/1 instead of False/True
        return a in (0, 1) and b in (0, 1) and bool(a) is bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return bool(a == b)


def differences(peer: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """What differs, as short names: metric names, ``events``, ``counter``, ``error``."""
    # rule "nothing": the peer reports no reading for it (its parsers signal a refused
    # advert by returning nothing); we agree when we report none either
    peer_nothing = "error" not in peer and not peer["values"] and not peer["events"]
    if peer_nothing and ("error" in mine or (not mine["values"] and not mine["events"])):
        return []
    if "error" in peer or "error" in mine:
        return [] if peer.get("error") == mine.get("error") else ["error"]
    pv, mv = peer["values"], mine["values"]
    out = [
        name
        for name in sorted(set(pv) | set(mv))
        if name not in pv or name not in mv or not _same(pv[name], mv[name])
    ]
    if peer["events"] != mine["events"]:
        out.append("events")
    if "counter" in peer and peer["counter"] != mine.get("counter"):
        out.append("counter")
    return out


def documented() -> dict[tuple[str, str], tuple[str, str]]:
    """The table of docs/ble.md's conformance section: (peer, test) -> (difference, reason)."""
    text = DOCS.read_text()
    section = text.split("### Differences, advert by advert", 1)[1].split("\n## ", 1)[0]
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("peer", "---") or set(cells[0]) <= {"-"}:
            continue
        peer, tests, what, reason = cells
        for test in tests.split(","):
            key = (peer, test.strip().strip("`"))
            assert key not in table, f"listed twice: {key}"
            table[key] = (what, reason)
    return table


def observed() -> dict[tuple[str, str], list[str]]:
    """Every advert whose decoding differs from its peer's, by (peer, test id)."""
    found: dict[tuple[str, str], list[str]] = {}
    for peer, rec in PYTHON:
        diff = differences(_peer_python(rec), ours(_advert_of(rec), rec["bindkey_hex"]))
        if diff:
            key = (peer, _test_id(peer, rec))
            found[key] = sorted(set(found.get(key, [])) | set(diff))
    for row in THEENGS:
        adv = _theengs_advert(row)
        if adv is None:
            continue
        diff = differences(_peer_theengs(row), ours(adv, None))
        if diff:
            found[("theengs", f"{row['table']}[{row['row']}]")] = diff
    return found


def test_every_peer_advert_is_accounted_for() -> None:
    """The extraction holds what it should (a regenerated file that lost adverts fails)."""
    counts = Counter(peer for peer, _ in PYTHON)
    assert counts["xiaomi-ble"] >= 130 and counts["bthome-ble"] >= 130
    in_scope = [row for row in THEENGS if _theengs_advert(row) is not None]
    assert len(in_scope) >= 140
    for _peer, rec in PYTHON:
        assert rec["source"].startswith(
            ("Bluetooth-Devices/xiaomi-ble@", "Bluetooth-Devices/bthome-ble@")
        )
    assert all(r["source"].startswith("theengs/decoder@") for r in THEENGS)


def test_decodes_like_the_peers_or_the_difference_is_documented() -> None:
    found = observed()
    table = documented()
    undocumented = {k: v for k, v in found.items() if k not in table}
    assert not undocumented, "differences not in docs/ble.md:\n" + "\n".join(
        f"| {p} | `{t}` | {', '.join(d)} | ? |" for (p, t), d in sorted(undocumented.items())
    )
    stale = sorted(k for k in table if k not in found)
    assert not stale, f"docs/ble.md lists differences that no longer occur: {stale}"
    for key, names in found.items():
        what = table[key][0]
        for name in names:
            assert name in what, f"{key}: the docs row does not name {name!r}: {what}"
        assert table[key][1], f"{key}: no reason given"


def test_out_of_scope_theengs_rows_are_not_decoded_and_counted_in_the_docs() -> None:
    """Rows of formats we do not decode (manufacturer data, other UUIDs) must not produce
    readings by accident; the docs give their number."""
    out_of_scope = [row for row in THEENGS if _theengs_advert(row) is None]
    for row in out_of_scope:
        data = _theengs_data(row)
        uuid = _theengs_uuid(row)
        if data and uuid and len(uuid) == 4 and uuid != "0000":
            advert = Advertisement(NO_ADDRESS, -60, {normalize_uuid(uuid): bytes.fromhex(data)})
            assert decode_advertisement(advert, {}) == []
    match = re.search(r"(\d+) of Theengs' (\d+) rows", DOCS.read_text())
    assert match, "docs/ble.md must say how many Theengs rows are out of scope"
    assert (int(match.group(1)), int(match.group(2))) == (len(out_of_scope), len(THEENGS))


@pytest.mark.parametrize("peer", sorted(PYTHON_PEERS))
def test_peer_records_carry_their_provenance(peer: str) -> None:
    for _, rec in (p for p in PYTHON if p[0] == peer):
        assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}:tests/\S+::\S.*", rec["source"])
