"""GPIO driver on gpiozero's MockFactory: real gpiozero devices, real edge callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest

from drivers.gpio import ButtonAction, GpioBank, GpioSignal, PinKind, PinSpec, StateChange
from drivers.gpio.bank import GpioConfigError


class _Timings(TypedDict):
    bounce_s: float
    hold_s: float
    multi_press_s: float
    clear_s: float


FAST: _Timings = {"bounce_s": 0.0, "hold_s": 0.3, "multi_press_s": 0.15, "clear_s": 0.2}


async def _until(signals: list[GpioSignal], n: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while len(signals) < n:
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def opened(
    mock_pins: Any, *specs: PinSpec
) -> AsyncIterator[tuple[GpioBank, list[GpioSignal]]]:
    """An open bank of ``specs`` and the signals it reports; closed when the block ends."""
    signals: list[GpioSignal] = []
    bank = GpioBank(
        list(specs), signals.append, loop=asyncio.get_running_loop(), pin_factory=mock_pins
    )
    bank.open()
    try:
        yield bank, signals
    finally:
        bank.close()


async def test_contact_reports_opening_both_ways(mock_pins: Any) -> None:
    spec = PinSpec("door", PinKind.CONTACT, 27, active_high=True, pull_up=True, bounce_s=0.0)
    async with opened(mock_pins, spec) as (bank, signals):
        pin = mock_pins.pin(27)
        pin.drive_low()  # magnet at the reed switch: door closed
        await _until(signals, 1)
        pin.drive_high()
        await _until(signals, 2)
        assert signals == [
            StateChange("door", "opening", False),
            StateChange("door", "opening", True),
        ]
        assert bank.state("door") is True


@pytest.mark.parametrize(
    ("presses", "hold", "expected"),
    [
        (1, 0.02, ["single"]),
        (2, 0.02, ["double"]),
        (3, 0.02, ["triple"]),
        (1, 0.5, ["long", "release"]),
    ],
)
async def test_button_actions(
    mock_pins: Any, presses: int, hold: float, expected: list[str]
) -> None:
    spec = PinSpec("btn", PinKind.BUTTON, 17, active_high=False, pull_up=True, **FAST)
    async with opened(mock_pins, spec) as (_bank, signals):
        pin = mock_pins.pin(17)
        for _ in range(presses):
            pin.drive_low()
            await asyncio.sleep(hold)
            pin.drive_high()
            await asyncio.sleep(0.03)
        await _until(signals, len(expected))
        await asyncio.sleep(0.3)  # nothing more may follow
        assert signals == [ButtonAction("btn", a) for a in expected]


async def test_motion_clears_after_quiet_period_and_retriggers(mock_pins: Any) -> None:
    spec = PinSpec("pir", PinKind.MOTION, 22, **FAST)
    async with opened(mock_pins, spec) as (_bank, signals):
        pin = mock_pins.pin(22)
        pin.drive_high()
        await _until(signals, 1)
        pin.drive_low()
        await asyncio.sleep(0.05)
        pin.drive_high()  # re-trigger inside the clear window: no "false" in between
        await asyncio.sleep(0.05)
        pin.drive_low()
        await _until(signals, 2)
        assert signals == [StateChange("pir", "motion", True), StateChange("pir", "motion", False)]


async def test_relay_on_off_toggle_pulse_and_active_low(mock_pins: Any) -> None:
    spec = PinSpec("relay", PinKind.RELAY, 23, active_high=False, initial=False)
    async with opened(mock_pins, spec) as (bank, signals):
        pin = mock_pins.pin(23)
        assert pin.state == 1  # active-low relay, off: pin high
        assert bank.set("relay", True) is True
        assert pin.state == 0
        assert bank.toggle("relay") is False
        assert bank.pulse("relay", 0.05) is True
        await _until(signals, 4)
        assert signals == [StateChange("relay", "switch", v) for v in (True, False, True, False)]
        assert bank.set("relay", False) is False  # already off: no new signal
        assert len(signals) == 4


ON_THEN_OFF = [StateChange("strike", "switch", True), StateChange("strike", "switch", False)]


@pytest.mark.parametrize("before", [False, True])
async def test_pulse_is_on_then_off_whatever_the_state_before(mock_pins: Any, before: bool) -> None:
    # issue 14: pulse used to invert an output that was already on, leaving it on afterwards
    spec = PinSpec("strike", PinKind.RELAY, 23, initial=before)
    async with opened(mock_pins, spec) as (bank, signals):
        assert bank.pulse("strike", 0.05) is True
        assert bank.state("strike") is True  # on for the pulse, also when it was on
        await _until(signals, 1 if before else 2)
        assert signals == (ON_THEN_OFF[1:] if before else ON_THEN_OFF)
        assert bank.state("strike") is False
        assert bank.pulse_ends("strike") is None


async def test_second_pulse_extends_the_first(mock_pins: Any) -> None:
    # issue 14: `off; pulse 2; pulse 2` left the relay on for good (the second pulse
    # cancelled the first one's off-timer and inverted the output)
    spec = PinSpec("heater", PinKind.RELAY, 23)
    loop = asyncio.get_running_loop()
    async with opened(mock_pins, spec) as (bank, signals):
        bank.set("heater", False)
        bank.pulse("heater", 0.1)
        first_end = bank.pulse_ends("heater")
        assert first_end is not None
        assert bank.pulse("heater", 1.0) is True
        second_end = bank.pulse_ends("heater")
        assert second_end is not None and second_end > first_end
        while loop.time() < first_end + 0.1:
            await asyncio.sleep(0.02)
        assert bank.state("heater") is True  # past the first end: still on
        assert signals == [StateChange("heater", "switch", True)]
        await _until(signals, 2)
        assert signals == [StateChange("heater", "switch", v) for v in (True, False)]
        assert bank.pulse_ends("heater") is None


async def test_shorter_second_pulse_does_not_cut_the_first(mock_pins: Any) -> None:
    spec = PinSpec("strike", PinKind.RELAY, 23)
    async with opened(mock_pins, spec) as (bank, signals):
        bank.pulse("strike", 30.0)
        long_end = bank.pulse_ends("strike")
        bank.pulse("strike", 0.01)
        assert bank.pulse_ends("strike") == long_end
        assert signals == [StateChange("strike", "switch", True)]


async def test_switching_off_cancels_a_pulse(mock_pins: Any) -> None:
    spec = PinSpec("strike", PinKind.RELAY, 23)
    async with opened(mock_pins, spec) as (bank, signals):
        bank.pulse("strike", 0.05)
        assert bank.set("strike", False) is False
        assert bank.pulse_ends("strike") is None
        bank.set("strike", True)
        await asyncio.sleep(0.2)  # the cancelled pulse must not switch it off
        assert bank.state("strike") is True
        assert signals == [StateChange("strike", "switch", v) for v in (True, False, True)]


async def test_invalid_pin_is_a_config_error(mock_pins: Any) -> None:
    with pytest.raises(GpioConfigError, match="'ghost' on pin 999"):
        async with opened(mock_pins, PinSpec("ghost", PinKind.CONTACT, 999)):
            pass


async def test_pin_used_twice_is_a_config_error(mock_pins: Any) -> None:
    with pytest.raises(GpioConfigError, match="'b' on pin 5"):
        async with opened(
            mock_pins, PinSpec("a", PinKind.RELAY, 5), PinSpec("b", PinKind.CONTACT, 5)
        ):
            pass
    # the bank released what it had opened: the pin is free again
    async with opened(mock_pins, PinSpec("c", PinKind.RELAY, 5)):
        pass


async def test_callbacks_from_foreign_threads_land_on_the_loop(mock_pins: Any) -> None:
    spec = PinSpec("door", PinKind.CONTACT, 27, bounce_s=0.0)
    signals: list[GpioSignal] = []
    loop_thread: list[bool] = []

    def on_signal(sig: GpioSignal) -> None:
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        signals.append(sig)

    bank = GpioBank([spec], on_signal, loop=asyncio.get_running_loop(), pin_factory=mock_pins)
    bank.open()
    try:
        await asyncio.to_thread(mock_pins.pin(27).drive_high)
        await _until(signals, 1)
        assert loop_thread == [True]
    finally:
        bank.close()
