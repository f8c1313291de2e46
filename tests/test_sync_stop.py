"""Stopping the service while the sync agent's link is mid-connect. (That an error raised
while stopping is a stop, not a failure, is the supervisor's rule: tests/test_supervisor.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.service import Service, ServiceTiming
from gateway.sync import SyncAgent, SyncTiming
from tests.broker import gateway_config
from tests.synth import SynthDriver


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


async def test_a_stop_while_the_link_waits_for_connack_is_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the broker takes the TCP connection and the CONNECT packet and never answers; the
    # connect timeout is far beyond the bound on the stop below
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
        timing = ServiceTiming(sync=SyncTiming(connect_timeout_s=600.0))
        svc = Service(cfg, drivers=[SynthDriver(devices=1, rate=10)], timing=timing)
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
