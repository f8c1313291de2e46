"""A TI Z-Stack coordinator (ZNP) simulator on a real pty.

The real driver opens the pty's slave side like a USB stick. The simulator answers the MT
commands a coordinator host uses (NV store, version, formation through BDB or
STARTUP_FROM_APP, endpoint registration, permit join, AF data requests with data confirms),
runs scripted Aqara devices (:mod:`hw_mocks.aqara`) that join, announce, report and obey
on/off, and injects faults: corrupted bytes, slow answers, a stick that stops answering,
broken NVRAM, and unplug/replug (the port path vanishes and comes back, NV kept).

Run ``python -m hw_mocks.znp`` to get a stick with one device of every model on a pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drivers.aio import cancel_and_wait
from drivers.errors import ParseError
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t
from hw_mocks.aqara import MODELS, Report, SimDevice
from hw_mocks.znp_layout import OK
from hw_mocks.znp_wire import CALLBACK_DELAY, StickOptions
from hw_mocks.znp_zdo import QueryStick

#: A payload longer than this reaches the host as AF_INCOMING_MSG_EXT + AF_DATA_RETRIEVE.
HOLD_OVER = 200
#: How long a sleepy device stays awake after it sent something.
AWAKE_S = 3.0
#: Delay before a MAC_TRANSACTION_EXPIRED confirm for a sleeping device (real: ~7.7 s).
EXPIRE_S = 0.2
#: Gap between the join of two pending devices.
JOIN_GAP_S = 0.05


def incoming_msg(
    src: int,
    cluster: int,
    data: bytes,
    *,
    src_ep: int = 1,
    dst_ep: int = 1,
    broadcast: bool = False,
    lqi: int = 100,
    stamp: int = 0,
) -> frames.Frame:
    """AF_INCOMING_MSG as Z-Stack sends it for a device's ZCL frame: group 0, no APS
    security, the MAC source the same as the network source (one hop), radius 29."""
    return c.AF_INCOMING_MSG.rsp(
        GroupId=0,
        ClusterId=cluster,
        SrcAddr=src,
        SrcEndpoint=src_ep,
        DstEndpoint=dst_ep,
        WasBroadcast=int(broadcast),
        LQI=lqi,
        SecurityUse=0,
        TimeStamp=stamp,
        TSN=0,
        Data=data,
        MacSrcAddr=src,
        MsgResultRadius=29,
    )


class ZStackSimulator(QueryStick):
    """The whole stick (layers: :class:`~hw_mocks.znp_wire.WireStick`,
    :class:`~hw_mocks.znp_nv.NvStick`, :class:`~hw_mocks.znp_network.NetworkStick`,
    :class:`~hw_mocks.znp_zdo.QueryStick`) and its devices' traffic: joins, reports, AF
    data requests and their confirms."""

    def __init__(
        self,
        *,
        link_path: Path | str | None = None,
        product: int = 1,
        devices: Iterable[SimDevice | str] = (),
        report_interval: float | None = None,
        corruption_rate: float = 0.0,
        answer_delay: float = 0.0,
        ieee: str = "00124b0001c0ffee",
        seed: int | None = None,
        nv_path: Path | str | None = None,
        awake_s: float = AWAKE_S,
    ) -> None:
        super().__init__(
            StickOptions(link_path, product, ieee, seed, corruption_rate, answer_delay, nv_path)
        )
        self.report_interval = report_interval
        #: How long a sleepy device stays awake after it sent something (0: a command to
        #: it always expires).
        self.awake_s = awake_s
        for d in devices:
            self.add_device(d)
        #: Large incoming payloads kept for AF_DATA_RETRIEVE, by their timestamp.
        self.held: dict[int, bytes] = {}
        self._held_stamp = 0
        self._load_nv()
        self._reporter: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> ZStackSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.plug()
        if self.report_interval:
            self._reporter = asyncio.create_task(self._report_loop(), name="znp-sim-reporter")

    async def stop(self) -> None:
        reporter, self._reporter = self._reporter, None
        await cancel_and_wait(reporter)
        self.unplug()
        self.save_nv()

    # --- devices ------------------------------------------------------------------------

    def add_device(self, device: SimDevice | str, ieee: str | None = None) -> SimDevice:
        if isinstance(device, str):
            if device not in MODELS:
                raise ValueError(f"no simulated model {device!r}")
            ieee = ieee or "00158d00" + self.rng.getrandbits(32).to_bytes(4, "big").hex()
            device = SimDevice(device, ieee, rng=random.Random(self.rng.random()))
        self.devices.append(device)
        return device

    def device(self, model: str) -> SimDevice:
        return next(d for d in self.devices if d.model == model)

    def by_nwk(self, nwk: int) -> SimDevice | None:
        return next((d for d in self.devices if d.nwk == nwk), None)

    def join(self, dev: SimDevice) -> None:
        """The device joins through the coordinator (permit join must be open)."""
        used = {d.nwk for d in self.devices}
        nwk = dev.nwk
        while nwk is None or (nwk in used and self.by_nwk(nwk) is not dev):
            nwk = self.rng.randrange(0x0001, 0xFFF7)
        dev.nwk = nwk
        self._send(c.ZDO_TC_DEV_IND.rsp(SrcNwk=nwk, SrcIEEE=dev.ieee, ParentNwk=0))
        self._store_link_key(dev)
        self.announce(dev)
        if not dev.silent_join:
            self.deliver(dev, *dev.model_report())
        self.save_nv()

    def announce(self, dev: SimDevice, new_nwk: int | None = None) -> None:
        if new_nwk is not None:
            dev.nwk = new_nwk
        assert dev.nwk is not None
        dev.awake_until = time.monotonic() + self.awake_s
        self._send(
            c.ZDO_END_DEVICE_ANNCE_IND.rsp(
                Src=dev.nwk,
                NWK=dev.nwk,
                IEEE=dev.ieee,
                Capabilities=t.MACCapabilities(dev.capabilities),
            )
        )

    def leave(self, dev: SimDevice) -> None:
        assert dev.nwk is not None
        self._send(c.ZDO_LEAVE_IND.rsp(NWK=dev.nwk, IEEE=dev.ieee, Request=0, Remove=0, Rejoin=0))
        dev.nwk = None
        self.save_nv()

    def report(self, dev: SimDevice) -> list[Report]:
        """One reporting cycle of ``dev`` (returns what was sent)."""
        if dev.nwk is None or not self.network_up:
            return []
        out = dev.reports()
        for rep in out:
            self.deliver(dev, *rep)
        return out

    def report_all(self) -> None:
        for dev in self.devices:
            self.report(dev)

    def deliver(
        self, dev: SimDevice, cluster: int, src_ep: int, data: bytes, broadcast: bool = False
    ) -> None:
        """Hand a device's ZCL frame to the host as AF_INCOMING_MSG."""
        if dev.nwk is None:
            return
        if dev.sleepy:
            dev.awake_until = time.monotonic() + self.awake_s
        eps = sorted(self.endpoints) if broadcast else sorted(self.endpoints)[:1]
        if not eps:
            self.counters["dropped_no_endpoint"] += 1
            return
        if len(data) > HOLD_OVER:
            self._deliver_held(dev, cluster, src_ep, data, eps[0], broadcast)
            return
        for ep in eps:  # Z-Stack hands a broadcast to every registered endpoint
            self._send(
                incoming_msg(
                    dev.nwk,
                    cluster,
                    data,
                    src_ep=src_ep,
                    dst_ep=ep,
                    broadcast=broadcast,
                    lqi=max(0, min(255, dev.lqi + self.rng.randrange(-10, 10))),
                    stamp=int(time.monotonic() * 1000) & 0xFFFFFFFF,
                )
            )

    def _deliver_held(
        self, dev: SimDevice, cluster: int, src_ep: int, data: bytes, ep: int, broadcast: bool
    ) -> None:
        """Too large for AF_INCOMING_MSG: AF_INCOMING_MSG_EXT with the length only; the
        stick keeps the bytes until the host fetches them with AF_DATA_RETRIEVE."""
        assert dev.nwk is not None
        self._held_stamp = (self._held_stamp + 1) & 0xFFFFFFFF
        self.held[self._held_stamp] = data
        self._send(
            c.AF_INCOMING_MSG_EXT.rsp(
                GroupId=0,
                ClusterId=cluster,
                SrcAddrMode=t.AddrMode.NWK,
                SrcAddr=dev.nwk.to_bytes(2, "little") + bytes(6),
                SrcEndpoint=src_ep,
                SrcPanId=self.pan_id,
                DstEndpoint=ep,
                WasBroadcast=int(broadcast),
                LQI=dev.lqi,
                SecurityUse=0,
                TimeStamp=self._held_stamp,
                TSN=0,
                Data=cd.Held(len(data)),
            )
        )

    def _h_af_data_retrieve(self, f: dict[str, Any]) -> None:
        data = self.held.get(f["TimeStamp"])
        if f["Length"] == 0:  # the host is done: free the buffer
            self.held.pop(f["TimeStamp"], None)
            self._srsp(c.AF_DATA_RETRIEVE, Status=OK, Data=b"")
        elif data is None:
            self._srsp(c.AF_DATA_RETRIEVE, Status=t.Status.FAILURE, Data=b"")
        else:
            chunk = data[f["Index"] : f["Index"] + f["Length"]]
            self._srsp(c.AF_DATA_RETRIEVE, Status=OK, Data=chunk)

    async def _report_loop(self) -> None:
        assert self.report_interval is not None
        while True:
            await asyncio.sleep(self.report_interval * (0.5 + self.rng.random()))
            if not self.network_up:
                continue
            joined = [d for d in self.devices if d.nwk is not None]
            if joined:
                self.report(self.rng.choice(joined))

    # --- AF and the network's membership ---------------------------------------------

    def _h_zdo_mgmt_permit_join_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_MGMT_PERMIT_JOIN_REQ, Status=OK)
        duration = f["Duration"]
        if f["AddrMode"] == t.AddrMode.NWK:
            self._callback(c.ZDO_MGMT_PERMIT_JOIN_RSP, Src=0, Status=OK)
            self._callback(c.ZDO_PERMIT_JOIN_IND, Duration=duration)
        self.permit_until = time.monotonic() + duration
        if duration and self.network_up:
            pending = [d for d in self.devices if d.nwk is None]
            for i, dev in enumerate(pending):
                self._later(JOIN_GAP_S * (i + 1), functools.partial(self._join_if_open, dev))

    def _join_if_open(self, dev: SimDevice) -> None:
        if dev.nwk is None and time.monotonic() < self.permit_until and self.network_up:
            self.join(dev)

    def _h_zdo_mgmt_leave_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_MGMT_LEAVE_REQ, Status=OK)
        dev = self.by_nwk(f["DstAddr"])
        if dev is not None:
            self._later(CALLBACK_DELAY, lambda: self.leave(dev))

    def _h_af_data_request(self, f: dict[str, Any]) -> None:
        if not self.network_up:
            self._srsp(c.AF_DATA_REQUEST, Status=t.Status.NWK_INVALID_REQUEST)
            return
        self._srsp(c.AF_DATA_REQUEST, Status=OK)
        self._deliver_request(f["DstAddr"], f)

    def _deliver_request(self, nwk: int, f: dict[str, Any]) -> None:
        """An AF data request on its way to a device: the confirm, then what it answers."""
        self.frame_counter += 1
        trans = f["TSN"]
        dev = self.by_nwk(nwk)

        def confirm(status: int, delay: float = CALLBACK_DELAY) -> None:
            self._callback(
                c.AF_DATA_CONFIRM,
                delay=delay,
                Status=t.Status(status),
                Endpoint=f["SrcEndpoint"],
                TSN=trans,
            )

        if dev is None:
            confirm(t.Status.NWK_NO_ROUTE)
            return
        if not dev.reachable:
            confirm(t.Status.MAC_NO_ACK)
            return
        if dev.sleepy and time.monotonic() > dev.awake_until:
            confirm(t.Status.MAC_TRANSACTION_EXPIRED, EXPIRE_S)
            return
        confirm(OK)
        data = bytes(f["Data"])
        with contextlib.suppress(ParseError):
            header, _ = zf.decode_header(data)
            if header.frame_type == zf.FrameType.GLOBAL and header.command_id == 0x0B:
                self.counters["default_responses"] += 1
        for rep in dev.handle(f["ClusterId"], f["DstEndpoint"], data):
            self._later(2 * CALLBACK_DELAY, functools.partial(self.deliver, dev, *rep))

    def _h_af_data_request_ext(self, f: dict[str, Any]) -> None:
        """Green Power broadcasts at permit join and inter-PAN: queued and confirmed; a
        unicast to a joined device's NWK address is handled as AF_DATA_REQUEST."""
        cmd = c.BY_NAME["AF_DATA_REQUEST_EXT"]
        if not self.network_up:
            self._srsp(cmd, Status=t.Status.NWK_INVALID_REQUEST)
            return
        mode = f["DstAddrMode"]
        if mode == t.AddrMode.NWK:
            nwk = int.from_bytes(bytes(f["DstAddr"])[:2], "little")
            self._srsp(cmd, Status=OK)
            self._deliver_request(nwk, f)
            return
        self._srsp(cmd, Status=OK)
        self.frame_counter += 1
        self._callback(c.AF_DATA_CONFIRM, Status=OK, Endpoint=f["SrcEndpoint"], TSN=f["TSN"])


async def _main(argv: list[str] | None = None) -> None:
    import argparse  # the command line only: the demo's simulator in a service needs none

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--link", help="port path to create (default: a temporary one)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    p.add_argument("--product", type=int, default=1, help="0 = Z-Stack 1.2, 1 = 3.x.0, 2 = 3.0.x")
    p.add_argument("--corrupt", type=float, default=0.0, help="byte corruption rate 0..1")
    args = p.parse_args(argv)
    sim = ZStackSimulator(
        link_path=args.link,
        product=args.product,
        devices=MODELS,
        report_interval=args.interval,
        corruption_rate=args.corrupt,
    )
    async with sim:
        print(sim.path, flush=True)  # the one line a user needs
        await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
