"""A reconnect supervisor: one place for backoff, state and restart logging.

Used by the gateway for each driver and for the MQTT uplink, and by drivers for their
transports. Capped exponential backoff with full jitter, reset after a stable period; the
first failure is logged at WARNING, repeats at DEBUG so a dead adapter cannot flood the log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.errors import NeedsHumanError

_LOGGER = logging.getLogger(__name__)

#: Default timing; module level so tests can shorten them.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
STABLE_AFTER = 30.0


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"  # needs a human: not retried until reconfigured
    STOPPED = "stopped"


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog, 2015)."""

    # read at construction, so tests (and callers) can shorten the module constants
    initial: float = field(default_factory=lambda: BACKOFF_INITIAL)
    maximum: float = field(default_factory=lambda: BACKOFF_MAX)
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        cap = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(0, cap)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class SupervisorStatus:
    state: State = State.STARTING
    reason: str = ""
    restarts: int = 0
    failures: int = 0
    last_failure: float | None = None  # wall time


class Supervisor:
    """Runs ``target`` forever: restarts it after an exception with backoff.

    ``target`` returning normally counts as a failure too (a run loop should not end), except
    after :meth:`stop`. :class:`NeedsHumanError` parks the supervisor in FAILED and retries
    only at the maximum backoff, so a fixed cable or adapter is picked up without a restart.
    Cancellation propagates.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[], Awaitable[None]],
        *,
        backoff: Backoff | None = None,
        stable_after: float | None = None,
        on_state: Callable[[SupervisorStatus], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.name = name
        self._target = target
        self._backoff = backoff or Backoff()
        self._stable_after = STABLE_AFTER if stable_after is None else stable_after
        self._on_state = on_state
        self._log = logger or _LOGGER
        self.status = SupervisorStatus()
        self._warned = False

    def _set(self, state: State, reason: str = "") -> None:
        self.status.state = state
        self.status.reason = reason
        if self._on_state is not None:
            self._on_state(self.status)

    def mark_running(self) -> None:
        """Called by the target once it is connected/initialised (optional)."""
        self._set(State.RUNNING)

    async def run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            self._set(State.STOPPED)
            raise

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            self._set(State.STARTING)
            try:
                await self._target()
            except NeedsHumanError as exc:
                reason = str(exc) or type(exc).__name__
                self._failure(reason, started)
                self._set(State.FAILED, reason)
                # jittered too: a fleet refused by one broker must not retry in lockstep
                delay = self._backoff.rng.uniform(self._backoff.maximum / 2, self._backoff.maximum)
            except Exception as exc:  # noqa: BLE001 - a supervisor's job is to survive anything
                reason = f"{type(exc).__name__}: {exc}"
                self._failure(reason, started, exc)
                self._set(State.BACKOFF, reason)
                delay = self._backoff.next_delay()
            else:
                reason = "task ended unexpectedly"
                self._failure(reason, started)
                self._set(State.BACKOFF, reason)
                delay = self._backoff.next_delay()
            # No `cancelling()` test here: on Python 3.11 a TaskGroup whose child fails
            # leaves a cancel request on its parent task for good (fixed in 3.12), so a
            # count > 0 cannot tell a stop from a failed child. A target that turns our
            # cancellation into an error is a bug the service's bounded stop contains.
            await asyncio.sleep(delay)
            self.status.restarts += 1

    def _failure(self, reason: str, started: float, exc: BaseException | None = None) -> None:
        self.status.failures += 1
        self.status.last_failure = time.time()
        if time.monotonic() - started >= self._stable_after:
            self._backoff.reset()
            self._warned = False
        if not self._warned:
            self._warned = True
            self._log.warning("%s failed: %s (retrying with backoff)", self.name, reason)
            if exc is not None and not isinstance(exc, (OSError, TimeoutError)):
                self._log.debug("%s failure detail", self.name, exc_info=exc)
        else:
            self._log.debug("%s failed again: %s", self.name, reason)
