"""GPIO devices from the config, on gpiozero with the pin factory given in
:class:`~gateway.adapters.Transports` (the board's own, or MockFactory pins in the demo)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from drivers.events import DeviceEvent
from drivers.gpio import ButtonAction, GpioBank, GpioSignal, PinSpec, StateChange
from gateway.adapters import GPIO_IDS, AdapterContext, GpioStimulus
from gateway.config import GpioDevice
from gateway.driver import DriverHealth, Health, Sink
from gateway.model import Command, CommandResult, CommandStatus, DeviceStatus, DeviceUpdate


def device_id(name: str) -> str:
    return GPIO_IDS.of(name)


class GpioDriver:
    name = "gpio"

    def __init__(
        self,
        devices: tuple[GpioDevice, ...],
        *,
        pin_factory: Any = None,
        stimulus: GpioStimulus | None = None,
    ) -> None:
        self._specs: list[PinSpec] = list(devices)  # a configured device is a PinSpec
        self._factory = pin_factory
        self._stimulus = stimulus
        self._bank: GpioBank | None = None
        self._health = DriverHealth(info={"devices": str(len(self._specs))})

    def owns(self, device_id: str) -> bool:
        return GPIO_IDS.owns(device_id) and any(
            s.name == GPIO_IDS.native(device_id) for s in self._specs
        )

    def health(self) -> DriverHealth:
        if self._bank is not None:
            self._health.counters = dict(self._bank.counters)
        return self._health

    async def run(self, sink: Sink) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signal: GpioSignal) -> None:
            dev = device_id(signal.name)
            if isinstance(signal, StateChange):
                sink.reading(dev, signal.metric, signal.value)
            elif isinstance(signal, ButtonAction):
                sink.event(dev, DeviceEvent("button", signal.action))

        bank = GpioBank(self._specs, on_signal, loop=loop, pin_factory=self._factory)
        try:
            bank.open()
        except Exception as exc:
            self._health.health = Health.DEGRADED
            self._health.reason = str(exc)
            raise
        self._bank = bank
        self._health.health = Health.OK
        self._health.reason = ""
        try:
            for spec in self._specs:
                sink.device(
                    DeviceUpdate(
                        id=device_id(spec.name),
                        transport=GPIO_IDS.transport,
                        model=f"gpio-{spec.kind.value}",
                        name=spec.name,
                        manufacturer="GPIO",
                        status=DeviceStatus.OK,
                        # inputs report on change only: silence is normal
                        sleepy=True,
                        attrs={"pin": str(spec.pin), "kind": spec.kind.value},
                    )
                )
            for signal in bank.initial_signals():
                on_signal(signal)
            if self._stimulus is not None:
                await self._stimulus(self._factory, self._specs)
            await asyncio.Event().wait()
        finally:
            self._bank = None
            with contextlib.suppress(Exception):
                bank.close()

    async def command(self, device_id: str, command: Command) -> CommandResult:
        name = GPIO_IDS.native(device_id)
        spec = next((s for s in self._specs if s.name == name), None)
        if spec is None:
            return CommandResult(CommandStatus.UNKNOWN_DEVICE, f"no device {device_id!r}")
        if not spec.kind.is_output:
            return CommandResult(
                CommandStatus.UNSUPPORTED, f"{device_id} is a {spec.kind.value}, not an output"
            )
        bank = self._bank
        if bank is None:
            return CommandResult(CommandStatus.UNREACHABLE, "gpio is not running")
        if command.action == "on":
            state = bank.set(name, True)
        elif command.action == "off":
            state = bank.set(name, False)
        elif command.action == "toggle":
            state = bank.toggle(name)
        elif command.action == "pulse" and command.seconds is not None:
            state = bank.pulse(name, command.seconds)
        else:
            return CommandResult(CommandStatus.INVALID, f"unsupported action {command.action}")
        return CommandResult(CommandStatus.OK, state={"switch": state})


def create(ctx: AdapterContext) -> GpioDriver | None:
    devices = ctx.config.gpio.devices
    if not devices:
        return None
    t = ctx.transports
    return GpioDriver(devices, pin_factory=t.pin_factory, stimulus=t.gpio_stimulus)
