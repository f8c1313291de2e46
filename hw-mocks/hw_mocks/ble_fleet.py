"""A synthetic fleet of N virtual sensors of mixed kinds (MiBeacon plain and encrypted,
pvvx, BTHome v2 plain and encrypted, a sleepy door sensor and a button) producing valid,
changing adverts; each frame is repeated like real sensors do. Its bind keys are in
:attr:`SyntheticFleet.keys` (hex per MAC) for the gateway's demo mode; :class:`FleetScanner`
puts it behind the scanner seam.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivers.ble import atc, bthome, mibeacon_encode
from drivers.ble.keys import BindKey
from drivers.ble.scanner import DetectionCallback
from drivers.ble.types import (
    UUID_ATC,
    UUID_BTHOME_V2,
    UUID_MIBEACON,
    Advertisement,
)
from hw_mocks.ble_replay import (
    FakeAdvertisementData,
    FakeDevice,
    _Paced,
    _TaskScanner,
    advertisement_data,
    fake_device,
)

KINDS = (
    "mibeacon",  # LYWSD03MMC, MiBeacon v3 plain (temperature + humidity, battery)
    "mibeacon_encrypted",  # LYWSD03MMC stock firmware, MiBeacon v5 AES-CCM
    "pvvx",  # pvvx custom format on 0x181A
    "bthome",  # BTHome v2 plain with packet id
    "bthome_encrypted",  # BTHome v2 encrypted
    "door",  # MCCGQ02HL door sensor, MiBeacon v5 encrypted, sleepy
    "button",  # BTHome v2 button (Shelly BLU Button style)
    "dimmer",  # YLKG07YL dimmer knob, MiBeacon v3: presses and rotations with steps
    "cube",  # XMMF01JQD Magic Cube, MiBeacon v3: rotations
    "switch2",  # K9B-2BTN double wall switch, MiBeacon v3: buttons 1, 2 and both
)
#: MiBeacon 0x1001 (button type, value, press type) per kind, and its product id.
_BUTTON_1001 = {
    "dimmer": (0x03B6, ((0, 1, 3), (0, 2, 4), (0, 254, 4), (0, 3, 3))),
    "cube": (0x04E1, ((0, 0, 0), (1, 0, 0))),
    "switch2": (0x1569, ((0, 0, 0), (1, 0, 2), (2, 0, 1), (1, 0, 0))),
}


def demo_key(index: int) -> str:
    """A deterministic 32-hex bind key for virtual sensor ``index`` (demo only)."""
    return hashlib.sha256(f"migw-demo-ble-{index}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class VirtualSensor:
    index: int
    kind: str
    mac: str
    key: BindKey | None
    rng: random.Random
    name: str
    temperature: float = 21.0
    humidity: float = 45.0
    battery: int = 90
    counter: int = 0
    opened: bool = False
    repeats_left: int = 0
    frame: bytes = b""
    uuid: str = ""

    def _new_frame(self) -> None:
        self.counter += 1
        self.temperature = round(
            min(35.0, max(5.0, self.temperature + self.rng.uniform(-0.2, 0.2))), 2
        )
        self.humidity = round(min(95.0, max(10.0, self.humidity + self.rng.uniform(-0.5, 0.5))), 2)
        if self.rng.random() < 0.01:
            self.battery = max(1, self.battery - 1)
        k = self.kind
        if k in ("mibeacon", "mibeacon_encrypted"):
            t = round(self.temperature * 10)
            h = round(self.humidity * 10)
            objects = [(0x100D, t.to_bytes(2, "little", signed=True) + h.to_bytes(2, "little"))]
            if self.counter % 10 == 0:
                objects = [(0x100A, bytes([self.battery]))]
            enc = k == "mibeacon_encrypted"
            self.uuid = UUID_MIBEACON
            self.frame = mibeacon_encode.encode(
                product_id=0x055B,
                frame_counter=self.counter,
                mac=self.mac,
                objects=objects,
                version=5 if enc else 3,
                key=self.key if enc else None,
                ext_counter=self.counter >> 8,
            )
        elif k == "door":
            self.opened = not self.opened
            self.uuid = UUID_MIBEACON
            self.frame = mibeacon_encode.encode(
                product_id=0x098B,
                frame_counter=self.counter,
                mac=self.mac,
                version=5,
                objects=[(0x1019, b"\x00" if self.opened else b"\x01")],
                key=self.key,
                ext_counter=self.counter >> 8,
            )
        elif k == "pvvx":
            self.uuid = UUID_ATC
            self.frame = atc.encode_pvvx(
                self.mac,
                self.temperature,
                self.humidity,
                2900 + self.battery,
                self.battery,
                self.counter,
            )
        elif k in ("bthome", "bthome_encrypted"):
            payload = (
                bytes([0x00, self.counter & 0xFF])
                + bthome.encode_number(0x01, self.battery)
                + bthome.encode_number(0x02, self.temperature)
                + bthome.encode_number(0x03, self.humidity)
            )
            enc = k == "bthome_encrypted"
            self.uuid = UUID_BTHOME_V2
            self.frame = bthome.encode_v2(
                payload, mac=self.mac, key=self.key if enc else None, counter=self.counter
            )
        elif k in _BUTTON_1001:
            product_id, presses = _BUTTON_1001[k]
            self.uuid = UUID_MIBEACON
            self.frame = mibeacon_encode.encode(
                product_id=product_id,
                frame_counter=self.counter,
                mac=self.mac,
                objects=[(0x1001, bytes(presses[self.counter % len(presses)]))],
                version=3,
            )
        else:  # button
            press = self.rng.choice((0x01, 0x01, 0x02, 0x04))
            payload = bytes([0x00, self.counter & 0xFF, 0x01, self.battery, 0x3A, press])
            self.uuid = UUID_BTHOME_V2
            self.frame = bthome.encode_v2(payload, mac=self.mac, trigger=True)

    def next_advert(self, repeats: int) -> Advertisement:
        if self.repeats_left <= 0:
            self._new_frame()
            self.repeats_left = repeats
        self.repeats_left -= 1
        return Advertisement(self.mac, self._rssi(), {self.uuid: self.frame}, {}, self.name)

    def next_detection(self, repeats: int) -> tuple[FakeDevice, FakeAdvertisementData]:
        """``bleak_shaped(self.next_advert(repeats))``, the same values, made directly
        (what the fleet scanner sends per advert). Nothing is kept per sensor for it: the
        fleet runs in the gateway's process, whose peak RSS the demo measures."""
        if self.repeats_left <= 0:
            self._new_frame()
            self.repeats_left = repeats
        self.repeats_left -= 1
        uuid = self.uuid
        data = advertisement_data(self.name, self._rssi(), {uuid: self.frame}, {}, [uuid])
        return fake_device(self.mac, self.name), data

    def _rssi(self) -> int:
        """``-50 - rng.randrange(40)``: the same draw (randrange's rejection sampling on
        6 random bits), without randrange's argument checks."""
        bits = self.rng.getrandbits
        r = bits(6)
        while r >= 40:
            r = bits(6)
        return -50 - r


class SyntheticFleet:
    """N virtual sensors of mixed kinds; see :data:`KINDS` (round robin over the kinds)."""

    def __init__(
        self,
        devices: int,
        *,
        rate: float = 0.5,
        repeats: int = 3,
        seed: int = 1,
        kinds: Iterable[str] = KINDS,
    ) -> None:
        if devices < 0:
            raise ValueError("devices must be >= 0")
        kinds = tuple(kinds)
        self.rate = rate  # adverts per second per device (repeats included)
        self.repeats = max(1, repeats)
        self.sensors: list[VirtualSensor] = []
        # one generator for the fleet (a Random holds 2.5 kB of state: 2.5 MB at 1,000
        # sensors, in the RSS of the demo it feeds); the sensors take turns, so the values
        # are as deterministic per seed as before
        rng = random.Random(seed * 100_003)
        for i in range(devices):
            kind = kinds[i % len(kinds)]
            mac = f"A4:C1:38:{0xD0 + (i >> 16) & 0xFF:02X}:{(i >> 8) & 0xFF:02X}:{i & 0xFF:02X}"
            encrypted = kind in ("mibeacon_encrypted", "bthome_encrypted", "door")
            key = BindKey(bytes.fromhex(demo_key(i))) if encrypted else None
            self.sensors.append(VirtualSensor(i, kind, mac, key, rng, f"sim-{kind}-{i}"))

    @property
    def keys(self) -> dict[str, str]:
        """Hex bind keys per MAC of the encrypted sensors (for the gateway's demo config)."""
        return {s.mac: demo_key(s.index) for s in self.sensors if s.key is not None}

    def adverts(self, count: int) -> list[Advertisement]:
        """The next ``count`` adverts, round robin over the sensors (for replay files/bench)."""
        n = len(self.sensors)
        return [self.sensors[i % n].next_advert(self.repeats) for i in range(count)]

    def factory(self) -> Callable[[DetectionCallback], FleetScanner]:
        def make(callback: DetectionCallback) -> FleetScanner:
            return FleetScanner(callback, self)

        return make


class FleetScanner(_TaskScanner):
    """The fleet behind the scanner seam: total rate = devices x per-device rate."""

    def __init__(self, callback: DetectionCallback, fleet: SyntheticFleet) -> None:
        super().__init__("ble-fleet")
        self._callback = callback
        self._fleet = fleet
        self.sent = 0
        self._pos = 0
        #: CPU seconds (this thread's) spent making adverts, the callback's excluded: what a
        #: benchmark of the demo subtracts to tell the gateway's cost from the simulator's.
        self.cpu_s = 0.0

    async def _produce(self) -> None:
        sensors = self._fleet.sensors
        if not sensors:
            await asyncio.Event().wait()
        repeats = self._fleet.repeats
        clock = time.thread_time

        def emit(n: int) -> bool:
            t0 = clock()
            batch = []
            for _ in range(n):
                sensor = sensors[self._pos % len(sensors)]
                self._pos += 1
                batch.append(sensor.next_detection(repeats))
            self.cpu_s += clock() - t0
            for device, data in batch:
                self.sent += 1
                self._callback(device, data)
            return True

        await _Paced(self._fleet.rate * len(sensors)).run(emit)
