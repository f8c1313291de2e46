"""The state directory's lock: one service per state directory (``<state_dir>/lock``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gateway.errors import NeedsHumanError, StoreError

LOCK_NAME = "lock"


class StateDirBusyError(NeedsHumanError):
    """Another service holds the state directory."""


def lock_state_dir(state_dir: Path) -> int:
    """Take ``<state_dir>/lock`` (flock) and write our pid into it; returns its descriptor."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateDirBusyError(
            f"another migw (pid {holder}) is using {state_dir}: stop it, or give this one"
            " its own --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing releases the flock
