"""A private D-Bus system bus with a BlueZ stand-in (tests/bluez_mock.py on python-dbusmock),
for running bleak's real BlueZ backend in tests.

:class:`FakeBluez` starts ``dbus-daemon`` on a socket in a temporary directory and the mock
bluetoothd on it (the system python with Debian's python3-dbusmock, installed by
tools/system-deps.sh), points ``DBUS_SYSTEM_BUS_ADDRESS`` at it, and drives the mock through
its ``org.bluez.Mock`` methods over dbus_fast (bleak's own D-Bus library). "Restarting
bluetoothd" is stopping the mock process and starting a new one on the same bus.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

HERE = Path(__file__).parent
TEMPLATE = HERE / "bluez_mock.py"
#: The interpreter that has dbus-python, GLib and dbusmock (Debian's python3-dbusmock).
SYSTEM_PYTHON = "/usr/bin/python3"

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""


def missing() -> str | None:
    """What is missing to run these tests on this host (None: nothing)."""
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon (apt-get install dbus-daemon)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import dbusmock, dbus, gi"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return "python3-dbusmock (apt-get install python3-dbusmock)"
    return None


def require() -> None:
    """Skip when the tools are missing; in CI (CI=true) that is a failure instead."""
    what = missing()
    if what is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install {what} (tools/system-deps.sh)")
        pytest.skip(f"needs {what}")


def _is_bleak_watcher(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "__qualname__", "")
    return not task.done() and code.endswith("_monitor_bus_disconnect")


class FakeBluez:
    """The private bus and the mock bluetoothd; use as ``async with FakeBluez(tmp) as bz``."""

    def __init__(self, directory: Path, *, adapters: tuple[str, ...] = ("hci0",),
                 monitors: bool = True) -> None:  # fmt: skip
        self.directory = directory
        self.socket = directory / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.params = {"adapters": list(adapters), "monitors": monitors}
        self._daemon: asyncio.subprocess.Process | None = None
        self._mock: asyncio.subprocess.Process | None = None
        self._bus: MessageBus | None = None
        self._old_env: str | None = None

    async def __aenter__(self) -> FakeBluez:
        config = self.directory / "bus.conf"
        config.write_text(_CONFIG.format(socket=self.socket))
        self._daemon = await asyncio.create_subprocess_exec(
            "dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert self._daemon.stdout is not None
        async with asyncio.timeout(20):
            await self._daemon.stdout.readline()  # printed once it listens
        self._old_env = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        self._bus = await MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect()
        await self.start_bluetoothd()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._bus is not None:
            self._bus.disconnect()
        await self.stop_bluetoothd()
        if self._daemon is not None:
            self._daemon.terminate()
            async with asyncio.timeout(10):
                await self._daemon.wait()
        if self._old_env is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self._old_env
        # bleak's BlueZ manager (one per event loop) notices its bus is gone in a task of
        # its own: let that finish before the test ends
        async with asyncio.timeout(10):
            while any(_is_bleak_watcher(t) for t in asyncio.all_tasks()):
                await asyncio.sleep(0.02)

    # --- bluetoothd ------------------------------------------------------------------------

    async def start_bluetoothd(self) -> None:
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        self._mock = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, "-m", "dbusmock", "--template", str(TEMPLATE),
            "-p", json.dumps(self.params),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=None if os.environ.get("BLUEZ_MOCK_DEBUG") else asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(20):
            while not await self._has_owner():
                if self._mock.returncode is not None:
                    raise RuntimeError("the BlueZ mock exited at start")
                await asyncio.sleep(0.05)

    async def stop_bluetoothd(self) -> None:
        mock, self._mock = self._mock, None
        if mock is not None and mock.returncode is None:
            mock.terminate()
            async with asyncio.timeout(10):
                await mock.wait()

    async def restart_bluetoothd(self) -> None:
        await self.stop_bluetoothd()
        await self.start_bluetoothd()

    async def _has_owner(self) -> bool:
        reply = await self._call(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
            "NameHasOwner", "s", ["org.bluez"],
        )  # fmt: skip
        return bool(reply[0])

    # --- the mock's controls -----------------------------------------------------------------

    async def _call(
        self, dest: str, path: str, iface: str, member: str, sig: str = "", body: Any = ()
    ) -> list[Any]:
        assert self._bus is not None
        reply = await self._bus.call(
            Message(destination=dest, path=path, interface=iface, member=member,
                    signature=sig, body=list(body))
        )  # fmt: skip
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
        return list(reply.body)

    async def mock(self, member: str, sig: str = "", *body: Any) -> list[Any]:
        return await self._call("org.bluez", "/", "org.bluez.Mock", member, sig, body)

    async def add_adapter(self, name: str = "hci0") -> None:
        await self.mock("AddAdapter", "s", name)

    async def remove_adapter(self, name: str = "hci0") -> None:
        await self.mock("RemoveAdapter", "s", name)

    async def set_powered(self, on: bool, name: str = "hci0") -> None:
        await self.mock("SetPowered", "sb", name, on)

    async def state(self, name: str = "hci0") -> dict[str, Any]:
        (state,) = await self.mock("State", "s", name)
        return {k: v.value if isinstance(v, Variant) else v for k, v in state.items()}

    async def advertise(
        self,
        address: str,
        service_data: dict[str, bytes],
        *,
        rssi: int = -60,
        name: str = "",
        adapter: str = "hci0",
    ) -> bool:
        (heard,) = await self.mock(
            "Advertise", "ssnsa{say}", adapter, address, rssi, name, service_data
        )
        return bool(heard)
