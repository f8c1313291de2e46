"""What the coordinator's parts share, as one value instead of the same arguments to each."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from drivers.zigbee.api import ZnpApi
from drivers.zigbee.devices import DeviceTable
from drivers.zigbee.timing import ZigbeeTiming


@dataclass(frozen=True, slots=True)
class CoordinatorContext:
    """The coordinator's state that :class:`~drivers.zigbee.control.Control` and
    :class:`~drivers.zigbee.dispatch.Dispatcher` work on. The coordinator owns each piece;
    ``require_api`` gives the current session's link (a TransientError between sessions)
    and ``save_table`` writes the device table when it changed (errors logged)."""

    table: DeviceTable
    counters: MutableMapping[str, int]
    timing: ZigbeeTiming
    require_api: Callable[[], ZnpApi]
    save_table: Callable[[], None]
