"""The reconnect supervisor: backoff shape, states, log discipline, lifecycle (start, stop,
cancellation) and the one place where session errors (and groups of them) are classified."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import pytest

from drivers.errors import NeedsHumanError, ParseError, TransientError
from drivers.supervisor import (
    Backoff,
    Fault,
    State,
    Supervisor,
    Timing,
    classify,
    describe,
    explain,
)

FAST = Timing(backoff_initial=0.001, backoff_max=0.002, stable_after=30.0, stop_timeout=1.0)


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    b = Backoff(initial=1.0, maximum=8.0, rng=random.Random(1))
    caps = [1, 2, 4, 8, 8, 8]
    for cap in caps:
        delay = b.next_delay()
        assert 0 <= delay <= cap
    b.reset()
    assert b.attempt == 0
    # full jitter: over many draws the delays spread over the whole [0, cap] range
    draws = [
        Backoff(initial=4.0, maximum=4.0, rng=random.Random(i)).next_delay() for i in range(200)
    ]
    assert min(draws) < 0.5 and max(draws) > 3.5


def test_timing_is_validated() -> None:
    with pytest.raises(ValueError, match="backoff_initial"):
        Timing(backoff_initial=5.0, backoff_max=1.0)
    with pytest.raises(ValueError, match="stop_timeout"):
        Timing(stop_timeout=0)


async def _until(predicate: object, limit: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_restarts_until_cancelled_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def target() -> None:
        nonlocal runs
        runs += 1
        raise ConnectionResetError("peer went away")

    states: list[State] = []
    sup = Supervisor("link", target, timing=FAST, on_state=lambda s: states.append(s.state))
    with caplog.at_level(logging.DEBUG, logger="drivers.supervisor"):
        task = asyncio.create_task(sup.run())
        await _until(lambda: runs >= 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sup.status.failures >= 5
    assert sup.status.state is State.STOPPED
    assert sup.stopping
    assert State.BACKOFF in states
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "link failed: ConnectionResetError: peer went away" in warnings[0].getMessage()


async def test_needs_a_human_parks_in_failed_at_the_maximum_delay() -> None:
    async def target() -> None:
        raise NeedsHumanError("NVRAM corrupted, re-flash the stick")

    sup = Supervisor("zigbee", target, timing=Timing(backoff_initial=0.05, backoff_max=0.05))
    sup.start()
    await _until(lambda: sup.status.state is State.FAILED)
    assert sup.status.reason == "NVRAM corrupted, re-flash the stick"
    assert sup.status.fault is Fault.NEEDS_HUMAN
    assert await sup.stop()
    assert sup.state is State.STOPPED


async def test_a_target_that_returns_is_restarted() -> None:
    runs = 0

    async def target() -> None:
        nonlocal runs
        runs += 1

    sup = Supervisor("loop", target, timing=FAST)
    sup.start()
    await _until(lambda: runs >= 3 and sup.state is State.BACKOFF)
    assert sup.status.reason == "task ended unexpectedly"
    assert await sup.stop()


async def test_backoff_resets_after_a_stable_period() -> None:
    b = Backoff(initial=0.001, maximum=60.0)
    attempts: list[int] = []

    async def target() -> None:
        attempts.append(b.attempt)
        await asyncio.sleep(0.02)  # "stable" for longer than stable_after
        raise OSError("cable pulled")

    sup = Supervisor("serial", target, backoff=b, stable_after=0.01)
    sup.start()
    await _until(lambda: len(attempts) >= 4)
    assert await sup.stop()
    assert attempts == [0, 1, 1, 1]  # reset before each delay: never grows past one step


async def test_a_failed_child_of_a_task_group_is_restarted() -> None:
    """Python 3.11 leaves a stale cancel request on the parent of a TaskGroup whose child
    failed: the supervisor must still restart the target, not take it for a stop."""
    runs = 0

    async def child() -> None:
        await asyncio.sleep(0)
        raise OSError("adapter gone")

    async def target() -> None:
        nonlocal runs
        runs += 1
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())

    sup = Supervisor("ble", target, timing=FAST)
    sup.start()
    await _until(lambda: runs >= 3 and sup.state is State.BACKOFF)
    assert sup.status.reason == "OSError: adapter gone"  # the leaf, not the group
    assert not sup.stopping
    assert await sup.stop()


async def test_stop_ends_a_running_session_and_the_session_sees_the_flag() -> None:
    seen: list[bool] = []
    running = asyncio.Event()

    async def target() -> None:
        sup.mark_running()
        running.set()
        try:
            await asyncio.sleep(60)
        finally:
            seen.append(sup.stopping)

    sup = Supervisor("uplink", target, timing=FAST)
    sup.start()
    await running.wait()
    assert sup.state is State.RUNNING
    assert await sup.stop()
    assert seen == [True]  # the flag is set before the session is cancelled
    # mypy keeps sup.state narrowed to RUNNING across the await that stops it
    assert sup.state is State.STOPPED  # type: ignore[comparison-overlap]
    assert sup.status.failures == 0  # type: ignore[unreachable]


@pytest.mark.parametrize(
    "raised",
    [
        ExceptionGroup("g", [ConnectionResetError("reset by peer")]),
        BaseExceptionGroup("g", [asyncio.CancelledError(), ExceptionGroup("g", [OSError("x")])]),
        ConnectionResetError("reset by peer"),
        BaseExceptionGroup("g", [asyncio.CancelledError()]),
    ],
    ids=["group", "nested-group", "plain", "only-cancellations"],
)
async def test_an_error_raised_while_stopping_is_a_stop_not_a_failure(
    raised: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """A session that turns the stop's cancellation into an error (a TaskGroup raising a
    group while its parent is cancelled) still ends as a stop: no failure, no backoff."""
    running = asyncio.Event()

    async def target() -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise raised from None

    sup = Supervisor("uplink", target, timing=FAST)
    with caplog.at_level(logging.WARNING, logger="drivers.supervisor"):
        sup.start()
        await running.wait()
        assert await sup.stop()
    assert sup.state is State.STOPPED
    assert sup.status.failures == 0
    assert [r for r in caplog.records if r.name == "drivers.supervisor"] == []


async def test_a_cancelled_run_is_a_stop() -> None:
    running = asyncio.Event()

    async def target() -> None:
        running.set()
        await asyncio.sleep(60)

    sup = Supervisor("api", target, timing=FAST)
    task = asyncio.create_task(sup.run())
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sup.stopping
    assert sup.state is State.STOPPED
    assert sup.status.failures == 0


async def test_stop_is_bounded_when_a_session_ignores_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A session that swallows the stop's cancellation (twice) is abandoned after
    ``stop_timeout``: stop() returns False and says so, it never hangs."""
    release = asyncio.Event()
    cancels = 0

    async def target() -> None:
        nonlocal cancels
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancels += 1  # swallowed: a bug the bound contains

    sup = Supervisor("stuck", target, timing=Timing(stop_timeout=0.1))
    sup.start()
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="drivers.supervisor"):
        assert not await sup.stop()
    assert cancels == 2  # once, and once more after half the bound
    assert "did not end within 0.1 s" in caplog.text
    release.set()  # let the abandoned session finish (no leaked task)
    await asyncio.sleep(0.01)


async def test_a_session_that_swallows_the_first_cancel_gets_a_second() -> None:
    ended = asyncio.Event()

    async def target() -> None:
        # swallowed, as Python 3.11's wait_for can do (gh-86296)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        try:
            await asyncio.sleep(60)
        finally:
            ended.set()

    sup = Supervisor("mqtt", target, timing=Timing(stop_timeout=0.2))
    sup.start()
    await asyncio.sleep(0.01)
    assert await sup.stop()
    assert ended.is_set()


async def test_start_twice_is_refused() -> None:
    async def target() -> None:
        await asyncio.sleep(60)

    sup = Supervisor("twice", target, timing=FAST)
    sup.start()
    with pytest.raises(RuntimeError, match="already started"):
        sup.start()
    assert await sup.stop()


def test_groups_are_classified_by_their_most_telling_leaf() -> None:
    human = NeedsHumanError("wrong password")
    bad = ParseError("bad frame")
    flaky = TransientError("busy")
    nested = BaseExceptionGroup(
        "outer",
        [asyncio.CancelledError(), ExceptionGroup("inner", [OSError("x"), bad, human])],
    )
    assert explain(nested) is human
    assert classify(nested) is Fault.NEEDS_HUMAN
    assert describe(nested) == "wrong password"
    assert explain(ExceptionGroup("g", [OSError("x"), bad])) is bad
    assert classify(bad) is Fault.PROTOCOL
    assert classify(flaky) is Fault.TRANSIENT
    assert classify(TimeoutError()) is Fault.TRANSIENT
    assert classify(KeyError("bug")) is Fault.PROTOCOL
    assert explain(BaseExceptionGroup("g", [asyncio.CancelledError()])) is None
    assert describe(ExceptionGroup("g", [OSError("cable pulled")])) == "OSError: cable pulled"
