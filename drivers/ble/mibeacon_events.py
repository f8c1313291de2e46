"""MiBeacon objects that fire events (buttons, dimmer, cube, locks, fingerprint, motion).

The decoder signature shared with :mod:`drivers.ble.mibeacon_objects`: ``(data, values,
model)``; a decoder writes readings into ``values`` and returns the events the object
fires (None when it fires none). ``model`` is the product's model: several objects mean
different things on different models, in the small tables here.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.ble.types import BleEvent, Value

#: Events an object fired (None: none). A tuple, built only when an object fires one.
Events = tuple[BleEvent, ...] | None
#: One object decoder: ``(data, values, model) -> events``.
Decoder = Callable[[bytes, dict[str, Value], str], Events]


def _u(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _ev(event: str, action: str, button: int | None = None, **props: int) -> Events:
    return (BleEvent(event, action, button, tuple(props.items())),)


_FINGERPRINT_RESULTS = {
    0: "match_successful",
    1: "match_failed",
    2: "timeout",
    3: "low_quality_too_light_fuzzy",
    4: "insufficient_area",
    5: "skin_is_too_dry",
    6: "skin_is_too_wet",
}


def fingerprint(data: bytes, values: dict[str, Value], model: str) -> Events:
    values["key_id"] = _u(data[0:4])
    values["fingerprint"] = data[4] == 0
    result = _FINGERPRINT_RESULTS.get(data[4])
    return None if result is None else _ev("fingerprint", result)


def armed(data: bytes, values: dict[str, Value], model: str) -> Events:
    is_armed = (data[0] ^ 1) > 0
    values["armed"] = is_armed
    if model != "DSL-C08":
        return None
    # lifting the handle outside sends this object
    values["lock"] = is_armed
    values["lock_method"] = "manual"
    return _ev("lock", "lock_outside_the_door")


#: 0x000B lock action (low nibble) -> (lock kind, unlocked, event action).
LOCK_ACTIONS: dict[int, tuple[str, bool, str]] = {
    0b0000: ("lock", True, "unlock_outside_the_door"),
    0b0001: ("lock", False, "locked"),
    0b0010: ("antilock", False, "turn_on_antilock"),
    0b0011: ("antilock", True, "release_the_antilock"),
    0b0100: ("lock", True, "unlock_inside_the_door"),
    0b0101: ("lock", False, "lock_inside_the_door"),
    0b0110: ("childlock", False, "turn_on_child_lock"),
    0b0111: ("childlock", True, "turn_off_child_lock"),
    0b1000: ("lock", False, "lock_outside_the_door"),
    0b1111: ("lock", True, "abnormal"),
}
#: 0x000B lock method (high nibble).
LOCK_METHODS: dict[int, str] = {
    0b0000: "bluetooth",
    0b0001: "password",
    0b0010: "biometrics",
    0b0011: "key_method",
    0b0100: "turntable_method",
    0b0101: "nfc_method",
    0b0110: "one_time_password",
    0b0111: "two_step_verification",
    0b1000: "coercion_method",
    0b1001: "homekit",
    0b1010: "manual",
    0b1011: "automatic",
    0b1111: "abnormal",
}


def lock(data: bytes, values: dict[str, Value], model: str) -> Events:
    """0x000B: action/method byte, key id (u32), timestamp (u32). ``lock`` true = unlocked."""
    action = LOCK_ACTIONS.get(data[0] & 0x0F)
    method = LOCK_METHODS.get(data[0] >> 4)
    if action is None or method is None:
        return None
    kind, unlocked, name = action
    values[kind] = unlocked
    values["lock_method"] = method
    values["key_id"] = _u(data[1:5])
    return _ev("lock", name)


# --- buttons ---------------------------------------------------------------------------------

#: Press-type byte of 0x1001 for most models.
_PRESS_1001 = {0: "single", 1: "double", 2: "long", 5: "single", 6: "long"}
#: Aqara K9B wall switches swap long and double.
_PRESS_K9B = {0: "single", 1: "long", 2: "double"}
#: K9B button-type byte -> buttons pressed together (1 = left, 2 = middle/right, 3 = right).
_K9B_BUTTONS: dict[str, dict[int, tuple[int | None, ...]]] = {
    "K9B-1BTN": {0: (None,)},
    "K9B-2BTN": {0: (1,), 1: (2,), 2: (1, 2)},
    "K9B-3BTN": {0: (1,), 1: (2,), 2: (3,), 3: (1, 2), 4: (2, 3), 5: (1, 3), 6: (1, 2, 3)},
}
#: Remotes whose button-type byte is a button number (button = byte + 1).
_REMOTES = frozenset({"YLYK01YL", "YLYK01YL-FANCL", "YLYK01YL-VENFAN", "YLYB01YL-BHFRC"})


def _buttons(action: str, buttons: tuple[int | None, ...]) -> Events:
    """One ``button`` event per button pressed together."""
    return tuple(BleEvent("button", action, button) for button in buttons) or None


def _dimmer(btype: int, value: int, press: int) -> Events:
    """0x1001 on YLKG07YL/YLKG08YL: press 3 = click (btype 0) or hold (1), 4 = rotation."""
    if press == 3 and btype == 0:
        return _ev("dimmer", "single", presses=value)
    if press == 3 and btype == 1:
        return _ev("dimmer", "long", duration=value)
    if press == 4 and btype == 0:
        if value <= 127:
            return _ev("dimmer", "rotate_right", steps=value)
        return _ev("dimmer", "rotate_left", steps=256 - value)
    if press == 4:
        if btype <= 127:
            return _ev("dimmer", "rotate_right_pressed", steps=btype)
        return _ev("dimmer", "rotate_left_pressed", steps=256 - btype)
    return None


def button_1001(data: bytes, values: dict[str, Value], model: str) -> Events:
    """0x1001: button type/index, value, press type. Its meaning varies by model."""
    btype, value, press = data[0], data[1], data[2]
    if model in _K9B_BUTTONS:
        action = _PRESS_K9B.get(press)
        if action is None:
            return None
        return _buttons(action, _K9B_BUTTONS[model].get(btype, ()))
    if model == "XMMF01JQD":  # Rubik's cube
        if btype in (0, 1):
            return _ev("cube", "rotate_right" if btype == 0 else "rotate_left")
        return None
    if model == "YLKG07YL/YLKG08YL":
        return _dimmer(btype, value, press)
    if model == "YLYK01YL" and btype in (0, 1):  # the "on"/"off" buttons: the lamp's state
        values["power_on"] = btype == 0
    action = _PRESS_1001.get(press)
    if action is None:
        return None
    return _ev("button", action, btype + 1 if model in _REMOTES else None)


#: Models whose 0x4E0C-0x4E0E and 0x560C-0x560E press objects are buttons; others (a stray
#: object on a thermometer) fire nothing, as in xiaomi-ble
#: (test_Xiaomi_button_object_ignored_for_non_button_device).
BUTTONS_4E0X = frozenset({"XMWXKG01YL", "K9BB-1BTN", "XMWXKG01LM"})
BUTTONS_560X = frozenset({"KS1", "KS1BP", "KS2BB"})
#: XMWXKG01YL press argument -> buttons (1 left, 2 right, 3 both).
_XMWXKG01YL_BUTTONS: dict[int, tuple[int | None, ...]] = {1: (1,), 2: (2,), 3: (1, 2)}
#: K9BB-1BTN: the argument is the press type.
_K9BB_PRESS = {1: "single", 8: "long", 15: "double"}


def miot_button(action: str, models: frozenset[str] | None = None) -> Decoder:
    """0x4A0C-0x4A0E, 0x4E0C-0x4E0E, 0x560C-0x560E: single/double/long press objects
    (``models``: the only models they are buttons of; None: any)."""

    def decode(data: bytes, values: dict[str, Value], model: str) -> Events:
        arg = data[0] if data else None
        if models is not None and model not in models:
            return None
        if model == "XMWS01XS":  # 0 left, 1 right
            return _ev("button", action, arg + 1) if arg in (0, 1) and arg is not None else None
        if model == "XMWXKG01YL":
            return _buttons(action, _XMWXKG01YL_BUTTONS.get(arg or 0, ()))
        if model == "K9BB-1BTN":
            kind = _K9BB_PRESS.get(arg or 0)
            return None if kind is None else _ev("button", kind)
        if model in ("KS1", "KS1BP"):  # 1 left, 2 mid-left, 3 mid-right, 4 right
            return _ev("button", action, arg) if arg in (1, 2, 3, 4) else None
        return _ev("button", action)

    return decode


def button_4a13(data: bytes, values: dict[str, Value], model: str) -> Events:
    return _ev("button", "single") if data[0] == 1 else None


def motion_event(data: bytes, values: dict[str, Value], model: str) -> Events:
    return _ev("motion", "detected")
