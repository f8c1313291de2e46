"""Small asyncio helpers shared by the drivers and the gateway."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished.

    The task's own CancelledError is absorbed; a cancellation of the *caller* while it waits
    is not (cancellation is never swallowed): it propagates after the task has been told to
    stop.
    """
    if task is None:
        return
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        # re-raise only a cancellation of the caller that arrived while we waited
        if current is not None and current.cancelling() > before:
            raise
    except Exception:  # noqa: BLE001, S110 - the task's failure is its owner's to report
        pass
