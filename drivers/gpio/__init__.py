"""GPIO devices on gpiozero: buttons, door/window contacts, PIR motion sensors, relays, LEDs.

gpiozero calls back on its own threads; :class:`GpioBank` hops every callback onto the
asyncio loop with ``call_soon_threadsafe`` and does all timing (multi-press, motion clear) on
the loop. Tests and the demo use gpiozero's own ``MockFactory``.
"""

from __future__ import annotations

from drivers.gpio.bank import (
    ButtonAction,
    GpioBank,
    GpioSignal,
    PinKind,
    PinSpec,
    StateChange,
)

__all__ = ["ButtonAction", "GpioBank", "GpioSignal", "PinKind", "PinSpec", "StateChange"]
