"""Zigbee: MT frame throughput, ours vs zigpy-znp, and end to end through a pty.

1. ``znp_framer_decoder``: a byte stream of MT frames (the public vectors plus typical
   AF_INCOMING_MSG reports, fed in 64-byte reads like a UART gives them) cut into frames and
   each decoded by the command table. Peer: zigpy-znp 1.x on the same bytes: its
   ``ZnpMtProtocol`` frame extraction plus ``COMMANDS_BY_ID[header].from_frame`` (what its
   ``ZNP.frame_received`` does), without its logging. Ratio = ours / peer (target >= 3).
2. ``znp_decode_zcl_metrics``: ours again, including ZCL decoding and the metric interpreter
   (zigpy-znp does not decode ZCL: no peer).
3. ``znp_pty_end_to_end``: AF_INCOMING_MSG reports written by the simulator into a pty, read
   by the real driver (pyserial-asyncio-fast), decoded to readings into a counting listener.
   The stick's UART at 115200 baud carries at most ~11,500 bytes/s, i.e. about 400 such
   frames per second: the figure shows the headroom over the wire.
Best of three runs for the in-memory figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.zigbee import transport
from drivers.zigbee.coordinator import Coordinator, CoordinatorConfig, supervise
from drivers.zigbee.devices import DeviceRecord
from drivers.zigbee.zcl.interpret import Interpreter
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from hw_mocks.znp import incoming_msg

TARGET_RATIO = 3.0
CHUNK = 64
#: The UART: 115200 baud, 10 bits per byte.
UART_BYTES_PER_S = 115200 / 10

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "zigbee.jsonl"


def _report_frame(i: int) -> bytes:
    zcl = bytes((0x18, i & 0xFF, 0x0A, 0x00, 0x00, 0x29)) + struct.pack("<h", 2000 + i % 500)
    return frames.encode(incoming_msg(0x1000 + i % 16, 0x0402, zcl, stamp=i))


def _corpus(n: int) -> tuple[bytes, int]:
    """A stream of ``n`` frames: every valid vector frame, then reports. (bytes, frames)."""
    vec: list[bytes] = []
    for line in VECTORS.read_text().splitlines():
        d = json.loads(line)
        if d["kind"] in ("znp_frame", "znp_payload") and d.get("zigpy_znp_check", "").startswith(
            ("SYS.", "AF.", "ZDO.", "UTIL.", "AppConfig.", "RPCError.")
        ):
            vec.append(bytes.fromhex(d.get("full_frame_hex_computed") or d["hex"]))
    out = list(vec)
    i = 0
    while len(out) < n:
        out.append(_report_frame(i) if i % 4 else vec[i % len(vec)])
        i += 1
    return b"".join(out[:n]), n


def _chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def _best_rate(fn: Callable[[], int], runs: int = 3) -> float:
    best = 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        count = fn()
        dt = time.perf_counter() - t0
        best = max(best, count / dt if dt > 0 else 0.0)
    return best


def _ours(chunks: list[bytes], expect: int, zcl: bool = False) -> Callable[[], int]:
    def go() -> int:
        framer = frames.Framer()
        interp = Interpreter()
        n = 0
        for chunk in chunks:
            for frame in framer.feed(chunk):
                msg = c.decode(frame)
                n += 1
                if zcl and msg.command is c.AF_INCOMING_MSG:
                    f = msg.fields
                    interp.interpret(
                        str(f["SrcAddr"]), None, f["ClusterId"], f["SrcEndpoint"], f["Data"]
                    )
        if n != expect:
            raise RuntimeError(f"our framer decoded {n} of {expect} frames")
        return n

    return go


def _peer(chunks: list[bytes], expect: int) -> Callable[[], int]:
    import zigpy_znp.commands as zc
    from zigpy_znp.uart import ZnpMtProtocol

    def go() -> int:
        proto = ZnpMtProtocol(None)
        n = 0
        for chunk in chunks:
            proto._buffer += chunk  # what SerialProtocol.data_received does
            for tframe in proto._extract_frames():
                frame = tframe.payload
                zc.COMMANDS_BY_ID[frame.header].from_frame(frame)
                n += 1
        if n != expect:
            raise RuntimeError(f"zigpy-znp decoded {n} of {expect} frames")
        return n

    return go


class _Counter:
    def __init__(self) -> None:
        self.readings = 0

    def device_changed(self, device: DeviceRecord) -> None:
        pass

    def device_left(self, ieee: str) -> None:
        pass

    def reading(self, ieee: str, metric: str, value: object) -> None:
        self.readings += 1

    def event(self, ieee: str, action: str, button: int | None) -> None:
        pass


async def _pty(n: int) -> float:
    from hw_mocks.znp import ZStackSimulator

    transport.BOOTLOADER_TOGGLE_S = 0.0
    counter = _Counter()
    async with ZStackSimulator(devices=("lumi.sensor_ht",), seed=1) as sim:
        coord = Coordinator(CoordinatorConfig(port=sim.path, skip_bootloader=False), counter)
        task = asyncio.create_task(supervise(coord).run())
        try:
            async with asyncio.timeout(30):
                await coord.wait_connected()
                await coord.permit_join(10)
                while not any(r.model for r in coord.table):
                    await asyncio.sleep(0.01)
            dev = sim.devices[0]
            assert dev.nwk is not None
            batch = 40  # stay below the pty buffer: the simulator writes without blocking
            raw = [
                frames.encode(
                    incoming_msg(
                        dev.nwk,
                        0x0402,
                        bytes((0x18, i & 0xFF, 0x0A, 0, 0, 0x29, i & 0xFF, 0x08)),
                        stamp=i,
                    )
                )
                for i in range(n)
            ]
            base = counter.readings
            t0 = time.perf_counter()
            for start in range(0, n, batch):
                for r in raw[start : start + batch]:
                    sim._write(r)
                want = base + min(start + batch, n)
                async with asyncio.timeout(10):
                    while counter.readings < want:
                        await asyncio.sleep(0)
            dt = time.perf_counter() - t0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return n / dt


def run(quick: bool) -> list[dict[str, Any]]:
    logging.getLogger("drivers").setLevel(logging.WARNING)
    n = 2_000 if quick else 20_000
    stream, count = _corpus(n)
    chunks = _chunks(stream)
    ours = _best_rate(_ours(chunks, count))
    figures: list[dict[str, Any]] = []
    fig: dict[str, Any] = {
        "name": "znp_framer_decoder",
        "value": ours,
        "unit": "frames/s",
        "target": TARGET_RATIO,
    }
    try:
        peer = _best_rate(_peer(chunks, count))
    except ImportError:
        fig["peer"] = "zigpy-znp (not installed)"
    else:
        fig.update({"peer": "zigpy-znp", "peer_value": peer, "ratio": ours / peer})
    figures.append(fig)
    figures.append(
        {
            "name": "znp_decode_zcl_metrics",
            "value": _best_rate(_ours(chunks, count, zcl=True)),
            "unit": "frames/s",
        }
    )
    rate = asyncio.run(_pty(500 if quick else 4_000))
    frame_len = len(_report_frame(0))
    wire = UART_BYTES_PER_S / frame_len
    figures.append(
        {
            "name": "znp_pty_end_to_end",
            "value": rate,
            "unit": "frames/s",
            "peer": f"UART 115200 baud ({frame_len}-byte frames)",
            "peer_value": wire,
            "ratio": rate / wire,
        }
    )
    return figures


if __name__ == "__main__":  # pragma: no cover
    for f in run(quick=True):
        print(f)
