"""What the stick tells us: joins, announces, leaves, and devices' frames (with Aqara timers).

Callbacks run in the link's reader: they never await; background work (the fast interview,
an IEEE lookup, a default response) goes to ``spawn`` (the session's TaskGroup).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from drivers.errors import DriverError
from drivers.zigbee.context import CoordinatorContext
from drivers.zigbee.control import Control
from drivers.zigbee.devices import DeviceRecord
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.zcl.interpret import Interpreter
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import Message

_LOGGER = logging.getLogger(__name__)

#: Unknown senders looked up at the same time at most (a flood must not queue requests).
MAX_IEEE_LOOKUPS = 4
#: A device update is published when the LQI moved at least this much.
LQI_NOTIFY_DELTA = 8
#: Bytes asked for per AF_DATA_RETRIEVE (an SRSP carries at most ~245).
RETRIEVE_CHUNK = 200
#: Motion is cleared after this long without a new one when neither config nor model says.
DEFAULT_MOTION_CLEAR_S = 90.0

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class ZigbeeListener(Protocol):
    def device_changed(self, device: DeviceRecord) -> None: ...

    def device_left(self, ieee: str) -> None: ...

    def reading(self, ieee: str, metric: str, value: object) -> None: ...

    def event(self, ieee: str, action: str, button: int | None) -> None: ...


class NullListener:
    def device_changed(self, device: DeviceRecord) -> None:
        pass

    def device_left(self, ieee: str) -> None:
        pass

    def reading(self, ieee: str, metric: str, value: object) -> None:
        pass

    def event(self, ieee: str, action: str, button: int | None) -> None:
        pass


class Dispatcher:
    def __init__(
        self,
        ctx: CoordinatorContext,
        control: Control,
        listener: ZigbeeListener,
        motion_clear_s: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.control = control
        self.listener = listener
        self.interpreter = Interpreter()
        self.motion_clear_s = motion_clear_s
        self._spawn: Spawn | None = None
        #: Spawned work whose task has not started yet (closed when the session ends, so a
        #: task cancelled before its first step leaves no never-awaited coroutine).
        self._unstarted: set[Coroutine[Any, Any, None]] = set()
        self._motion_timers: dict[str, asyncio.TimerHandle] = {}
        self._model_seen: dict[str, asyncio.Event] = {}
        self._ieee_lookups: set[int] = set()

    @property
    def pending_lookups(self) -> frozenset[int]:
        """NWK addresses of unknown senders whose IEEE address is being asked for."""
        return frozenset(self._ieee_lookups)

    def attach(self, spawn: Spawn | None) -> None:
        """Where background work goes (None: the session is gone; it is dropped)."""
        self._spawn = spawn

    def reset(self) -> None:
        """A session ended: pending lookups and motion timers go with it."""
        self._spawn = None
        for coro in self._unstarted:
            coro.close()
        self._unstarted.clear()
        self._ieee_lookups.clear()
        for handle in self._motion_timers.values():
            handle.cancel()
        self._motion_timers.clear()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if self._spawn is None:
            coro.close()
            return
        self._unstarted.add(coro)
        self._spawn(self._guarded(coro, name), name)

    async def _guarded(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._unstarted.discard(coro)
        try:
            await coro
        except (DriverError, TimeoutError) as exc:
            _LOGGER.debug("%s: %s", name, exc)

    def on_callback(self, msg: Message) -> None:
        cmd = msg.command
        f = msg.fields
        if cmd is c.AF_INCOMING_MSG:
            self._incoming(
                int(f["SrcAddr"]),
                int(f["ClusterId"]),
                int(f["SrcEndpoint"]),
                bytes(f["Data"]),
                int(f["LQI"]),
                broadcast=bool(f["WasBroadcast"]),
            )
        elif cmd is c.AF_INCOMING_MSG_EXT:
            self._on_incoming_ext(msg)
        elif cmd is c.ZDO_TC_DEV_IND:
            self._seen_device(str(f["SrcIEEE"]), int(f["SrcNwk"]), announce=False)
        elif cmd is c.ZDO_END_DEVICE_ANNCE_IND:
            self._seen_device(str(f["IEEE"]), int(f["NWK"]), announce=True)
        elif cmd is c.ZDO_LEAVE_IND:
            self._left(str(f["IEEE"]))
        elif cmd is c.ZDO_PERMIT_JOIN_IND:
            self.control.permit_join_until = time.monotonic() + int(f["Duration"])
        elif (
            cmd is c.BY_NAME["ZDO_IEEE_ADDR_RSP"]
            and f["Status"] == t.Status.SUCCESS
            and int(f["NWK"]) in self._ieee_lookups
        ):
            self._ieee_lookups.discard(int(f["NWK"]))
            self._seen_device(str(f["IEEE"]), int(f["NWK"]), announce=False)

    def _seen_device(self, ieee: str, nwk: int, *, announce: bool) -> None:
        rec = self.ctx.table.get(ieee)
        now = time.time()
        if rec is None:
            rec = self.ctx.table.put(DeviceRecord(ieee=ieee, nwk=nwk, joined=now, last_seen=now))
            self.ctx.counters["joins"] += 1
            _LOGGER.info("zigbee device %s joined as 0x%04X", ieee, nwk)
            self.ctx.save_table()
            self.listener.device_changed(rec)
        elif rec.nwk != nwk:
            _LOGGER.info("zigbee device %s moved from 0x%04X to 0x%04X", ieee, rec.nwk, nwk)
            rec = self.ctx.table.put(dataclasses.replace(rec, nwk=nwk, last_seen=now))
            self.ctx.save_table()
            self.listener.device_changed(rec)
        if announce and rec.model is None:
            self.spawn(self._interview(rec.ieee), f"zigbee-interview-{ieee}")

    def _left(self, ieee: str) -> None:
        rec = self.ctx.table.remove(ieee)
        if rec is None:
            return
        self.ctx.counters["leaves"] += 1
        self.interpreter.forget(ieee)
        handle = self._motion_timers.pop(ieee, None)
        if handle is not None:
            handle.cancel()
        self.ctx.save_table()
        _LOGGER.info("zigbee device %s left", ieee)
        self.listener.device_left(ieee)

    async def _interview(self, ieee: str) -> None:
        """Fast interview for sleepy devices: ask Basic model/manufacturer once, right away.

        Xiaomi devices usually send their model in a Basic report right after joining; the
        read covers the ones that do not. Whatever arrives first identifies the device.
        """
        rec = self.ctx.table.get(ieee)
        if rec is None:
            return
        seen = self._model_seen.setdefault(ieee, asyncio.Event())
        if rec.model is None:
            data = zf.read_attributes(cl.BASIC, self.control.next_tsn(), (0x0004, 0x0005))
            with contextlib.suppress(DriverError, TimeoutError):
                await self.control.send_zcl(rec.nwk, 1, cl.BASIC, data, ack=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ctx.timing.interview_timeout):
                await seen.wait()
        self._model_seen.pop(ieee, None)

    def _on_incoming_ext(self, msg: Message) -> None:
        """AF_INCOMING_MSG_EXT: a long source address, or a payload too large for one MT
        frame (the stick keeps it; it is fetched with AF_DATA_RETRIEVE, then released)."""
        f = msg.fields
        src = bytes(f["SrcAddr"])
        if f["SrcAddrMode"] == t.AddrMode.NWK:
            nwk = int.from_bytes(src[:2], "little")
        elif f["SrcAddrMode"] == t.AddrMode.IEEE and (rec := self.ctx.table.get(src[::-1].hex())):
            nwk = rec.nwk
        else:  # group, broadcast or inter-PAN source, or a stranger's IEEE: not ours
            self.ctx.counters["unknown_source"] += 1
            return
        args = (nwk, int(f["ClusterId"]), int(f["SrcEndpoint"]))
        lqi, broadcast = int(f["LQI"]), bool(f["WasBroadcast"])
        data = f["Data"]
        if isinstance(data, cd.Held):
            self.spawn(
                self._retrieve(int(f["TimeStamp"]), data.length, args, lqi, broadcast),
                f"zigbee-retrieve-{nwk:04x}",
            )
            return
        self._incoming(*args, bytes(data), lqi, broadcast=broadcast)

    async def _retrieve(
        self,
        stamp: int,
        length: int,
        args: tuple[int, int, int],
        lqi: int,
        broadcast: bool,
    ) -> None:
        api = self.ctx.require_api()
        data = b""
        try:
            while len(data) < length:
                n = min(RETRIEVE_CHUNK, length - len(data))
                rsp = await api.request(
                    c.AF_DATA_RETRIEVE, TimeStamp=stamp, Index=len(data), Length=n
                )
                chunk = bytes(rsp["Data"])
                if rsp["Status"] != t.Status.SUCCESS or not chunk:
                    self.ctx.counters["retrieve_failed"] += 1
                    _LOGGER.debug("AF_DATA_RETRIEVE of %d bytes failed at %d", length, len(data))
                    return
                data += chunk
        finally:  # a zero-length retrieve releases the stick's buffer (TI MT_AF.c)
            with contextlib.suppress(DriverError, TimeoutError):
                await api.request(c.AF_DATA_RETRIEVE, TimeStamp=stamp, Index=0, Length=0)
        self._incoming(*args, data[:length], lqi, broadcast=broadcast)

    def _incoming(
        self, nwk: int, cluster: int, src_ep: int, data: bytes, lqi: int, *, broadcast: bool
    ) -> None:
        rec = self.ctx.table.by_nwk(nwk)
        if rec is None:
            self.ctx.counters["unknown_source"] += 1
            if (
                nwk not in self._ieee_lookups
                and len(self._ieee_lookups) < MAX_IEEE_LOOKUPS
                and self._spawn is not None
            ):
                self._ieee_lookups.add(nwk)
                self.spawn(self._lookup_ieee(nwk), f"zigbee-ieee-{nwk:04x}")
            return
        res = self.interpreter.interpret(rec.ieee, rec.model, cluster, src_ep, data)
        if res.duplicate:
            return
        changes: dict[str, Any] = {"last_seen": time.time()}
        notify = rec.lqi is None or abs(rec.lqi - lqi) >= LQI_NOTIFY_DELTA
        changes["lqi"] = lqi
        if src_ep not in rec.endpoints:
            changes["endpoints"] = tuple(sorted({*rec.endpoints, src_ep}))
        if res.model is not None and res.model != rec.model:
            spec = xiaomi.spec_for(res.model)
            changes["model"] = res.model
            changes["sleepy"] = spec.sleepy if spec is not None else None
            notify = True
            _LOGGER.info("zigbee device %s is a %s", rec.ieee, res.model)
        if res.manufacturer is not None and res.manufacturer != rec.manufacturer:
            changes["manufacturer"] = res.manufacturer
            notify = True
        rec = self.ctx.table.update(rec.ieee, **changes) or rec
        if "model" in changes:
            self.ctx.save_table()
            ev = self._model_seen.get(rec.ieee)
            if ev is not None:
                ev.set()
        if notify:
            self.listener.device_changed(rec)
        for metric, value in res.readings:
            self.listener.reading(rec.ieee, metric, value)
        for action, button in res.events:
            self.listener.event(rec.ieee, action, button)
        if res.motion:
            self._arm_motion_clear(rec)
        if res.default_response and res.frame is not None and not broadcast:
            data = zf.default_response(res.frame.header)
            self.spawn(
                self.control.send_zcl_quiet(nwk, src_ep, cluster, data),
                f"zigbee-defrsp-{nwk:04x}",
            )

    def _arm_motion_clear(self, rec: DeviceRecord) -> None:
        spec = xiaomi.spec_for(rec.model)
        delay = (
            self.motion_clear_s or (spec.motion_clear_s if spec else None) or DEFAULT_MOTION_CLEAR_S
        )
        old = self._motion_timers.pop(rec.ieee, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._motion_timers[rec.ieee] = loop.call_later(delay, self._motion_clear, rec.ieee)

    def _motion_clear(self, ieee: str) -> None:
        self._motion_timers.pop(ieee, None)
        if self.ctx.table.get(ieee) is not None:
            self.listener.reading(ieee, "motion", False)

    async def _lookup_ieee(self, nwk: int) -> None:
        try:
            api = self.ctx.require_api()
            await api.request(c.BY_NAME["ZDO_IEEE_ADDR_REQ"], NWK=nwk, RequestType=0, StartIndex=0)
            await asyncio.sleep(self.ctx.timing.interview_timeout)
        finally:  # a failed or cancelled lookup must not block the next one for this sender
            self._ieee_lookups.discard(nwk)
