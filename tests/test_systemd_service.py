"""A real ``migw run --demo`` process under a fake systemd: a datagram server on an abstract
notify socket records READY, WATCHDOG, RELOADING/READY on SIGHUP (good and bad config) and
STOPPING on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import migw_command

RECV_TIMEOUT_S = 30.0

GOOD = """\
[gateway]
log_level = "INFO"

[api]
enabled = false
"""

RELOADED = """\
[gateway]
log_level = "DEBUG"

[api]
enabled = false

[[gpio.devices]]
name = "porch-relay"
kind = "relay"
pin = 5
"""

BAD = """\
[gateway]
colour = "red"
"""


class FakeSystemd:
    def __init__(self) -> None:
        self.name = f"migw-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(RECV_TIMEOUT_S)
        self.messages: list[str] = []

    def until(self, predicate: Callable[[str], bool]) -> list[str]:
        got: list[str] = []
        while True:
            msg = self.sock.recv(4096).decode()
            self.messages.append(msg)
            got.append(msg)
            if predicate(msg):
                return got


@pytest.fixture
def fake_systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    try:
        yield fake
    finally:
        fake.sock.close()


def is_ping(msg: str) -> bool:
    return msg == "WATCHDOG=1"


def test_demo_service_under_a_fake_systemd(tmp_path: Path, fake_systemd: FakeSystemd) -> None:
    config = tmp_path / "config.toml"
    config.write_text(GOOD)
    log = tmp_path / "migw.log"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": "@" + fake_systemd.name,
        "WATCHDOG_USEC": "400000",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("WATCHDOG_PID", None)
    args = [
        *migw_command(),
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
        "run",
        "--demo",
        "--ble-devices",
        "0",
        "--no-zigbee",
    ]
    with log.open("w") as out, subprocess.Popen(args, env=env, stdout=out, stderr=out) as proc:
        try:
            first = fake_systemd.until(lambda m: True)[0]
            assert first.startswith("READY=1\nSTATUS="), first
            # periodic pings at half of WATCHDOG_USEC
            for _ in range(3):
                fake_systemd.until(is_ping)

            # SIGHUP with a good new config: RELOADING=1, the reload, READY=1
            config.write_text(RELOADED)
            proc.send_signal(signal.SIGHUP)
            got = fake_systemd.until(lambda m: m.startswith("READY=1"))
            reloading = [m for m in got if m.startswith("RELOADING=1")]
            assert len(reloading) == 1
            assert reloading[0].split("\n")[1].startswith("MONOTONIC_USEC=")
            assert "last reload rejected" not in got[-1]
            fake_systemd.until(is_ping)

            # SIGHUP with an invalid config: rejected, old config kept, still READY and pinging
            config.write_text(BAD)
            proc.send_signal(signal.SIGHUP)
            got = fake_systemd.until(lambda m: m.startswith("READY=1"))
            assert any(m.startswith("RELOADING=1") for m in got)
            assert got[-1].endswith("| last reload rejected")
            fake_systemd.until(is_ping)

            proc.send_signal(signal.SIGTERM)
            fake_systemd.until(lambda m: m.startswith("STOPPING=1"))
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "configuration reloaded: changed: gateway.log_level, gpio; restarted: gpio" in text, text
    # the DEBUG level applied live: debug lines appear after the reload, none before it
    before, after = text.split("configuration reloaded", 1)
    assert " DEBUG " not in before
    assert "DEBUG   gateway.systemd: watchdog: " in after
    assert "configuration reload rejected, old config kept: gateway.colour (line 2)" in after
    assert "migw stopped cleanly" in after
    # READY came first, exactly once per start and per reload
    assert sum(m.startswith("READY=1") for m in fake_systemd.messages) == 3
