"""The events GPIO inputs send (see :mod:`drivers.events`): a button wired to a pin."""

from __future__ import annotations

from drivers.events import EventSpec, EventTable

#: The click detector of :mod:`drivers.gpio.bank` (``ButtonAction``).
BUTTON_ACTIONS = ("single", "double", "triple", "long", "release")

MODELS: dict[str, tuple[EventSpec, ...]] = {
    "gpio-button": (EventSpec("button", BUTTON_ACTIONS),),
}

TABLE = EventTable(MODELS, {"button": EventSpec("button", BUTTON_ACTIONS, ())})
