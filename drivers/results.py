"""What a command to a device came to: one value that every driver returns and the gateway
passes on (MQTT command acks, the API, automations). Delivery failures are results, never
raises."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: A metric value as the device sent it, scaled to the unit of gateway.metrics.
Value = float | int | bool | str


class CommandStatus(enum.StrEnum):
    OK = "ok"
    UNKNOWN_DEVICE = "unknown_device"
    UNSUPPORTED = "unsupported"  # the device cannot do that
    INVALID = "invalid"  # malformed command
    UNREACHABLE = "unreachable"  # sleepy/no route/no ack: soft failure
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: CommandStatus
    detail: str = ""
    #: What the device reports its state is now (e.g. ``{"switch": True}``).
    state: dict[str, Value] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is CommandStatus.OK
