"""The per-model event tables (drivers/*/events.py) say exactly what the decoders send.

Each model's decoder is driven through every input of the objects that carry events (button
type, value and press type of MiBeacon 0x1001, the argument of 0x4A0C-0x4A0E and 0x4A13,
every code of BTHome 0x3A/0x3C, every value of the Zigbee attributes): every event produced
is declared (kind, action, button, property names), and every declared action and button is
produced by some input, so Home Assistant is told neither less nor more than the device sends.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from drivers.ble import bthome, mibeacon, mibeacon_encode
from drivers.ble import events as ble_events
from drivers.ble.products import PRODUCTS
from drivers.events import EventSpec, EventTable
from drivers.gpio import events as gpio_events
from drivers.zigbee import events as zigbee_events
from drivers.zigbee.zcl.interpret import Interpreter

MAC = "A4:C1:38:00:00:01"
#: (event, action, button, property names)
Seen = set[tuple[str, str, int | None, tuple[str, ...]]]

PID = {p.model: pid for pid, p in PRODUCTS.items()}
#: A model with no event table entry (its events come from BY_KIND).
PLAIN_MODEL = "LYWSD03MMC"

#: 0x1001 inputs: every press type, the button types and values that mean something.
BYTES = (*range(16), 127, 128, 200, 254, 255)
INPUTS_1001 = [bytes(x) for x in itertools.product(BYTES, (0, 1, 2, 127, 128, 254), range(8))]


def _mibeacon(model: str, objects: Iterable[tuple[int, bytes]]) -> Seen:
    seen: Seen = set()
    for n, (oid, data) in enumerate(objects):
        frame = mibeacon_encode.encode(
            product_id=PID[model], frame_counter=n & 0xFF, mac=MAC, objects=[(oid, data)]
        )
        for ev in mibeacon.decode(frame, MAC, None).events:
            seen.add((ev.event, ev.action, ev.button, tuple(k for k, _ in ev.properties)))
    return seen


def _mibeacon_buttons(model: str) -> Seen:
    objects = [(0x1001, d) for d in INPUTS_1001]
    objects += [(oid, bytes([a])) for oid in (0x4A0C, 0x4A0D, 0x4A0E, 0x4A13) for a in range(256)]
    return _mibeacon(model, objects)


def _declared(specs: Iterable[EventSpec]) -> Seen:
    """Every (event, action, button) a table declares; properties: each event's full set."""
    return {
        (s.event, a, b, s.properties)
        for s in specs
        for a in s.actions
        for b in s.buttons or (None,)
    }


def _check(table: EventTable, model: str, seen: Seen, exempt: int = 0) -> None:
    """``seen`` is covered by the table (and its properties declared); each declared action
    and button is seen. ``exempt``: buttons above this count are known decoder output that
    the table leaves to the by-kind fallback (a remote's button byte out of its range)."""
    for event, action, button, props in seen:
        if exempt and button is not None and button > exempt:
            continue
        spec = table.spec(model, event, button)
        assert spec is not None and spec.covers(event, action, button), (model, event, action)
        assert set(props) <= set(spec.properties), (model, event, props)
    fixed = [s for s in table.models.get(model, ()) if s.buttons]
    want = {(e, a, b) for e, a, b, _ in _declared(fixed)}
    assert want <= {(e, a, b) for e, a, b, _ in seen}, (model, want - {s[:3] for s in seen})


@pytest.mark.parametrize(
    "model", sorted(m for m in ble_events.MODELS if m != bthome.MODEL), ids=str
)
def test_mibeacon_models_send_what_their_table_declares(model: str) -> None:
    seen = _mibeacon_buttons(model)
    assert seen, model
    _check(ble_events.TABLE, model, seen, exempt=ble_events.REMOTE_BUTTONS.get(model, 0))


def test_remotes_number_their_buttons_from_the_button_byte() -> None:
    """The one deviation: a remote's button byte past its buttons still makes an event (a
    button the table does not list gets its own entity when it comes)."""
    seen = _mibeacon("YLYK01YL", [(0x1001, bytes([9, 0, 0]))])
    assert seen == {("button", "single", 10, ())}
    spec = ble_events.TABLE.spec("YLYK01YL", "button", 10)
    assert spec is not None and spec.actions == ble_events.PRESSES


def test_other_mibeacon_models_send_the_generic_kinds() -> None:
    buttons = _mibeacon_buttons(PLAIN_MODEL)
    assert {a for _, a, _, _ in buttons} == set(ble_events.PRESSES)
    lock = _mibeacon(PLAIN_MODEL, [(0x000B, bytes([b]) + bytes(8)) for b in range(256)])
    lock |= _mibeacon("DSL-C08", [(0x0008, bytes([b])) for b in range(1, 6)])
    finger = _mibeacon(PLAIN_MODEL, [(0x0006, bytes(4) + bytes([b])) for b in range(256)])
    motion = _mibeacon(PLAIN_MODEL, [(0x0003, bytes([b])) for b in range(256)])
    for kind, seen in (("button", buttons), ("lock", lock), ("fingerprint", finger)):
        assert {a for _, a, _, _ in seen} == set(ble_events.BY_KIND[kind].actions), kind
    assert {a for _, a, _, _ in motion} == {"detected"}
    for seen in (buttons, lock, finger, motion):
        for event, action, button, _ in seen:
            spec = ble_events.TABLE.spec(PLAIN_MODEL, event, button)
            assert spec is not None and spec.covers(event, action, button)


def test_bthome_buttons_and_dimmers() -> None:
    seen: Seen = set()
    objects = [bytes([0x3A, c]) for c in range(256)]
    objects += [bytes([0x3A, c, 0x3A, 1]) for c in (1, 4)]  # two buttons in one advert
    objects += [bytes([0x3C, c, s]) for c in range(256) for s in (1, 255)]
    for data in objects:
        decoded = bthome.decode_v2(bthome.encode_v2(data, mac=MAC), MAC, None)
        for ev in decoded.events:
            seen.add((ev.event, ev.action, ev.button, tuple(k for k, _ in ev.properties)))
    assert {(e, b) for e, _, b, _ in seen} == {
        ("button", None),
        ("button", 1),
        ("button", 2),
        ("dimmer", None),
    }
    declared = {s.event: s for s in ble_events.MODELS[bthome.MODEL]}
    for event, spec in declared.items():
        assert spec.buttons == ()  # whichever it sends
        assert {a for e, a, _, _ in seen if e == event} == set(spec.actions), event
    _check(ble_events.TABLE, bthome.MODEL, seen)


def _report(attr: int, type_id: int, value: bytes, tsn: int) -> bytes:
    """A ZCL Report Attributes frame (server to client, no default response)."""
    return bytes([0x18, tsn & 0xFF, 0x0A]) + attr.to_bytes(2, "little") + bytes([type_id]) + value


def _zigbee(model: str, reports: Iterable[tuple[int, int, bytes]]) -> Seen:
    it = Interpreter()
    seen: Seen = set()
    for n, (cluster, endpoint, frame) in enumerate(reports):
        for action, button in it.interpret(f"dev{n}", model, cluster, endpoint, frame).events:
            seen.add(("button", action, button, ()))
    return seen


ON_OFF, MULTISTATE = 0x0006, 0x0012


def test_zigbee_models_send_what_their_table_declares() -> None:
    switch = _zigbee(
        "lumi.sensor_switch.aq2",
        [(ON_OFF, 1, _report(0x0000, 0x10, bytes([b]), b)) for b in (0, 1)]
        + [(ON_OFF, 1, _report(0x8000, 0x20, bytes([v]), v)) for v in range(256)],
    )
    _check(zigbee_events.TABLE, "lumi.sensor_switch.aq2", switch)
    # the wall switch's button: one device, a sequence of values (hold, then the release)
    it, neutral = Interpreter(), Seen()
    for n, v in enumerate((1, 2, 0, 1, 0, 2, 1, 1)):
        frame = _report(0x0000, 0x10, bytes([v]) if v < 2 else b"\x02", n)
        if v == 2:
            frame = _report(0x0000, 0x20, b"\x02", n)
        for action, button in it.interpret("w", "lumi.ctrl_neutral1", ON_OFF, 4, frame).events:
            neutral.add(("button", action, button, ()))
    _check(zigbee_events.TABLE, "lumi.ctrl_neutral1", neutral)
    multi = _zigbee(
        "lumi.remote.b1acn01",
        [(MULTISTATE, 1, _report(0x0055, 0x21, v.to_bytes(2, "little"), v)) for v in range(256)],
    )
    assert {a for _, a, _, _ in multi} == set(zigbee_events.BY_KIND["button"].actions)
    _check(zigbee_events.TABLE, "lumi.remote.b1acn01", multi)


def test_gpio_button_actions_are_the_click_detectors() -> None:
    from drivers.gpio.bank import ButtonAction  # noqa: F401 - the type the actions belong to

    spec = gpio_events.TABLE.specs("gpio-button")
    assert spec == (EventSpec("button", gpio_events.BUTTON_ACTIONS),)
