"""Clock synchronisation detection (NTP): never claim "synced" without evidence."""

from __future__ import annotations

from pathlib import Path

from gateway import clock


def test_adjtimex_answers_are_read_as_the_kernel_means_them() -> None:
    assert clock.decide(0) is True  # TIME_OK
    assert clock.decide(1) is True  # TIME_INS (leap second pending): synchronised
    assert clock.decide(5) is False  # TIME_ERROR: not synchronised
    assert clock.decide(-1) is None  # refused (ProtectClock=yes seccomp): unknown


def test_timesyncd_flag_means_synchronised(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    flag.touch()
    assert clock.clock_synchronized(flag) is True
    assert clock.SystemClock(timesync_flag=flag).synchronized() is True


def test_the_real_kernel_is_asked(tmp_path: Path) -> None:
    state = clock.adjtimex_state()
    assert state in (True, False)  # this machine lets us ask
    assert clock.clock_synchronized(tmp_path / "absent") is state
