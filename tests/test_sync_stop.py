"""Stopping the service while the sync agent's link is mid-connect, and the rule that a
cancellation is never turned into an ordinary error (Python 3.11's TaskGroup can raise an
ExceptionGroup while its parent is being cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from drivers.aio import TaskGroup
from gateway.service import Service
from gateway.sync import SyncAgent
from gateway.sync import agent as agent_mod
from tests.broker import SynthDriver, gateway_config


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


async def test_a_stop_while_the_link_waits_for_connack_is_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # the broker takes the TCP connection and the CONNECT packet and never answers; the
    # connect timeout is far beyond the bound on the stop below
    monkeypatch.setattr(agent_mod, "CONNECT_TIMEOUT_S", 600.0)
    got_connect = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def mute_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if await reader.read(1):
            got_connect.set()
        await reader.read()  # until the client goes away

    server = await asyncio.start_server(mute_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = gateway_config(tmp_path / "state", f"mqtt://127.0.0.1:{port}")
        svc = Service(cfg, drivers=[SynthDriver(devices=1, rate=10)])  # type: ignore[arg-type]
        async with asyncio.timeout(60):
            async with svc:
                await asyncio.wait_for(got_connect.wait(), 20)
                agent = _agent(svc)
                assert agent.upstream is not None
                assert not agent.upstream.connected
                svc.request_stop()
            # leaving the service well before any connect timeout: the connect was cancelled
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()
    assert svc.clean_stop
    assert "Cancelled" not in agent.upstream.last_error
    assert "did not stop" not in caplog.text
    assert "Traceback" not in caplog.text


def _group(*excs: BaseException) -> BaseExceptionGroup[BaseException]:
    return BaseExceptionGroup("unhandled errors in a TaskGroup", list(excs))


@pytest.mark.parametrize(
    "raised",
    [
        _group(ConnectionResetError("reset by peer")),
        _group(asyncio.CancelledError(), _group(OSError("broken pipe"))),
        ConnectionResetError("reset by peer"),
        _group(asyncio.CancelledError()),
    ],
    ids=["group", "nested-group", "plain", "only-cancellations"],
)
async def test_an_error_raised_while_the_session_is_cancelled_stays_a_cancellation(
    raised: BaseException,
) -> None:
    async def session() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # the stop request, already delivered ...
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # ... and consumed by a TaskGroup, which raised a group
        raise agent_mod.session_error(raised)

    task = asyncio.create_task(session())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_session_error_without_a_stop_is_classified() -> None:
    leaf = ConnectionResetError("reset by peer")
    with pytest.raises(ConnectionResetError) as err:
        raise agent_mod.session_error(_group(asyncio.CancelledError(), _group(leaf)))
    assert err.value is leaf
    with pytest.raises(ConnectionResetError) as err:
        raise agent_mod.session_error(leaf)
    assert err.value is leaf


async def _boom() -> None:
    await asyncio.sleep(0.01)
    raise OSError("link lost")


async def test_a_child_error_leaves_no_stale_cancellation() -> None:
    """Python 3.11's TaskGroup cancels its parent when a child fails while the parent waits
    in ``__aexit__``, and never takes that back: ``cancelling()`` stays 1, so the session's
    supervisor would take every later link loss for a stop."""
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(ExceptionGroup):
        async with TaskGroup() as tg:
            tg.create_task(_boom())
    assert task.cancelling() == 0

    # ... the same when the child fails while the body still runs
    async def body_still_running() -> None:
        async with TaskGroup() as tg:
            tg.create_task(_boom())
            await asyncio.sleep(1)

    with pytest.raises(ExceptionGroup):
        await body_still_running()
    assert task.cancelling() == 0


async def test_a_stop_during_a_child_error_stays_a_stop() -> None:
    started = asyncio.Event()
    seen: list[int] = []

    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise OSError("link lost while stopping") from None

    async def session() -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with TaskGroup() as tg:
                tg.create_task(fails_when_cancelled())
                started.set()
        except BaseException:
            seen.append(task.cancelling())
            raise

    runner = asyncio.create_task(session())
    await started.wait()
    runner.cancel()
    (outcome,) = await asyncio.gather(runner, return_exceptions=True)
    assert isinstance(outcome, ExceptionGroup)  # 3.11 raises the error, not the stop ...
    assert seen == [1]  # ... but the stop request is still there for the supervisor
