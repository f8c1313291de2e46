"""A simulated phone for presence: BLE adverts from a rotating resolvable private address.

The address is regenerated from the phone's IRK every ``rotate_s`` seconds of its
:class:`PhoneSchedule` (a real phone rotates about every 15 minutes), so only a gateway that
resolves RPAs with the IRK can tell it is the same phone. It starts away for ``away_s``
seconds (silent), then is home for ``home_s`` seconds (adverts with a fluctuating RSSI), and
so on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from drivers.ble.presence import make_rpa
from drivers.ble.types import Advertisement
from drivers.timing import check_timing

#: The demo phone's IRK (synthetic, for the demo and tests only).
DEMO_IRK = "5f1c2e8a9b7d4c3e0a1b2c3d4e5f6071"


@dataclass(frozen=True, slots=True)
class PhoneSchedule:
    """Seconds: away (silent) for ``away_s``, then home (advertising) for ``home_s``, and so
    on; the address rotates every ``rotate_s``."""

    home_s: float = 60.0
    away_s: float = 35.0
    rotate_s: float = 20.0

    def __post_init__(self) -> None:
        check_timing(self)


class SimulatedPhone:
    def __init__(
        self, irk: bytes, *, schedule: PhoneSchedule | None = None, rssi: int = -62, seed: int = 7
    ) -> None:
        self.irk = irk
        self.schedule = schedule or PhoneSchedule()
        #: The mean RSSI of its adverts (each one varies by up to 6 dB).
        self.rssi = rssi
        self._rng = random.Random(seed)
        self._start: float | None = None
        self._address = ""
        self._rotated = -1e18

    def is_home(self, now: float) -> bool:
        if self._start is None:
            self._start = now
        sched = self.schedule
        return (now - self._start) % (sched.home_s + sched.away_s) >= sched.away_s

    def advert(self, now: float) -> Advertisement | None:
        """An advert at ``now`` (monotonic seconds), or None while the phone is away."""
        if not self.is_home(now):
            return None
        if now - self._rotated >= self.schedule.rotate_s:
            self._rotated = now
            self._address = make_rpa(self.irk, self._rng.randbytes(3))
        return Advertisement(
            address=self._address,
            rssi=self.rssi + self._rng.randint(-6, 6),
            manufacturer_data={0x004C: bytes.fromhex("1005031c2a7d3b")},
            time=now,
        )
