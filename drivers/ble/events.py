"""The events each BLE model sends, as the decoders (:mod:`.mibeacon`, :mod:`.bthome`)
produce them (see :mod:`drivers.events`). ``tests/test_ble_events.py`` drives the decoders
through every input of the objects involved and checks both ways that this table is exact.
"""

from __future__ import annotations

from drivers.ble import bthome
from drivers.ble.mibeacon_events import LOCK_ACTIONS
from drivers.events import EventSpec, EventTable, buttons, merged

#: 0x1001 press types of most models, and 0x4A0C-0x4A0E (single/double/long objects).
PRESSES = ("single", "double", "long")
DIMMER_ACTIONS = (
    "single",
    "long",
    "rotate_left",
    "rotate_right",
    "rotate_left_pressed",
    "rotate_right_pressed",
)
#: Lock actions of 0x000B, and of 0x0008 on the DSL-C08.
LOCK_EVENTS = merged((a[2] for a in LOCK_ACTIONS.values()), ("lock_outside_the_door",))
FINGERPRINT_EVENTS = (
    "match_successful",
    "match_failed",
    "timeout",
    "low_quality_too_light_fuzzy",
    "insufficient_area",
    "skin_is_too_dry",
    "skin_is_too_wet",
)
#: Buttons of the Yeelight remotes (0x1001 button byte + 1).
REMOTE_BUTTONS = {
    "YLYK01YL": 6,  # on, off, sun, +, m, -
    "YLYK01YL-FANCL": 6,  # fan, light, wind speed, wind mode, brightness, colour temperature
    "YLYK01YL-VENFAN": 6,  # swing, power, 30 min, 60 min, strong, low
    "YLYB01YL-BHFRC": 9,  # heat, air exchange, dry, fan, swing, speed -, speed +, stop, light
}


def _buttons(actions: tuple[str, ...], n: int | None = None) -> tuple[EventSpec, ...]:
    return (EventSpec("button", actions, buttons(n) if n else (None,)),)


#: Models whose events are known before they send one.
MODELS: dict[str, tuple[EventSpec, ...]] = {
    "K9B-1BTN": _buttons(PRESSES),
    "K9B-2BTN": _buttons(PRESSES, 2),
    "K9B-3BTN": _buttons(PRESSES, 3),
    "K9BB-1BTN": _buttons(PRESSES),
    "XMWS01XS": _buttons(PRESSES, 2),
    "XMWXKG01YL": _buttons(PRESSES, 2),
    "KS1": _buttons(PRESSES, 4),
    "KS1BP": _buttons(PRESSES, 4),
    **{model: _buttons(PRESSES, n) for model, n in REMOTE_BUTTONS.items()},
    "XMMF01JQD": (EventSpec("cube", ("rotate_left", "rotate_right")),),
    "YLKG07YL/YLKG08YL": (
        EventSpec("dimmer", DIMMER_ACTIONS, properties=("presses", "duration", "steps")),
    ),
    # A BTHome device has as many buttons as it sends 0x3A objects: announced as they come.
    bthome.MODEL: (
        EventSpec("button", tuple(bthome.BUTTON_ACTIONS.values()), ()),
        EventSpec("dimmer", tuple(bthome.DIMMER_ACTIONS.values()), (), ("steps",)),
    ),
}

#: Any other MiBeacon model: what each event kind can carry.
BY_KIND: dict[str, EventSpec] = {
    "button": EventSpec("button", PRESSES, ()),
    "lock": EventSpec("lock", LOCK_EVENTS, ()),
    "fingerprint": EventSpec("fingerprint", FINGERPRINT_EVENTS, ()),
    "motion": EventSpec("motion", ("detected",), ()),
}

TABLE = EventTable(MODELS, BY_KIND)
