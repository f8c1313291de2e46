"""drivers.timing.check_timing over every timing dataclass: the defaults hold, and a zero,
negative, infinite or NaN value of any number field fails where the timing is built, the
class and the field named."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from drivers.supervisor import Timing
from drivers.zigbee.timing import ZigbeeTiming
from gateway.api.timing import ApiTiming
from gateway.service import ServiceTiming
from gateway.sync.timing import SyncTiming

TIMINGS: list[type[Any]] = [Timing, ZigbeeTiming, ApiTiming, SyncTiming, ServiceTiming]
#: Fields where zero is a meaningful value (Timing.stable_after = 0: every session is stable).
ZERO_OK = {(Timing, "stable_after")}


def _number_fields(cls: type[Any]) -> list[str]:
    default = cls()
    return [
        f.name
        for f in dataclasses.fields(cls)
        if isinstance(getattr(default, f.name), int | float)
        and not isinstance(getattr(default, f.name), bool)
    ]


@pytest.mark.parametrize("cls", TIMINGS, ids=lambda c: c.__name__)
def test_every_number_field_is_checked(cls: type[Any]) -> None:
    names = _number_fields(cls)
    assert names, f"{cls.__name__} has no number field"
    for name in names:
        bad: list[float] = [-1.0, math.inf, math.nan]
        if (cls, name) in ZERO_OK:
            assert getattr(cls(**{name: 0}), name) == 0
        else:
            bad.append(0)
        for value in bad:
            with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name} must be a finite"):
                cls(**{name: value})


def test_nested_timings_check_themselves() -> None:
    with pytest.raises(ValueError, match=r"SyncTiming\.goodbye_s"):
        ServiceTiming(sync=SyncTiming(goodbye_s=-1.0))
    with pytest.raises(ValueError, match="backoff_initial <= backoff_max"):
        ServiceTiming(supervisor=Timing(backoff_initial=2.0, backoff_max=1.0))
