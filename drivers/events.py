"""Events: one as a driver reports it (:class:`DeviceEvent`), and what a device model can send,
declared per driver family.

Each family (``drivers/ble/events.py``, ``drivers/zigbee/events.py``,
``drivers/gpio/events.py``) declares, per model, the event kinds its decoder emits for that
model, the buttons they name and every action they can carry. A consumer (Home Assistant
discovery) announces exactly these: an automation can be written before the first press, and
nothing the decoder sends is unknown to it. Each family's test drives its decoder through
every input of the objects involved and checks that the table is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A button/dimmer/... event a device sent: ``event`` kind, ``action`` and optional button
    number. Every family reports this one type (BLE decoders as ``BleEvent``; the gateway's
    drivers hand it to their sink)."""

    event: str  # "button", "dimmer", "cube", "motion", "fingerprint", "lock", "door"
    action: str  # single|double|triple|long|hold|release|rotate_left|...
    button: int | None = None
    #: Extra integers the event carries (dimmer ``steps``, ``presses``, ``duration``).
    properties: tuple[tuple[str, int], ...] = ()

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"event": self.event, "action": self.action}
        if self.button is not None:
            out["button"] = self.button
        out.update(dict(self.properties))
        return out


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One kind of event a model sends: ``("button", ("single", "double"), (1, 2))``."""

    event: str  # "button", "dimmer", "cube", "lock", ...
    actions: tuple[str, ...]
    #: The button numbers the events carry; ``(None,)`` for a device without numbered
    #: buttons; ``()`` for "whichever it sends" (known only when an event comes).
    buttons: tuple[int | None, ...] = (None,)
    #: Integer properties the events carry beside the action (a dimmer's ``steps``).
    properties: tuple[str, ...] = ()

    def covers(self, event: str, action: str, button: int | None) -> bool:
        return event == self.event and action in self.actions and self.has_button(button)

    def has_button(self, button: int | None) -> bool:
        return not self.buttons or button in self.buttons


@dataclass(frozen=True, slots=True)
class EventTable:
    """A family's declarations: per model, and per event kind for models not listed (a
    BTHome device says what it is only by what it sends)."""

    models: Mapping[str, tuple[EventSpec, ...]]
    by_kind: Mapping[str, EventSpec]

    def specs(self, model: str) -> tuple[EventSpec, ...]:
        """The events ``model`` is known to send with their buttons (announced up front)."""
        return tuple(s for s in self.models.get(model, ()) if s.buttons)

    def spec(self, model: str, event: str, button: int | None) -> EventSpec | None:
        """The declaration covering an event of this kind and button, narrowed to that
        button: the model's, else what the kind can carry; None when nothing declares it."""
        found = [s for s in self.models.get(model, ()) if s.event == event]
        if event in self.by_kind:
            found.append(self.by_kind[event])
        for spec in found:
            if spec.has_button(button):
                return EventSpec(spec.event, spec.actions, (button,), spec.properties)
        return None


def buttons(n: int) -> tuple[int, ...]:
    return tuple(range(1, n + 1))


def merged(*groups: Iterable[str]) -> tuple[str, ...]:
    """Actions of several groups, first occurrence first, without repeats."""
    return tuple(dict.fromkeys(a for g in groups for a in g))
