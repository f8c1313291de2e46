"""Small asyncio helpers shared by the drivers and the gateway."""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
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


#: Python 3.11's TaskGroup leaves a stale cancellation request on its parent (see below).
_STALE_CANCEL = sys.version_info < (3, 12)


class TaskGroup(asyncio.TaskGroup):
    """``asyncio.TaskGroup`` without Python 3.11's stale cancellation request.

    When a child fails while the parent already waits in ``__aexit__``, the 3.11 TaskGroup
    cancels the parent to wake it and never calls ``uncancel()`` for that request
    (``uncancel`` only runs when the request predates ``__aexit__``). The parent's
    ``cancelling()`` then stays above 0, and everything that asks "am I being stopped?"
    (a supervisor, a session's error handling) takes every later error for
    a stop. Later Pythons uncancel after the wait; this does the same on 3.11. A real stop
    request (an outside ``cancel()``) is counted separately and stays visible.
    """

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        requested_before: bool = getattr(self, "_parent_cancel_requested", False)
        try:
            await super().__aexit__(et, exc, tb)
        finally:
            parent: asyncio.Task[object] | None = getattr(self, "_parent_task", None)
            requested_now: bool = getattr(self, "_parent_cancel_requested", False)
            if _STALE_CANCEL and requested_now and not requested_before and parent is not None:
                parent.uncancel()
