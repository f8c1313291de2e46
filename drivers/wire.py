"""What every wire format of the drivers shares (pure).

:class:`WireEnum` is the IntEnum of wire codes: an unknown value becomes a pseudo-member
named ``UNKNOWN`` that keeps the raw number, so decoding never raises on a new firmware's
code and re-encoding is exact (the MT/ZNP tables and the ZCL status codes use it).
"""

from __future__ import annotations

import enum


class WireEnum(enum.IntEnum):
    """IntEnum whose unknown values become an ``UNKNOWN`` pseudo-member keeping the number."""

    @classmethod
    def _missing_(cls, value: object) -> WireEnum | None:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = "UNKNOWN"
        member._value_ = value
        return member
