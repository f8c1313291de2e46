"""Wall clock, monotonic clock, boot id and "is the clock synchronised" (NTP) detection.

A Raspberry Pi has no RTC: after a power cut it boots with the time of the last shutdown
(fake-hwclock) or 1970 until NTP answers. Readings keep boot id and monotonic time so they
can be re-stamped later; :func:`clock_synchronized` asks the kernel, as ``timedatectl`` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5  # adjtimex(2): clock not synchronized
#: systemd-timesyncd (Raspberry Pi OS's default) creates this once the clock is synchronised.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


class Clock(Protocol):
    def wall(self) -> float: ...

    def mono(self) -> float: ...

    def synchronized(self) -> bool: ...

    @property
    def boot_id(self) -> str: ...


def read_boot_id() -> str:
    try:
        return _BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except OSError:
        # not Linux: a random id per process is the honest equivalent
        return str(uuid.uuid4())


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>: we only read the return value, but the kernel writes
    # the whole struct, so reserve generously (the real struct is 208 bytes on 64-bit).
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 512)]


def clock_synchronized(timesync_flag: Path = TIMESYNC_FLAG) -> bool:
    """Whether the wall clock has been synchronised (NTP), as ``timedatectl`` tells.

    1. systemd-timesyncd's flag file ``timesync_flag`` (readable inside the hardened unit);
    2. the kernel's view: ``adjtimex`` returns TIME_ERROR while unsynchronised (chrony and
       timesyncd both clear it once they discipline the clock);
    3. when neither answers (adjtimex refused, as ``ProtectClock=yes`` does, and no
       timesyncd) the clock counts as NOT synchronised: readings then carry boot id and
       monotonic time and can still be re-stamped, while a wrong "synced" cannot be undone.
    """
    if timesync_flag.exists():
        return True
    return adjtimex_state() is True


def adjtimex_state() -> bool | None:
    """True/False from the kernel's adjtimex, None when it cannot be asked."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        libc = ctypes.CDLL(path, use_errno=True)
        tx = _Timex()
        state = int(libc.adjtimex(ctypes.byref(tx)))
    except (OSError, AttributeError):
        return None
    return decide(state)


def decide(state: int) -> bool | None:
    """adjtimex's return value: -1 (refused, e.g. by a seccomp filter) is unknown."""
    if state < 0:
        return None
    return state != _TIME_ERROR


@dataclass(slots=True)
class SystemClock:
    """The real clocks; the sync check is cached for ``sync_check_s`` seconds."""

    sync_check_s: float = 10.0
    timesync_flag: Path = TIMESYNC_FLAG
    _boot: str = ""
    _synced: bool = False
    _checked: float = -1e9

    def __post_init__(self) -> None:
        self._boot = read_boot_id()

    @property
    def boot_id(self) -> str:
        return self._boot

    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()

    def synchronized(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.sync_check_s:
            self._synced = clock_synchronized(self.timesync_flag)
            self._checked = now
        return self._synced
