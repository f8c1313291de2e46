"""One reconnect supervisor per part: an explicit lifecycle, backoff, state and logging.

Modelled on aioesphomeapi's ``ReconnectLogic``. A :class:`Supervisor` runs a *session*
(``target``: connect, serve until something breaks) again and again:

.. code-block:: text

                start()/run()
                     |
                     v
        +------> STARTING ---- target calls mark_running() ----> RUNNING
        |            |                                              |
        |            +-------- the session ends (raise/return) <----+
        |            |
        |            v   classified once, here (see :func:`classify`)
        |     transient / protocol  -> BACKOFF  (capped exponential delay, full jitter)
        |     needs a human         -> FAILED   (retried only at about the maximum delay)
        |            |
        +--- delay --+
                     any state --- stop() (or cancellation of run()) ---> STOPPED

* **Each session runs in its own task.** Whatever asyncio leaves on that task (Python
  3.11's TaskGroup keeps a cancel request on a parent whose child failed) dies with it, so
  nothing needs to ask ``Task.cancelling()`` whether we are stopping.
* **Stopping is explicit.** :meth:`stop` (or a cancellation of the task running
  :meth:`run`) sets :attr:`Supervisor.stopping` *before* cancelling the session; a session
  that needs to know reads that flag. The session gets one cancellation, a second one after
  half of :attr:`Timing.stop_timeout` (Python 3.11's ``asyncio.wait_for`` can swallow one),
  and is abandoned with a WARNING after the whole bound; :meth:`stop` never hangs.
* **Errors are classified once.** A session may raise a plain exception or an exception
  group (nested TaskGroups); :func:`explain` picks the leaf that explains it (needs-a-human
  first, then protocol, then the first that is not a cancellation) and :func:`classify`
  maps it onto the roots of :mod:`drivers.errors`. An error raised while stopping is not
  a failure.
* **Backoff** is capped exponential with full jitter, reset when a session had run for
  :attr:`Timing.stable_after`; the first failure is logged at WARNING, repeats at DEBUG
  until a stable period, so a dead adapter cannot flood the log.

Timing is a frozen :class:`Timing` passed to the constructor (tests shorten it there).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.errors import NeedsHumanError, ProtocolError, TransientError
from drivers.timing import check_timing

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """The timing of one supervisor (seconds)."""

    #: First backoff cap; doubled per failure in a row ...
    backoff_initial: float = 1.0
    #: ... up to this cap (also the retry period of a part that needs a human).
    backoff_max: float = 60.0
    #: A session that ran this long resets the backoff and the "warn once" log state.
    stable_after: float = 30.0
    #: :meth:`Supervisor.stop` waits at most this long for the session to end (within the
    #: service's own bound on a stop, docs/architecture.md).
    stop_timeout: float = 3.0

    def __post_init__(self) -> None:
        check_timing(self, zero_ok=("stable_after",))
        if self.backoff_initial > self.backoff_max:
            raise ValueError("need backoff_initial <= backoff_max")


_DEFAULT = Timing()


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"  # needs a human: retried only at the maximum delay
    STOPPED = "stopped"


class Fault(enum.StrEnum):
    """What the caller should do about a failure (the roots of :mod:`drivers.errors`)."""

    TRANSIENT = "transient"  # retry with backoff
    NEEDS_HUMAN = "needs-human"  # config, auth, hardware: surface it, retry rarely
    PROTOCOL = "protocol"  # the peer sent nonsense, or we have a bug: retry, keep details


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog, 2015)."""

    initial: float = 1.0
    maximum: float = 60.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        cap = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(0, cap)

    def human_delay(self) -> float:
        """The delay after a needs-a-human failure: about the maximum, jittered too (a
        fleet refused by one broker must not retry in lockstep)."""
        return self.rng.uniform(self.maximum / 2, self.maximum)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class SupervisorStatus:
    state: State = State.STARTING
    reason: str = ""
    restarts: int = 0
    failures: int = 0
    last_failure: float | None = None  # wall time
    fault: Fault | None = None  # of the last failure


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions of a (nested) group that are not cancellations, or ``[exc]``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [] if isinstance(exc, asyncio.CancelledError) else [exc]


def explain(exc: BaseException) -> BaseException | None:
    """The exception of ``exc`` (a group or not) that explains a failure best: one that needs
    a human first, then a protocol error, then the first that is not a cancellation; None
    when it holds only cancellations."""
    found = leaves(exc)
    for kind in (NeedsHumanError, ProtocolError):
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return found[0] if found else None


def classify(exc: BaseException) -> Fault:
    """Needs-a-human and protocol by the roots of :mod:`drivers.errors`; timeouts, OS and
    connection errors and :class:`TransientError` are transient; anything else is taken for
    a bug (protocol) so its details are kept."""
    leaf = explain(exc)
    if isinstance(leaf, NeedsHumanError):
        return Fault.NEEDS_HUMAN
    if leaf is None or isinstance(leaf, TransientError | OSError | TimeoutError):
        return Fault.TRANSIENT  # None: only cancellations (not a stop: see Supervisor)
    return Fault.PROTOCOL


def describe(exc: BaseException) -> str:
    """One line for logs, API and CLI: a needs-a-human message as it is (it is written for
    a person), otherwise ``Type: message``."""
    leaf = explain(exc)
    if leaf is None:
        return "the session was cancelled unexpectedly"
    if isinstance(leaf, NeedsHumanError):
        return str(leaf) or type(leaf).__name__
    return f"{type(leaf).__name__}: {leaf}"


class Supervisor:
    """Runs ``target`` (one session) again and again; see the module docstring.

    Use either :meth:`start` / ``await`` :meth:`stop`, or ``await`` :meth:`run` in a task of
    your own (cancelling that task is a stop). ``target`` returning normally counts as a
    failure too (a session should not end) unless the supervisor is stopping.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[], Awaitable[None]],
        *,
        timing: Timing | None = None,
        backoff: Backoff | None = None,
        stable_after: float | None = None,
        on_state: Callable[[SupervisorStatus], None] | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._target = target
        if timing is None:  # a caller with a Backoff of its own (it can watch its attempts)
            b = backoff or Backoff()
            timing = Timing(
                b.initial,
                b.maximum,
                _DEFAULT.stable_after if stable_after is None else stable_after,
            )
        self.timing = timing
        self._backoff = backoff or Backoff(
            timing.backoff_initial, timing.backoff_max, rng=rng or random.Random()
        )
        self._on_state = on_state
        self._log = logger or _LOGGER
        self.status = SupervisorStatus()
        self._warned = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._session: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def stopping(self) -> bool:
        """True from the moment a stop is requested: sessions read this, never
        ``Task.cancelling()``."""
        return self._stopping

    @property
    def state(self) -> State:
        return self.status.state

    def start(self) -> None:
        """Run the supervisor in a task of its own (named after it)."""
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"{self.name} is already started")
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self.run(), name=self.name)

    async def stop(self) -> bool:
        """Stop and wait, at most about :attr:`Timing.stop_timeout`; True when everything
        ended in time (False: a session was abandoned, logged at WARNING)."""
        self._stopping = True
        task = self._task
        if task is None or task.done():
            await self._end_session()
            self._set(State.STOPPED)
            return self._session is None or self._session.done()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.timing.stop_timeout + 1.0)
        if task in done:
            if not task.cancelled():
                task.exception()  # retrieved; a supervisor's own task does not fail
            return self._session is None or self._session.done()
        self._log.warning("%s did not stop within %g s", self.name, self.timing.stop_timeout)
        return False

    def mark_running(self) -> None:
        """Called by the session once it is connected/initialised (optional)."""
        self._set(State.RUNNING)

    async def run(self) -> None:
        """Supervise until stopped. A cancellation of the calling task is a stop: the
        session is ended (bounded) and the cancellation propagates. Returns after
        :meth:`stop` was called by another task."""
        try:
            while not self._stopping:
                started = time.monotonic()
                self._set(State.STARTING)
                session = asyncio.get_running_loop().create_task(
                    self._one_session(), name=f"{self.name}-session"
                )
                self._session = session
                await asyncio.wait({session})
                # drop the ended session (its traceback holds frames, sockets) at once
                self._session = None
                if self._stop_requested():  # a method: set by stop() during the await
                    self._retrieve(session)
                    break
                delay = self._after(session, started)
                del session
                await asyncio.sleep(delay)
                self.status.restarts += 1
        except asyncio.CancelledError:
            self._stopping = True
            await self._end_session()
            raise
        finally:
            self._set(State.STOPPED)

    # ------------------------------------------------------------------ internals

    def _stop_requested(self) -> bool:
        return self._stopping

    async def _one_session(self) -> None:
        await self._target()

    def _set(self, state: State, reason: str = "") -> None:
        self.status.state = state
        self.status.reason = reason
        if self._on_state is not None:
            self._on_state(self.status)

    async def _end_session(self) -> None:
        """Cancel the session, once more after half the bound, give up after the bound."""
        session = self._session
        if session is None:
            return
        if session.done():  # ended just before the stop: its outcome is retrieved all the same
            self._retrieve(session)
            self._session = None
            return
        half = self.timing.stop_timeout / 2
        for _ in range(2):
            session.cancel()
            # a cancellation of the stopper while waiting propagates (never swallowed)
            await asyncio.wait({session}, timeout=half)
            if session.done():
                self._retrieve(session)
                self._session = None
                return
        self._log.warning(
            "%s: the session did not end within %g s of the stop; abandoned",
            self.name,
            self.timing.stop_timeout,
        )

    def _retrieve(self, session: asyncio.Task[None]) -> None:
        """An outcome while stopping is not a failure (an error raised by a cancelled
        session is logged at DEBUG only)."""
        if session.cancelled():
            return
        exc = session.exception()
        if exc is not None:
            self._log.debug("%s ended while stopping: %s", self.name, describe(exc))

    def _after(self, session: asyncio.Task[None], started: float) -> float:
        """Classify how the session ended, log, set the state; the delay before the next."""
        if session.cancelled():
            exc: BaseException | None = asyncio.CancelledError()
        else:
            exc = session.exception()
        leaf = explain(exc) if exc is not None else None
        if exc is not None and leaf is not None and not isinstance(leaf, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not ours to survive
        if time.monotonic() - started >= self.timing.stable_after:
            self._backoff.reset()
            self._warned = False
        self.status.failures += 1
        self.status.last_failure = time.time()
        if exc is None:
            fault, reason = Fault.TRANSIENT, "task ended unexpectedly"
        else:
            fault, reason = classify(exc), describe(exc)
        self.status.fault = fault
        if not self._warned:
            self._warned = True
            self._log.warning("%s failed: %s (retrying with backoff)", self.name, reason)
            if exc is not None and fault is Fault.PROTOCOL:
                self._log.debug("%s failure detail", self.name, exc_info=exc)
        else:
            self._log.debug("%s failed again: %s", self.name, reason)
        if fault is Fault.NEEDS_HUMAN:
            self._set(State.FAILED, reason)
            return self._backoff.human_delay()
        self._set(State.BACKOFF, reason)
        return self._backoff.next_delay()
