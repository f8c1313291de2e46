"""A pytest plugin that records every advert a peer's test suite feeds its parser.

Used by ``tools/peer_vectors/extract.sh`` (read it first) to turn the public test suites of
xiaomi-ble and bthome-ble into data: run *their* tests, unchanged, against *their* source at
the recorded commit, with this plugin loaded (``-p record``). For every call of the
parser's ``update()`` or ``supported()`` it writes one JSON line: the advert (address,
local name, service data hex per UUID), the bind key the test configured, the test's node
id, and what the parser returned for it:

* ``state``: the parser's result at that point of the test (cumulative: the peer keeps
  state per device object across the adverts of one test), and
* ``alone``: the result of the same advert on a fresh parser with the same key, i.e. what
  this one advert decodes to (what a stateless decoder is compared with).

Only tests that pass are kept, so ``state`` is what the test asserted wherever it asserted
it. Nothing of the peers' code is copied: this records inputs and outputs.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

OUT = os.environ["PEER_VECTORS_OUT"]
SOURCE = os.environ["PEER_VECTORS_SOURCE"]  # "owner/repo@commit"
_pending: dict[str, list[dict[str, Any]]] = {}
_current: list[str] = []


def _plain(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def _key(device_key: Any) -> str:
    key = str(device_key.key)
    return key if device_key.device_id is None else f"{key}@{device_key.device_id}"


def _summary(update: Any) -> dict[str, Any]:
    if not hasattr(update, "entity_values"):
        return {"returned": _plain(update)}
    out: dict[str, Any] = {
        "values": {_key(k): _plain(v.native_value) for k, v in update.entity_values.items()},
        "binary_values": {
            _key(k): _plain(v.native_value) for k, v in update.binary_entity_values.items()
        },
        "events": [
            {
                "key": _key(k),
                "event_type": _plain(e.event_type),
                "event_properties": {
                    str(p): _plain(x) for p, x in (e.event_properties or {}).items()
                },
            }
            for k, e in update.events.items()
        ],
        "devices": {
            str(dev): {"model": info.model, "name": info.name, "sw_version": info.sw_version}
            for dev, info in update.devices.items()
        },
    }
    return out


def _advert(info: Any) -> dict[str, Any]:
    return {
        "address": info.address,
        "local_name": info.name,
        "service_data": {u: bytes(d).hex() for u, d in info.service_data.items()},
        "manufacturer_data": {str(k): bytes(d).hex() for k, d in info.manufacturer_data.items()},
    }


def _flags(device: Any) -> dict[str, Any]:
    names = ("bindkey_verified", "decryption_failed", "downgrade_detected", "pending")
    return {n: _plain(getattr(device, n)) for n in names if hasattr(device, n)}


def _wrap(cls: type, fresh_kwargs: Any) -> None:
    original_update = cls.update
    original_supported = cls.supported
    original_set_bindkey = cls.set_bindkey

    def set_bindkey(self: Any, bindkey: Any) -> None:
        # the key as the test gave it (xiaomi-ble expands a 12-byte legacy key)
        self._recorded_bindkey = bindkey
        original_set_bindkey(self, bindkey)

    def record(self: Any, info: Any, call: str, result: Any) -> None:
        if not _current:
            return
        bindkey = getattr(self, "_recorded_bindkey", None)
        fresh = cls(**fresh_kwargs(bindkey))
        try:
            alone = _summary(original_update(fresh, info))
            alone_error = None
        except Exception as exc:  # noqa: BLE001 - a crash of the peer is recorded too
            alone, alone_error = {}, f"{type(exc).__name__}: {exc}"
        _pending[_current[0]].append(
            {
                "call": call,
                "advert": _advert(info),
                "bindkey_hex": bindkey.hex() if bindkey else None,
                "state": _summary(result) if call == "update" else {"supported": result},
                "flags_after": _flags(self),
                "alone": alone,
                **({"alone_error": alone_error} if alone_error else {}),
            }
        )

    def update(self: Any, info: Any) -> Any:
        result = original_update(self, info)
        record(self, info, "update", result)
        return result

    def supported(self: Any, info: Any) -> Any:
        result = original_supported(self, info)
        record(self, info, "supported", result)
        return result

    cls.set_bindkey = set_bindkey  # type: ignore[method-assign]
    cls.update = update  # type: ignore[method-assign]
    cls.supported = supported  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    if "xiaomi" in SOURCE:
        from xiaomi_ble import XiaomiBluetoothDeviceData as cls
    else:
        from bthome_ble import BTHomeBluetoothDeviceData as cls
    _wrap(cls, lambda key: {"bindkey": key} if key else {})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _current[:] = [item.nodeid]
    _pending[item.nodeid] = []
    yield
    _current.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    calls = _pending.pop(report.nodeid, [])
    if not report.passed:
        return
    with open(OUT, "a", encoding="utf-8") as fh:
        for index, call in enumerate(calls):
            line = {"source": f"{SOURCE}:{report.nodeid}", "index": index, **call}
            fh.write(json.dumps(line, sort_keys=True) + "\n")
