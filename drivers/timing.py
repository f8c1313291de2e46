"""Timings: small frozen dataclasses of seconds (and counts) that a part takes in its
constructor, so tests shorten them there instead of patching module constants.

:func:`check_timing` is their one validation, called from each one's ``__post_init__``:
every number must be finite and above zero (a zero or negative wait spins or never waits,
and NaN compares false everywhere), so a bad value fails where the timing is built, with
the class and the field named, not later inside a loop. ``gateway/`` uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def check_timing(timing: DataclassInstance, *, zero_ok: Collection[str] = ()) -> None:
    """Raise ValueError naming the first number field of ``timing`` that is not finite and
    > 0 (>= 0 for the fields named in ``zero_ok``). Other fields (flags, nested timings,
    which check themselves) are left alone."""
    for f in fields(timing):
        value = getattr(timing, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        may_be_zero = f.name in zero_ok
        if not math.isfinite(value) or value < 0 or (value == 0 and not may_be_zero):
            bound = ">= 0" if may_be_zero else "> 0"
            name = f"{type(timing).__name__}.{f.name}"
            raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")
