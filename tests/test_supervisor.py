"""The reconnect supervisor: backoff shape, states, log discipline, cancellation."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from drivers import supervisor
from drivers.errors import NeedsHumanError
from drivers.supervisor import Backoff, State, Supervisor


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


async def test_restarts_until_cancelled_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_INITIAL", 0.001)
    monkeypatch.setattr(supervisor, "BACKOFF_MAX", 0.002)
    runs = 0

    async def target() -> None:
        nonlocal runs
        runs += 1
        raise ConnectionResetError("peer went away")

    states: list[State] = []
    sup = Supervisor("link", target, on_state=lambda s: states.append(s.state))
    with caplog.at_level(logging.DEBUG, logger="drivers.supervisor"):
        task = asyncio.create_task(sup.run())
        async with asyncio.timeout(5):
            while runs < 5:
                await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sup.status.failures >= 5
    assert sup.status.state is State.STOPPED
    assert State.BACKOFF in states
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "link failed: ConnectionResetError: peer went away" in warnings[0].getMessage()


async def test_needs_a_human_parks_in_failed_at_the_maximum_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_MAX", 0.05)

    async def target() -> None:
        raise NeedsHumanError("NVRAM corrupted, re-flash the stick")

    sup = Supervisor("zigbee", target)
    task = asyncio.create_task(sup.run())
    async with asyncio.timeout(5):
        while sup.status.state is not State.FAILED:
            await asyncio.sleep(0.001)
    assert sup.status.reason == "NVRAM corrupted, re-flash the stick"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_target_that_returns_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_INITIAL", 0.001)
    runs = 0

    async def target() -> None:
        nonlocal runs
        runs += 1

    sup = Supervisor("loop", target)
    task = asyncio.create_task(sup.run())
    async with asyncio.timeout(5):
        while runs < 3:
            await asyncio.sleep(0.001)
    assert sup.status.reason == "task ended unexpectedly"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_backoff_resets_after_a_stable_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "BACKOFF_INITIAL", 0.001)
    b = Backoff()
    attempts: list[int] = []

    async def target() -> None:
        attempts.append(b.attempt)
        await asyncio.sleep(0.02)  # "stable" for longer than stable_after
        raise OSError("cable pulled")

    sup = Supervisor("serial", target, backoff=b, stable_after=0.01)
    task = asyncio.create_task(sup.run())
    async with asyncio.timeout(5):
        while len(attempts) < 4:
            await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == [0, 1, 1, 1]  # reset before each delay: never grows past one step


async def test_a_failed_child_of_a_task_group_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11 leaves a stale cancel request on the parent of a TaskGroup whose child
    failed: the supervisor must still restart the target, not take it for a stop."""
    monkeypatch.setattr(supervisor, "BACKOFF_INITIAL", 0.001)
    runs = 0

    async def child() -> None:
        await asyncio.sleep(0)
        raise OSError("adapter gone")

    async def target() -> None:
        nonlocal runs
        runs += 1
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())

    sup = Supervisor("ble", target)
    task = asyncio.create_task(sup.run())
    async with asyncio.timeout(5):
        while runs < 3:
            await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
