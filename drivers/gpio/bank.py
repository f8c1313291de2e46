"""A bank of configured GPIO devices owned by one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.errors import DriverError, NeedsHumanError

_LOGGER = logging.getLogger(__name__)


class PinKind(enum.StrEnum):
    BUTTON = "button"
    CONTACT = "contact"
    MOTION = "motion"
    RELAY = "relay"
    LED = "led"

    @property
    def is_output(self) -> bool:
        return self in (PinKind.RELAY, PinKind.LED)


#: The metric an input or output reports, per kind (buttons report events instead).
STATE_METRIC: dict[PinKind, str] = {
    PinKind.CONTACT: "opening",
    PinKind.MOTION: "motion",
    PinKind.RELAY: "switch",
    PinKind.LED: "switch",
}


@dataclass(frozen=True, slots=True)
class PinSpec:
    name: str
    kind: PinKind
    #: BCM pin number (GPIO17 is 17), or a gpiozero pin name like "BOARD11".
    pin: int | str
    #: Inputs: the pin reads high while active (contact open, PIR triggered, button pressed).
    #: Outputs: drive the pin high for "on".
    active_high: bool = True
    #: Inputs: use the internal pull-up (buttons to ground). None: floating.
    pull_up: bool | None = None
    bounce_s: float = 0.05
    #: Button: held this long is a long press.
    hold_s: float = 1.0
    #: Button: a second press within this window is a double press.
    multi_press_s: float = 0.4
    #: Motion: "no motion" is reported after this many quiet seconds.
    clear_s: float = 60.0
    #: Relay/led: state at start.
    initial: bool = False


@dataclass(frozen=True, slots=True)
class StateChange:
    name: str
    metric: str
    value: bool


@dataclass(frozen=True, slots=True)
class ButtonAction:
    name: str
    action: str  # single|double|triple|long|release


GpioSignal = StateChange | ButtonAction


class GpioError(DriverError):
    """Root of GPIO errors."""


class GpioConfigError(GpioError, NeedsHumanError):
    """A pin that does not exist, is used twice, or cannot be set up as asked."""


class _Input:
    """State of one input device, touched only on the loop thread."""

    def __init__(self, spec: PinSpec, device: Any) -> None:
        self.spec = spec
        self.device = device
        self.active = False
        self.clicks = 0
        self.held = False
        self.timer: asyncio.TimerHandle | None = None
        self.reported: bool | None = None


class GpioBank:
    """Opens gpiozero devices for ``specs`` and reports :data:`GpioSignal` values."""

    def __init__(
        self,
        specs: list[PinSpec],
        on_signal: Callable[[GpioSignal], None],
        *,
        loop: asyncio.AbstractEventLoop,
        pin_factory: Any = None,
    ) -> None:
        self._specs = specs
        self._on_signal = on_signal
        self._loop = loop
        self._factory = pin_factory
        self._inputs: dict[str, _Input] = {}
        self._outputs: dict[str, Any] = {}
        self._pulses: dict[str, asyncio.TimerHandle] = {}
        self.counters: dict[str, int] = {"edges": 0, "signals": 0}

    # --------------------------------------------------------------- lifecycle

    def open(self) -> None:
        """Create every gpiozero device; a bad pin is a :class:`GpioConfigError`."""
        from gpiozero import DigitalInputDevice, GPIOZeroError, OutputDevice

        try:
            for spec in self._specs:
                try:
                    if spec.kind.is_output:
                        self._outputs[spec.name] = OutputDevice(
                            spec.pin,
                            active_high=spec.active_high,
                            initial_value=spec.initial,
                            pin_factory=self._factory,
                        )
                        continue
                    dev = DigitalInputDevice(
                        spec.pin,
                        pull_up=spec.pull_up,
                        active_state=True if spec.pull_up is None else None,
                        bounce_time=spec.bounce_s or None,
                        pin_factory=self._factory,
                    )
                except (GPIOZeroError, ValueError, TypeError) as exc:
                    raise GpioConfigError(
                        f"gpio device {spec.name!r} on pin {spec.pin}: {exc}"
                    ) from None
                inp = _Input(spec, dev)
                self._inputs[spec.name] = inp
                dev.when_activated = self._threadsafe(spec.name)
                dev.when_deactivated = self._threadsafe(spec.name)
                inp.active = self._logical(inp)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for timer in self._pulses.values():
            timer.cancel()
        self._pulses.clear()
        for inp in self._inputs.values():
            if inp.timer is not None:
                inp.timer.cancel()
            inp.device.when_activated = None
            inp.device.when_deactivated = None
            inp.device.close()
        for out in self._outputs.values():
            out.close()
        self._inputs.clear()
        self._outputs.clear()

    def initial_signals(self) -> list[GpioSignal]:
        """The current state of every stateful device, reported once at start."""
        signals: list[GpioSignal] = []
        for name, inp in self._inputs.items():
            if inp.spec.kind is PinKind.CONTACT:
                inp.reported = inp.active
                signals.append(StateChange(name, "opening", inp.active))
            elif inp.spec.kind is PinKind.MOTION:
                inp.reported = inp.active
                signals.append(StateChange(name, "motion", inp.active))
        for name, out in self._outputs.items():
            signals.append(StateChange(name, "switch", bool(out.value)))
        return signals

    # --------------------------------------------------------------- outputs

    def outputs(self) -> list[str]:
        return list(self._outputs)

    def inputs(self) -> list[str]:
        return list(self._inputs)

    def state(self, name: str) -> bool:
        if name in self._outputs:
            return bool(self._outputs[name].value)
        return self._inputs[name].active

    def set(self, name: str, on: bool) -> bool:
        """Switch an output; cancels a running pulse. Returns the new state."""
        out = self._outputs[name]
        self._cancel_pulse(name)
        return self._drive(name, out, on)

    def toggle(self, name: str) -> bool:
        return self.set(name, not self.state(name))

    def pulse(self, name: str, seconds: float) -> bool:
        """On now, off ``seconds`` from now, whatever the state before (a door strike, a
        garage opener: a pulse never leaves the output on). A pulse while one is running
        extends it: the output goes off at the later of the two ends. Returns True (on)."""
        out = self._outputs[name]
        end = self._loop.time() + seconds
        running = self._pulses.get(name)
        if running is not None:
            end = max(end, running.when())
            running.cancel()
        self._pulses[name] = self._loop.call_at(end, self._pulse_end, name)
        return self._drive(name, out, True)

    def pulse_ends(self, name: str) -> float | None:
        """Loop time at which the running pulse of ``name`` switches it off, if any."""
        running = self._pulses.get(name)
        return running.when() if running is not None else None

    def _pulse_end(self, name: str) -> None:
        self._pulses.pop(name, None)
        out = self._outputs.get(name)
        if out is not None:
            self._drive(name, out, False)

    def _cancel_pulse(self, name: str) -> None:
        running = self._pulses.pop(name, None)
        if running is not None:
            running.cancel()

    def _drive(self, name: str, out: Any, on: bool) -> bool:
        before = bool(out.value)
        if on:
            out.on()
        else:
            out.off()
        now = bool(out.value)
        if now != before:
            self._emit(StateChange(name, "switch", now))
        return now

    # --------------------------------------------------------------- inputs

    def _threadsafe(self, name: str) -> Callable[[], None]:
        def callback() -> None:
            # on a gpiozero thread: touch nothing but the loop's thread-safe entry point
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._edge, name)

        return callback

    def _logical(self, inp: _Input) -> bool:
        raw_high = bool(inp.device.value)
        if inp.spec.pull_up is not None:
            # gpiozero made the device active-low with a pull-up: value 1 means pin low
            raw_high = raw_high != inp.spec.pull_up
        return raw_high == inp.spec.active_high

    def _edge(self, name: str) -> None:
        inp = self._inputs.get(name)
        if inp is None:
            return
        active = self._logical(inp)
        if active == inp.active:
            return
        inp.active = active
        self.counters["edges"] += 1
        kind = inp.spec.kind
        if kind is PinKind.CONTACT:
            inp.reported = active
            self._emit(StateChange(name, "opening", active))
        elif kind is PinKind.MOTION:
            self._motion_edge(inp, active)
        elif kind is PinKind.BUTTON:
            self._button_edge(inp, active)

    def _motion_edge(self, inp: _Input, active: bool) -> None:
        if active:
            if inp.timer is not None:
                inp.timer.cancel()
                inp.timer = None
            if inp.reported is not True:
                inp.reported = True
                self._emit(StateChange(inp.spec.name, "motion", True))
        else:
            inp.timer = self._loop.call_later(inp.spec.clear_s, self._motion_clear, inp)

    def _motion_clear(self, inp: _Input) -> None:
        inp.timer = None
        if not inp.active and inp.reported is not False:
            inp.reported = False
            self._emit(StateChange(inp.spec.name, "motion", False))

    def _button_edge(self, inp: _Input, pressed: bool) -> None:
        if inp.timer is not None:
            inp.timer.cancel()
            inp.timer = None
        if pressed:
            inp.held = False
            inp.timer = self._loop.call_later(inp.spec.hold_s, self._button_held, inp)
            return
        if inp.held:
            inp.held = False
            inp.clicks = 0
            self._emit(ButtonAction(inp.spec.name, "release"))
            return
        inp.clicks += 1
        if inp.clicks >= 3:
            self._button_done(inp)
        else:
            inp.timer = self._loop.call_later(inp.spec.multi_press_s, self._button_done, inp)

    def _button_held(self, inp: _Input) -> None:
        inp.timer = None
        if inp.active:
            inp.held = True
            inp.clicks = 0
            self._emit(ButtonAction(inp.spec.name, "long"))

    def _button_done(self, inp: _Input) -> None:
        inp.timer = None
        clicks, inp.clicks = inp.clicks, 0
        action = {1: "single", 2: "double"}.get(clicks, "triple")
        self._emit(ButtonAction(inp.spec.name, action))

    def _emit(self, signal: GpioSignal) -> None:
        self.counters["signals"] += 1
        try:
            self._on_signal(signal)
        except Exception:
            _LOGGER.exception("gpio signal consumer failed for %s", signal)
