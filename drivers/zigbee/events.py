"""The events each Zigbee model sends, as :mod:`drivers.zigbee.zcl.interpret` produces them
(see :mod:`drivers.events`). ``tests/test_zigbee_events.py`` drives the interpreter through
every value of the attributes involved and checks both ways that this table is exact.
"""

from __future__ import annotations

from drivers.events import EventSpec, EventTable, merged
from drivers.zigbee.zcl.interpret import CLICK_COUNT_ACTIONS, MULTISTATE_ACTIONS, NEUTRAL1_BUTTON

#: Every Xiaomi button report names button 1 (the interpreter does not tell buttons apart).
MODELS: dict[str, tuple[EventSpec, ...]] = {
    # On/Off 0x0000 is a single click, 0x8000 counts the clicks.
    "lumi.sensor_switch.aq2": (
        EventSpec("button", merged(("single",), CLICK_COUNT_ACTIONS.values()), (1,)),
    ),
    # Endpoint 4 On/Off: hold, then the next "single" is the release.
    "lumi.ctrl_neutral1": (
        EventSpec("button", merged(NEUTRAL1_BUTTON.values(), ("release",)), (1,)),
    ),
}

#: Any other model: Multistate Input present value (Aqara remotes and switches).
BY_KIND: dict[str, EventSpec] = {
    "button": EventSpec("button", tuple(MULTISTATE_ACTIONS.values()), ()),
}

TABLE = EventTable(MODELS, BY_KIND)
