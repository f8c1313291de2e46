"""Values as the store keeps them: JSON text for ``state``/``history``, and what can be stored."""

from __future__ import annotations

import json
import math

from gateway.errors import StoreError
from gateway.model import Reading, Value

json_str = json.encoder.encode_basestring


def encode_value(value: Value) -> str:
    """JSON text of a value (the hot path of ingest: no generic encoder for numbers)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))  # finite floats only reach the store
    return str(json_str(value))


def decode_value(text: str) -> Value:
    value = json.loads(text)
    if isinstance(value, bool | int | float | str):
        return value
    raise StoreError(f"unexpected stored value {text!r}")


#: ``series.unit`` of a reading without a unit, and of a device's own series (events).
NO_UNIT = "\x00"


def encodable(*texts: str | None) -> bool:
    try:
        for text in texts:
            if text is not None and not text.isascii():  # ASCII (the usual) always encodes
                text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(r: Reading) -> bool:
    """Values SQLite and JSON can hold: finite numbers, text that encodes as UTF-8; and a
    metric name and unit that name a series of readings of their own."""
    value = r.value
    if isinstance(value, float):
        if not math.isfinite(value):
            return False
    elif isinstance(value, str) and not encodable(value):
        return False
    if not r.metric or r.unit == NO_UNIT:
        return False  # its series would be its device's events' (metric ""), or no unit's
    # the hot path: ids and metric names are ASCII (no encoding to try)
    return (r.device_id.isascii() and r.metric.isascii()) or encodable(r.device_id, r.metric)
