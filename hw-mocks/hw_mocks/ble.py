"""Simulated BLE hardware behind the same scanner seam as the bleak wrapper (one import
for both halves):

* :mod:`hw_mocks.ble_replay`: bleak-shaped objects, :class:`ReplayScanner` (a JSONL file or
  a list of adverts at a given rate) and :class:`FailingScanner` (start faults).
* :mod:`hw_mocks.ble_fleet`: :class:`SyntheticFleet`, N virtual sensors of mixed kinds
  producing valid, changing adverts, and its :class:`FleetScanner`.

Both call ``callback(device, advertisement_data)`` with bleak-shaped objects, on the loop.
"""

from __future__ import annotations

from hw_mocks.ble_fleet import KINDS, FleetScanner, SyntheticFleet, demo_key
from hw_mocks.ble_replay import (
    FailingScanner,
    FakeAdvertisementData,
    FakeDevice,
    ReplayScanner,
    bleak_shaped,
    load_jsonl,
    replay_factory,
)

__all__ = [
    "KINDS",
    "FailingScanner",
    "FakeAdvertisementData",
    "FakeDevice",
    "FleetScanner",
    "ReplayScanner",
    "SyntheticFleet",
    "bleak_shaped",
    "demo_key",
    "load_jsonl",
    "replay_factory",
]
