"""Small asyncio helpers shared by the drivers and the gateway."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished.

    The task's own CancelledError or failure is absorbed (it is the task owner's to report);
    a cancellation of the *caller* while it waits is not (cancellation is never swallowed).
    """
    if task is None:
        return
    task.cancel()
    # asyncio.wait never cancels ``task`` and raises CancelledError only for the caller
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved"


async def wait_event(event: asyncio.Event, timeout_s: float | None) -> None:
    """Until ``event`` is set or ``timeout_s`` passes (None: no limit)."""
    if timeout_s is None:
        await event.wait()
    else:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
