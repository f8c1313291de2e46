"""The service in-process: demo hardware, supervision, command path, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.supervisor import State, Timing
from gateway.adapters import DemoOptions
from gateway.config import ApiSection, Config, GatewaySection
from gateway.demo import demo_config
from gateway.driver import Sink
from gateway.model import Command, CommandResult, CommandStatus
from gateway.service import Service, ServiceTiming
from tests.helpers import IdleDriver

ROOT = Path(__file__).resolve().parent.parent
GPIO_ONLY = DemoOptions(ble_devices=0, zigbee=False, gpio_interval=0.2)


def _cfg(tmp_path: Path) -> Config:
    cfg = demo_config(Config(), tmp_path / "state", 0)
    # without the demo's automations: they would drive the relay these tests command
    return cfg.replace(api=ApiSection(enabled=False, listen="127.0.0.1", port=0), automations=())


async def _wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_demo_gpio_readings_reach_the_state_cache(tmp_path: Path) -> None:
    async with Service(_cfg(tmp_path), demo=GPIO_ONLY) as svc:
        assert svc.store is not None
        await asyncio.wait_for(svc.ready.wait(), 5)
        store = svc.store
        await _wait_for(lambda: store.last_seq >= 8)
        await store.flush()
        devices = {d.id: d for d in await store.devices()}
        assert set(devices) == {
            "gpio-hall-button",
            "gpio-front-door",
            "gpio-hall-pir",
            "gpio-hall-relay",
            "gpio-status-led",
            "person-demo-phone",  # the demo's simulated phone (docs/automations.md)
        }
        assert (await store.state("gpio-status-led"))["switch"][0] is True
        assert svc.health() == {"status": "ok", "reasons": []}


async def test_relay_command_goes_through_the_one_command_path(tmp_path: Path) -> None:
    async with Service(_cfg(tmp_path), demo=GPIO_ONLY) as svc:
        assert svc.store is not None
        store = svc.store
        await _wait_for(lambda: store.last_seq >= 4)
        res = await svc.command("gpio-hall-relay", Command("on"))
        assert res == CommandResult(CommandStatus.OK, state={"switch": True})
        await store.flush()
        await _wait_for(lambda: True)
        assert (await store.state("gpio-hall-relay"))["switch"][0] is True
        res = await svc.command("gpio-hall-button", Command("on"))
        assert res.status is CommandStatus.UNSUPPORTED
        res = await svc.command("gpio-nope", Command("toggle"))
        assert res.status is CommandStatus.UNKNOWN_DEVICE


class _FailingDriver(IdleDriver):
    """A driver whose hardware is broken: every run fails at once."""

    name = "broken"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, sink: Sink) -> None:
        self.runs += 1
        raise OSError(19, "No such device")


async def test_failing_driver_degrades_but_never_kills(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _FailingDriver()
    cfg = Config(gateway=GatewaySection(id="t", state_dir=tmp_path), api=ApiSection(enabled=False))
    fast = ServiceTiming(supervisor=Timing(backoff_initial=0.01, backoff_max=0.05))
    async with Service(cfg, drivers=[broken], timing=fast) as svc:
        sup = svc.supervisors["broken"]
        # sampled between failures: a session that has just started counts as running
        await _wait_for(lambda: broken.runs >= 5 and sup.status.state is State.BACKOFF)
        health = svc.health()
        assert health["status"] == "degraded"
        assert health["reasons"][0].startswith("broken: OSError: [Errno 19] No such device")
        radio = svc.radios()[0]
        assert radio.restarts >= 4
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "broken" in r.message]
    assert len(warnings) == 1, "a failing driver must warn once, not flood the log"


def test_migw_run_demo_stops_cleanly_on_sigint_and_sigterm(tmp_path: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        state = tmp_path / sig.name
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "run",  # the spelling: options after `run` work too
                "--demo",
                "--state-dir",
                str(state),
                "--api-port",
                "0",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        seen = b""
        while b"gpio-" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert b"gpio-" in seen, seen.decode(errors="replace")
        proc.send_signal(sig)
        # the service bounds its own stop (ServiceTiming); this only guards against a hang
        out, _ = proc.communicate(timeout=15)
        log = (seen + out).decode(errors="replace")
        assert proc.returncode == 0, log
        assert "stopped cleanly" in log
        con = sqlite3.connect(state / "state.db")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            n = con.execute("SELECT count(*) FROM devices WHERE transport='gpio'").fetchone()[0]
        finally:
            con.close()
        assert n == 5


async def test_one_service_per_state_dir(tmp_path: Path) -> None:
    from gateway.service import StateDirBusyError

    cfg = Config(gateway=GatewaySection(id="t", state_dir=tmp_path), api=ApiSection(enabled=False))
    async with Service(cfg, drivers=[]):
        with pytest.raises(StateDirBusyError, match=rf"another migw \(pid {os.getpid()}\)"):
            async with Service(cfg, drivers=[]):
                pass
    async with Service(cfg, drivers=[]):  # released on stop
        pass


class _HungDriver(_FailingDriver):
    """A driver whose cleanup ignores cancellation until released."""

    name = "hung"

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.running = asyncio.Event()

    async def run(self, sink: Sink) -> None:
        self.running.set()
        try:
            await asyncio.Event().wait()
        finally:
            while not self.release.is_set():
                try:
                    await self.release.wait()
                except asyncio.CancelledError:
                    continue


async def test_stop_is_bounded_even_when_a_part_hangs(tmp_path: Path) -> None:
    hung = _HungDriver()
    cfg = Config(gateway=GatewaySection(id="t", state_dir=tmp_path), api=ApiSection(enabled=False))
    svc = Service(
        cfg,
        drivers=[hung],
        timing=ServiceTiming(supervisor=Timing(stop_timeout=0.2), stop_grace_s=0.1),
    )
    await svc.__aenter__()
    await asyncio.wait_for(hung.running.wait(), 5)
    store = svc.store
    assert store is not None
    from tests.helpers import reading

    store.add_reading(reading())
    clean = await asyncio.wait_for(svc.stop(), 5)
    assert clean is False
    assert svc.store is None
    # the reading was flushed before the store closed
    con = sqlite3.connect(tmp_path / "state.db")
    assert con.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
    con.close()
    hung.release.set()  # let the abandoned task end so the test leaves nothing behind
    for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
        if task.get_name() in ("hung", "hung-session"):
            await asyncio.wait({task}, timeout=5)


def test_a_busy_api_port_is_a_startup_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """issue 14: a second service on a busy API port kept running and retried forever."""
    from gateway.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["run", "--demo", "--no-zigbee", "--ble-devices", "0"]
        code = main([*argv, "--state-dir", str(tmp_path), "--api-port", str(port)])
    _, err = capfd.readouterr()
    assert code == 2
    assert f"migw cannot run: cannot listen on 127.0.0.1:{port}" in err
    assert "in use" in err
    assert "Traceback" not in err
    assert "never retrieved" not in err
    con = sqlite3.connect(tmp_path / "state.db")  # the store was closed cleanly
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


async def test_a_busy_api_port_fails_the_start_and_releases_the_state_dir(tmp_path: Path) -> None:
    from gateway.api.server import ApiBindError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = demo_config(Config(), tmp_path, port)
        with pytest.raises(ApiBindError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with Service(cfg, demo=GPIO_ONLY):
                pass
    # nothing left running, the lock released: the next service starts
    async with Service(demo_config(Config(), tmp_path, 0), demo=GPIO_ONLY) as svc:
        assert svc.api is not None
        await asyncio.wait_for(svc.api.listening.wait(), 10)


async def test_a_reload_racing_a_stop_starts_nothing(tmp_path: Path) -> None:
    from gateway.config import GpioDevice, GpioKind, GpioSection

    cfg = _cfg(tmp_path)
    svc = Service(cfg, demo=GPIO_ONLY)
    await svc.__aenter__()
    relay = GpioDevice(name="porch-relay", kind=GpioKind.RELAY, pin=5)
    new = cfg.replace(gpio=GpioSection(devices=(*cfg.gpio.devices, relay)))
    reload = asyncio.create_task(svc.reload(new))
    await asyncio.sleep(0)  # the reload is stopping the old GPIO driver ...
    assert await svc.stop() is True  # ... when the service stops
    await reload
    assert {name: sup.state for name, sup in svc.supervisors.items()} == dict.fromkeys(
        svc.supervisors, State.STOPPED
    )
    names = {t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not names & {"gpio", "gpio-session"}
