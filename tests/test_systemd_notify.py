"""gateway.systemd: the notify protocol against a fake notify socket (a datagram server in the
test), with the real Service running in-process: READY, STATUS, health-gated WATCHDOG pings,
STOPPING and reload."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.supervisor import State
from gateway import systemd
from gateway.adapters import DemoOptions
from gateway.config import (
    ApiSection,
    Config,
    GpioDevice,
    GpioKind,
    GpioSection,
    Secret,
    StoreSection,
)
from gateway.demo import demo_config
from gateway.errors import ConfigError
from gateway.service import Service, ServiceTiming
from gateway.store import StoreLimits
from gateway.systemd import Notifier, SystemdIntegration, watchdog_interval

GPIO_ONLY = DemoOptions(ble_devices=0, zigbee=False, gpio_interval=0.2)
RECV_TIMEOUT_S = 20.0


# ---------------------------------------------------------------------------------- notifier


@pytest.fixture
def path_server(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        yield sock, path
    finally:
        sock.close()


@pytest.fixture
def abstract_server() -> Iterator[tuple[socket.socket, str]]:
    name = f"migw-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def test_notifier_is_a_no_op_without_notify_socket() -> None:
    notifier = Notifier.from_env({})
    assert notifier.enabled is False
    assert notifier.notify("READY=1") is False
    assert notifier.failures == 0


def test_notifier_sends_to_a_path_socket(path_server: tuple[socket.socket, str]) -> None:
    sock, path = path_server
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    try:
        assert notifier.notify("READY=1", "STATUS=two\nlines") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=two lines"
    finally:
        notifier.close()


def test_notifier_sends_to_an_abstract_socket(abstract_server: tuple[socket.socket, str]) -> None:
    sock, name = abstract_server
    notifier = Notifier.from_env({"NOTIFY_SOCKET": name})
    try:
        assert notifier.notify("WATCHDOG=1") is True
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        notifier.close()


def test_notifier_survives_a_vanished_systemd(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    try:
        assert notifier.notify("WATCHDOG=1") is False
        assert notifier.notify("WATCHDOG=1") is False
        assert notifier.failures == 2
    finally:
        notifier.close()


def test_unsupported_notify_socket_is_ignored() -> None:
    assert Notifier("vsock:2:1234").enabled is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env, pid=4242) == expected


# ---------------------------------------------------------------------------------- service


class Recorder:
    """Reads the fake notify socket from the test's event loop."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.messages: list[str] = []

    async def next(self) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), RECV_TIMEOUT_S)
        msg = data.decode()
        self.messages.append(msg)
        return msg

    async def until(self, predicate: Callable[[str], bool]) -> list[str]:
        """Messages received up to and including the first that matches."""
        got: list[str] = []
        while True:
            msg = await self.next()
            got.append(msg)
            if predicate(msg):
                return got

    def drain(self) -> list[str]:
        got: list[str] = []
        while True:
            try:
                got.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return got


def _config(tmp_path: Path, *, api: bool = False) -> Config:
    cfg = demo_config(Config(), tmp_path / "state", 0)
    return cfg.replace(api=ApiSection(enabled=api, listen="127.0.0.1", port=0))


@pytest.fixture
def recorder(path_server: tuple[socket.socket, str]) -> Recorder:
    return Recorder(path_server[0])


def _integration(
    svc: Service,
    path: str,
    *,
    reload_config: Callable[[], Config] | None = None,
    lag_threshold_s: float = 5.0,
) -> SystemdIntegration:
    return SystemdIntegration(
        svc,
        notifier=Notifier(path),
        watchdog_s=0.2,
        lag_threshold_s=lag_threshold_s,
        reload_config=reload_config,
    )


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(RECV_TIMEOUT_S):
        while not predicate():
            await asyncio.sleep(0.02)


def is_ping(msg: str) -> bool:
    return msg == "WATCHDOG=1"


async def test_ready_after_store_api_and_radios_then_periodic_pings_then_stopping(
    tmp_path: Path, path_server: tuple[socket.socket, str], recorder: Recorder
) -> None:
    svc = Service(_config(tmp_path, api=True), demo=GPIO_ONLY)
    async with svc, _integration(svc, path_server[1]) as sd:
        first = await recorder.next()
        # READY=1 comes with the first status line, once the store is open, every part is
        # supervised and the LAN API listens
        assert first.startswith("READY=1\nSTATUS=ok | ")
        assert " gpio=ok " in first.replace("|", " ")
        assert " api=ok " in first.replace("|", " ")
        assert svc.store is not None
        assert svc.ready.is_set()
        parts = {d.name for d in svc.drivers} | {c.name for c in svc.components}
        assert set(svc.supervisors) == parts
        assert {"gpio", "api"} <= parts
        api = next(c for c in svc.components if c.name == "api")
        listening = getattr(api, "listening", None)
        assert isinstance(listening, asyncio.Event)
        assert listening.is_set()
        pings = 0
        while pings < 3:
            pings += is_ping(await recorder.next())
        assert sd.withheld == 0
        sd.stopping()
        assert await recorder.until(lambda m: m.startswith("STOPPING=1")) != []
    assert recorder.drain() == []  # exactly one STOPPING=1, nothing after it


async def test_pings_stop_while_the_event_loop_is_blocked(
    tmp_path: Path, path_server: tuple[socket.socket, str], recorder: Recorder
) -> None:
    svc = Service(_config(tmp_path), demo=GPIO_ONLY)
    async with svc, _integration(svc, path_server[1], lag_threshold_s=0.3) as sd:
        await recorder.until(is_ping)
        recorder.drain()
        time.sleep(1.2)  # noqa: ASYNC251 - on purpose: a stuck callback stalls the whole loop
        after_block = await recorder.until(lambda m: "event loop lag" in m)
        # nothing but status lines between the stall and the status that explains it
        assert not any(is_ping(m) for m in after_block)
        assert after_block[-1].startswith("STATUS=watchdog withheld (event loop lag ")
        # pings resume only once a whole interval passed without lag, after a status line
        # saying so
        resumed = await recorder.until(is_ping)
        assert not any("watchdog withheld" in m for m in resumed[-2:])
        assert any(m.startswith("STATUS=") and "withheld" not in m for m in resumed)
        assert sd.withheld >= 1


async def test_pings_stop_while_store_writes_fail(
    tmp_path: Path,
    path_server: tuple[socket.socket, str],
    recorder: Recorder,
) -> None:
    timing = ServiceTiming(store=StoreLimits(retry_max_s=0.3))
    svc = Service(_config(tmp_path), drivers=[], timing=timing)
    async with svc, _integration(svc, path_server[1]) as sd:
        await recorder.until(is_ping)
        assert svc.store is not None
        assert svc.ingest is not None
        sink = svc.ingest.sink_for("test")
        # the SD card turns read-only under SQLite: every commit fails with a real sqlite3 error
        await svc.store._db.execute("PRAGMA query_only=ON")
        sink.reading("test-sensor", "temperature", 21.5)
        failing = await recorder.until(lambda m: "store: writes failing" in m)
        assert failing[-1].startswith("STATUS=watchdog withheld (store: writes failing (")
        withheld = sd.withheld
        await _until(lambda: sd.withheld >= withheld + 2)
        assert not any(is_ping(m) for m in recorder.drain())
        # writes work again: the queued reading commits and pings resume
        await svc.store._db.execute("PRAGMA query_only=OFF")
        resumed = await recorder.until(is_ping)
        assert any(m.startswith("STATUS=") and "withheld" not in m for m in resumed)
        await svc.store.flush()
        assert "temperature" in await svc.store.state("test-sensor")


async def test_a_hung_supervised_task_withholds_pings(
    tmp_path: Path, path_server: tuple[socket.socket, str], recorder: Recorder
) -> None:
    """A radio task that died (not just failed and retried) counts as not alive."""
    svc = Service(_config(tmp_path), demo=GPIO_ONLY)
    async with svc, _integration(svc, path_server[1]):
        await recorder.until(is_ping)
        await svc.supervisors["gpio"].stop()  # its supervisor ended, the service did not
        got = await recorder.until(lambda m: "gpio: supervisor task ended" in m)
        assert not any(is_ping(m) for m in got[1:])


# ---------------------------------------------------------------------------------- reload


RELAY = GpioDevice(name="porch-relay", kind=GpioKind.RELAY, pin=5)


async def test_reload_restarts_changed_parts_applies_log_level_and_keeps_the_rest(
    tmp_path: Path, path_server: tuple[socket.socket, str], recorder: Recorder
) -> None:
    base = _config(tmp_path)
    configs: list[Config] = []

    def load() -> Config:
        return configs[-1]

    root = logging.getLogger()
    old_level = root.level
    svc = Service(base, demo=GPIO_ONLY)
    try:
        async with svc, _integration(svc, path_server[1], reload_config=load) as sd:
            await recorder.until(is_ping)
            old_gpio = svc.driver("gpio")
            old_sup = svc.supervisors["gpio"]
            new_devices = (*base.gpio.devices, RELAY)
            configs.append(
                base.replace(
                    gateway=dataclasses.replace(
                        base.gateway, log_level="DEBUG", state_dir=tmp_path / "elsewhere"
                    ),
                    store=StoreSection(batch_max_ms=50),
                    gpio=GpioSection(devices=new_devices),
                )
            )
            outcome = await sd.reload()
            assert outcome == systemd.ReloadOutcome(
                True,
                "reloaded: changed: gateway.log_level, gpio; restarted: gpio; "
                "needs a service restart: gateway.state_dir, store",
            )
            got = await recorder.until(lambda m: m.startswith("READY=1"))
            assert got[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert root.level == logging.DEBUG
            # the gpio driver was rebuilt from the new config; the running values of
            # keys that need a restart were kept
            new_gpio = svc.driver("gpio")
            assert new_gpio is not None
            assert new_gpio is not old_gpio
            assert old_sup.state is State.STOPPED
            assert svc.config.gpio.devices == new_devices
            assert svc.config.gateway.state_dir == base.gateway.state_dir
            assert svc.config.store == base.store
            assert new_gpio.owns("gpio-porch-relay")
            # the rebuilt driver runs: the new relay reports its state
            assert svc.store is not None
            store = svc.store
            async with asyncio.timeout(RECV_TIMEOUT_S):
                while "switch" not in await store.state("gpio-porch-relay"):
                    await asyncio.sleep(0.05)
            await recorder.until(is_ping)
    finally:
        root.setLevel(old_level)


async def test_reload_with_an_invalid_config_keeps_the_old_one(
    tmp_path: Path, path_server: tuple[socket.socket, str], recorder: Recorder
) -> None:
    base = _config(tmp_path)

    def load() -> Config:
        raise ConfigError("unknown key", path="gateway.colour", line=3)

    svc = Service(base, demo=GPIO_ONLY)
    async with svc, _integration(svc, path_server[1], reload_config=load) as sd:
        await recorder.until(is_ping)
        gpio = svc.driver("gpio")
        outcome = await sd.reload()
        assert outcome == systemd.ReloadOutcome(
            False, "reload rejected, old config kept: gateway.colour (line 3): unknown key"
        )
        got = await recorder.until(lambda m: m.startswith("READY=1"))
        assert got[0].startswith("RELOADING=1\n")
        assert got[-1].endswith(" | last reload rejected")
        assert svc.config is base
        assert svc.driver("gpio") is gpio
        await recorder.until(is_ping)


async def test_a_reload_whose_loader_crashes_still_answers_ready(
    tmp_path: Path, path_server: tuple[socket.socket, str], recorder: Recorder
) -> None:
    """Path.expanduser('~nosuchuser') raises RuntimeError, deep TOML RecursionError: the
    RELOADING=1 sent to systemd must still be followed by READY=1."""
    base = _config(tmp_path)

    def load() -> Config:
        raise RuntimeError("Could not determine home directory.")

    svc = Service(base, demo=GPIO_ONLY)
    async with svc, _integration(svc, path_server[1], reload_config=load) as sd:
        await recorder.until(is_ping)
        outcome = await sd.reload()
        assert outcome == systemd.ReloadOutcome(
            False,
            "reload rejected, old config kept: RuntimeError: Could not determine home directory.",
        )
        got = await recorder.until(lambda m: m.startswith("READY=1"))
        assert got[0].startswith("RELOADING=1\n")
        assert svc.config is base


async def test_reload_without_changes_restarts_nothing(tmp_path: Path) -> None:
    base = _config(tmp_path)
    svc = Service(base, demo=GPIO_ONLY)
    async with svc:
        await asyncio.wait_for(svc.ready.wait(), RECV_TIMEOUT_S)
        sup = svc.supervisors["gpio"]
        result = await svc.reload(dataclasses.replace(base))
        assert result.summary() == "changed: nothing"
        assert svc.supervisors["gpio"] is sup
        assert sup.state is not State.STOPPED


def test_no_notify_socket_in_the_test_environment() -> None:
    """The in-process tests above pass their socket explicitly; the environment is clean."""
    assert "NOTIFY_SOCKET" not in os.environ


async def test_reload_restarts_the_uplink_on_upstream_change_and_ble_on_new_keys(
    tmp_path: Path,
) -> None:
    base = _config(tmp_path)
    svc = Service(base, demo=DemoOptions(ble_devices=2, zigbee=False, gpio_interval=0.2))
    async with svc:
        await asyncio.wait_for(svc.ready.wait(), RECV_TIMEOUT_S)
        sync = next(c for c in svc.components if c.name == "sync")
        ble = svc.driver("ble")
        assert ble is not None
        # let the BLE driver get going: cancelling it while its scanner starts hangs (a BLE
        # driver bug reported separately, not what this test is about)
        await _until(lambda: ble.health().info["devices"] != "0")
        tasks = dict(svc.supervisors)
        assert {"gpio", "ble", "sync"} <= set(tasks)

        result = await svc.reload(
            base.replace(upstream=dataclasses.replace(base.upstream, url="mqtt://127.0.0.1:1"))
        )
        assert (result.changed, result.restarted, result.failed) == (("upstream",), ("sync",), ())
        new_sync = next(c for c in svc.components if c.name == "sync")
        assert new_sync is not sync
        assert tasks["sync"].state is State.STOPPED
        assert svc.driver("ble") is ble
        assert svc.supervisors["gpio"] is tasks["gpio"]
        assert svc.supervisors["ble"] is tasks["ble"]

        keyed = svc.config.replace(
            ble=dataclasses.replace(
                base.ble, keys={"A4:C1:38:00:00:01": Secret("00112233445566778899aabbccddeeff")}
            )
        )
        result = await svc.reload(keyed)
        assert (result.changed, result.restarted, result.failed) == (("ble",), ("ble",), ())
        new_ble = svc.driver("ble")
        assert new_ble is not None
        assert new_ble is not ble
        await _until(lambda: new_ble.health().info["devices"] != "0")
        assert tasks["ble"].state is State.STOPPED
        assert svc.supervisors["gpio"] is tasks["gpio"]
        assert next(c for c in svc.components if c.name == "sync") is new_sync
        # the secret never shows in what a reload reports
        assert "0011" not in result.summary()
