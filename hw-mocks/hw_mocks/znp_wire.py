"""The simulated Z-Stack stick's serial side (see :mod:`hw_mocks.znp`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tempfile
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Kind, Message

_LOGGER = logging.getLogger(__name__)

#: Delay of asynchronous indications after their SRSP.
CALLBACK_DELAY = 0.005


@dataclass(frozen=True, slots=True)
class StickOptions:
    """What a simulated stick is built from (:class:`hw_mocks.znp.ZStackSimulator`'s
    keywords of the same names say what each means)."""

    link_path: Path | str | None
    product: int
    ieee: str
    seed: int | None
    corruption_rate: float
    answer_delay: float
    nv_path: Path | str | None


class WireStick:
    """The stick's serial side: a pty whose slave path the host opens like a USB stick, the
    MT framing, the dispatch of requests to ``_h_<command>`` handlers, its identity (ping,
    version) and the faults of the wire: corrupted bytes, slow answers, a mute stick."""

    def __init__(self, options: StickOptions) -> None:
        self.product = options.product
        self.rng = random.Random(options.seed)
        self.corruption_rate = options.corruption_rate
        self.answer_delay = options.answer_delay
        #: Fault: the stick stops answering anything (watchdog test).
        self.mute = False
        #: Fault: requests (by command name) the stick swallows without any answer.
        self.ignore_commands: set[str] = set()
        #: Boards that reset when the host opens the port (RTS/DTR) greet it with a
        #: SYS_RESET_IND (power-up) before answering.
        self.reset_ind_on_open = False
        self._greeted = False
        #: RAM state, gone at power-up.
        self.state = t.DeviceState.HOLD
        self.endpoints: dict[int, tuple[int, ...]] = {}
        self.permit_until = 0.0
        self.counters = {
            "frames_in": 0,
            "frames_out": 0,
            "corrupted": 0,
            "formations": 0,
            "nv_writes": 0,
            "resets": 0,
            "plugged": 0,
            "default_responses": 0,
            "dropped_no_endpoint": 0,
        }
        self.commands_seen: list[str] = []
        self._link_dir: tempfile.TemporaryDirectory[str] | None = None
        link_path = options.link_path
        if link_path is None:
            self._link_dir = tempfile.TemporaryDirectory(prefix="migw-znp-")
            link_path = Path(self._link_dir.name) / "ttyZNP0"
        self.path = str(link_path)
        self._master: int | None = None
        self._slave: int | None = None
        self._framer = frames.Framer()
        self._handles: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        """Remove the temporary directory of the port path (after the last stop)."""
        if self._link_dir is not None:
            self._link_dir.cleanup()
            self._link_dir = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        """Power the stick up on a new pty and (re)create the port path."""
        if self._master is not None:
            return
        assert self._loop is not None
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.symlink(os.ttyname(slave), self.path)
        self._framer = frames.Framer()
        self._greeted = False
        # power-up: RAM state is gone, NV stays
        self.state = t.DeviceState.HOLD
        self.endpoints = {}
        self.permit_until = 0.0
        self._loop.add_reader(master, self._readable)
        self.counters["plugged"] += 1

    def unplug(self) -> None:
        """The stick vanishes: port path removed, the host's open port hangs up."""
        for h in self._handles:
            h.cancel()
        self._handles.clear()
        if self._master is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        os.close(self._master)
        if self._slave is not None:
            os.close(self._slave)
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # --- wire ---------------------------------------------------------------------------

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return  # no host attached (EIO) or a spurious wake-up
        if self.reset_ind_on_open and not self._greeted and not self.mute:
            self._greeted = True
            self._send(c.SYS_RESET_IND.rsp(Reason=t.ResetReason.POWER_UP, **self._release()))
        for frame in self._framer.feed(data):
            self.counters["frames_in"] += 1
            if self.mute:
                continue
            try:
                self._handle(c.decode(frame))
            except Exception as exc:  # noqa: BLE001 - answer like the stick: RPC error
                # header and length only: the bytes may be key material (PRECFGKEY writes)
                _LOGGER.debug(
                    "simulator cannot handle frame %s (%d data bytes): %s",
                    frame.header,
                    len(frame.data),
                    type(exc).__name__,
                )
                hdr = frame.cmd0 | (frame.cmd_id << 8)
                code = (
                    t.ErrorCode.INVALID_COMMAND_ID
                    if c.lookup(frame) is None
                    else t.ErrorCode.INVALID_LENGTH
                )
                self._srsp(c.RPC_ERROR, ErrorCode=code, RequestHeader=hdr)

    def _write(self, raw: bytes) -> None:
        if self._master is None:
            return
        if self.corruption_rate and self.rng.random() < self.corruption_rate:
            b = bytearray(raw)
            i = self.rng.randrange(1, len(b))
            b[i] ^= 1 << self.rng.randrange(8)
            raw = bytes(b)
            self.counters["corrupted"] += 1
        with contextlib.suppress(OSError):  # host not reading: a real UART drops too
            os.write(self._master, raw)

    def _send(self, frame: frames.Frame) -> None:
        self.counters["frames_out"] += 1
        self._write(frames.encode(frame))

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        handle: asyncio.TimerHandle

        def run() -> None:
            self._handles.discard(handle)
            if self.plugged:
                fn()

        handle = self._loop.call_later(delay, run)
        self._handles.add(handle)

    def _srsp(self, cmd: c.CommandDef, **fields: Any) -> None:
        frame = cmd.frame(Kind.RESPONSE, fields)
        if self.answer_delay:
            self._later(self.answer_delay, lambda: self._send(frame))
        else:
            self._send(frame)

    def _callback(self, cmd: c.CommandDef, delay: float = CALLBACK_DELAY, **fields: Any) -> None:
        frame = cmd.frame(Kind.CALLBACK, fields)
        self._later(self.answer_delay + delay, lambda: self._send(frame))

    # --- MT command handlers ------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        if msg.kind is not Kind.REQUEST:
            return
        name = msg.command.name
        self.commands_seen.append(name)
        if name in self.ignore_commands:
            return
        handler = getattr(self, f"_h_{name.lower()}", None)
        if handler is None:
            hdr = (msg.command.header(Kind.REQUEST)[1] << 8) | msg.command.header(Kind.REQUEST)[0]
            self._srsp(c.RPC_ERROR, ErrorCode=t.ErrorCode.INVALID_COMMAND_ID, RequestHeader=hdr)
            return
        handler(msg.fields)
        self._handled(name)

    def _handled(self, name: str) -> None:
        """After the handler of request ``name`` ran (the NV layer saves here)."""

    def _h_sys_ping(self, f: dict[str, Any]) -> None:
        caps = t.MTCapabilities(0x0159 | (0x0400 if self.product else 0))
        self._srsp(c.SYS_PING, Capabilities=caps)

    def _release(self) -> dict[str, Any]:
        """The stick's transport revision, product and Z-Stack release, as SYS_VERSION and
        SYS_RESET_IND report them."""
        return {
            "TransportRev": 2,
            "ProductId": self.product,
            "MajorRel": 2,
            "MinorRel": 7,
            "MaintRel": 1,
        }

    def _h_sys_version(self, f: dict[str, Any]) -> None:
        self._srsp(
            c.SYS_VERSION,
            **self._release(),
            CodeRevision=20240710,
            BootloaderBuildType=t.BootloaderBuildType(0),
            BootloaderRevision=None,
        )
