"""The Zigbee driver's timing, one frozen value passed to the coordinator (tests shorten it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.supervisor import Timing
from drivers.timing import check_timing


@dataclass(frozen=True, slots=True)
class ZigbeeTiming:
    """Seconds (and counts) for every wait on the stick."""

    #: One SYS_PING of the probe; the watchdog allows three times this.
    ping_timeout: float = 1.0
    probe_attempts: int = 3
    #: Gap between the DTR/RTS steps of the bootloader skip (zigpy-znp: 150 ms).
    bootloader_toggle_s: float = 0.15
    #: After the bootloader's "run the application" byte.
    bootloader_wait_s: float = 1.0
    #: An SRSP (zigbee-herdsman waits 6 s).
    sreq_timeout: float = 6.0
    #: A callback that a request triggers (AF_DATA_CONFIRM has its own, below).
    callback_timeout: float = 30.0
    #: An incomplete MT frame still incomplete after this long (twice this at most) is
    #: malformed (a corrupted length byte): the framer resyncs, so the frames behind it are
    #: not held until the stick happens to send enough bytes. A whole frame takes 22 ms at
    #: 115200 Bd.
    frame_stall_s: float = 0.5
    reset_timeout: float = 15.0
    startup_timeout: float = 60.0
    formation_timeout: float = 60.0
    watchdog_interval: float = 30.0
    watchdog_misses: int = 2
    #: AF_DATA_CONFIRM after an AF_DATA_REQUEST (a sleepy device's expiry is ~7.7 s).
    confirm_timeout: float = 12.0
    #: How long the fast interview waits for the model of a new device.
    interview_timeout: float = 5.0
    #: Device table saves when it changed.
    save_interval: float = 60.0
    #: Backoff of :func:`drivers.zigbee.coordinator.supervise` (tools, bench, tests): the
    #: supervisor's Timing; in the gateway the service's supervisor restarts the
    #: coordinator's sessions.
    reconnect: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        check_timing(self)
