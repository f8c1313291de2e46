"""Simulated BLE scanners behind the same seam as the bleak wrapper: bleak-shaped device
and advertisement objects, a :class:`ReplayScanner` that plays a JSONL file (or a list) of
adverts at a given rate, and a :class:`FailingScanner` for start faults. They call
``callback(device, advertisement_data)`` with bleak-shaped objects, on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from drivers.aio import cancel_and_wait
from drivers.ble.jsonio import advertisement_from_json
from drivers.ble.scanner import DetectionCallback, Scanner
from drivers.ble.types import (
    Advertisement,
)
from drivers.errors import ParseError

#: Seconds between scheduling ticks of the simulators: the adverts due in a tick go out
#: together (keeps the simulator's own CPU low at any rate).
TICK = 0.05
#: At most this many adverts per loop turn: other tasks (the store writer) get to run.
CHUNK = 256


class FakeDevice(NamedTuple):
    """bleak's ``BLEDevice``: the fields a detection callback reads (a tuple: the
    simulators make one per advert)."""

    address: str
    name: str | None = None


def fake_device(address: str, name: str | None) -> FakeDevice:
    """``FakeDevice(address, name)`` built in one call."""
    device: FakeDevice = _new_tuple(FakeDevice, (address, name))
    return device


class _AdvertisementDataFields(NamedTuple):
    local_name: str | None
    rssi: int
    service_data: dict[str, bytes]
    manufacturer_data: dict[int, bytes]
    service_uuids: list[str]
    tx_power: int | None


class FakeAdvertisementData(_AdvertisementDataFields):
    """bleak's ``AdvertisementData``: the fields a detection callback reads. A tuple, as
    bleak's is (a ``NamedTuple``): the simulators make one per advert."""

    __slots__ = ()

    def __new__(
        cls,
        local_name: str | None,
        rssi: int,
        service_data: dict[str, bytes] | None = None,
        manufacturer_data: dict[int, bytes] | None = None,
        service_uuids: list[str] | None = None,
        tx_power: int | None = None,
    ) -> FakeAdvertisementData:
        fields = (
            local_name,
            rssi,
            {} if service_data is None else service_data,
            {} if manufacturer_data is None else manufacturer_data,
            [] if service_uuids is None else service_uuids,
            tx_power,
        )
        data: FakeAdvertisementData = _new_tuple(cls, fields)
        return data


_new_tuple: Any = tuple.__new__


def advertisement_data(
    local_name: str | None,
    rssi: int,
    service_data: dict[str, bytes],
    manufacturer_data: dict[int, bytes],
    service_uuids: list[str],
) -> FakeAdvertisementData:
    """``FakeAdvertisementData(...)`` built in one call (per advert in the simulators)."""
    data: FakeAdvertisementData = _new_tuple(
        FakeAdvertisementData,
        (local_name, rssi, service_data, manufacturer_data, service_uuids, None),
    )
    return data


def bleak_shaped(adv: Advertisement) -> tuple[FakeDevice, FakeAdvertisementData]:
    data = advertisement_data(
        adv.local_name,
        adv.rssi if adv.rssi is not None else -70,
        dict(adv.service_data),
        dict(adv.manufacturer_data),
        list(adv.service_data),
    )
    return fake_device(adv.address, adv.local_name), data


def load_jsonl(path: Path) -> list[Advertisement]:
    """Adverts of a JSONL file (``migw decode ble`` input lines); bad lines are skipped."""
    out: list[Advertisement] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        with contextlib.suppress(ValueError, ParseError):  # bad JSON, bad fields
            out.append(advertisement_from_json(json.loads(line)))
    return out


class _Paced:
    """Calls ``emit(n)`` so that ``rate`` items per second go out on average."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self._clock = clock

    async def run(self, emit: Callable[[int], bool]) -> None:
        start = self._clock()
        sent = 0
        while True:
            due = int((self._clock() - start) * self.rate) + 1 - sent
            due = min(due, CHUNK)  # bounded bursts; the loop turns between them
            if due > 0:
                if not emit(due):
                    return
                sent += due
            # Behind (a burst was cut at CHUNK): the next turn at once. Else one tick: what
            # fell due meanwhile goes out together, as a radio's adverts reach the host in
            # bursts; one loop turn per advert would make the simulator cost more than the
            # gateway it feeds.
            behind = (self._clock() - start) * self.rate - sent >= 1
            await asyncio.sleep(0 if behind else TICK)


class _TaskScanner:
    """start() spawns the producer task; stop() cancels and awaits it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.started = 0

    async def _produce(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("scanner already started")
        self.started += 1
        self._task = asyncio.create_task(self._produce(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


class ReplayScanner(_TaskScanner):
    """Plays adverts at ``rate`` per second (optionally looping) to the detection callback."""

    def __init__(
        self,
        callback: DetectionCallback,
        adverts: Sequence[Advertisement | tuple[FakeDevice, FakeAdvertisementData]],
        *,
        rate: float = 100.0,
        loop: bool = False,
    ) -> None:
        super().__init__("ble-replay")
        self._callback = callback
        # an Advertisement is a tuple too: test for it, not for the (device, data) pair
        self._items = [bleak_shaped(a) if isinstance(a, Advertisement) else a for a in adverts]
        self._rate = rate
        self._loop = loop
        self.sent = 0
        self.done = asyncio.Event()

    async def _produce(self) -> None:
        items = self._items
        if not items:
            self.done.set()
            return
        pos = 0

        def emit(n: int) -> bool:
            nonlocal pos
            for _ in range(n):
                if pos >= len(items):
                    if not self._loop:
                        self.done.set()
                        return False
                    pos = 0
                device, data = items[pos]
                pos += 1
                self.sent += 1
                self._callback(device, data)
            return True

        await _Paced(self._rate).run(emit)


def replay_factory(
    adverts: Sequence[Advertisement] | Path, *, rate: float = 100.0, loop: bool = False
) -> Callable[[DetectionCallback], ReplayScanner]:
    loaded = load_jsonl(adverts) if isinstance(adverts, Path) else list(adverts)
    items = [bleak_shaped(a) for a in loaded]  # shaped once, replayed many times

    def factory(callback: DetectionCallback) -> ReplayScanner:
        return ReplayScanner(callback, items, rate=rate, loop=loop)

    return factory


class FailingScanner:
    """A scanner whose start() raises ``errors`` in turn (then delegates to ``then``).

    For fault injection at the transport boundary: pass bleak's own exception types.
    """

    def __init__(self, errors: list[BaseException], then: Scanner | None = None) -> None:
        self._errors = errors
        self._then = then

    async def start(self) -> None:
        if self._errors:
            raise self._errors.pop(0)
        if self._then is not None:
            await self._then.start()

    async def stop(self) -> None:
        if self._then is not None:
            await self._then.stop()
