"""What the host asks of the network: permit joining, on/off to a device, any ZCL frame.

Delivery failures of a command are results (:class:`~drivers.results.CommandResult`),
never raises.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time

from drivers.errors import DriverError
from drivers.results import CommandResult, CommandStatus, Value
from drivers.zigbee.base import COORDINATOR_ENDPOINT, check
from drivers.zigbee.context import CoordinatorContext
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t

_LOGGER = logging.getLogger(__name__)


class Control:
    """Commands on the network of the current session (``ctx.require_api`` raises without
    one)."""

    def __init__(self, ctx: CoordinatorContext) -> None:
        self.ctx = ctx
        self.permit_join_until = 0.0
        self._tsn = secrets.randbelow(256)
        self._trans_id = secrets.randbelow(256)

    def next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    async def permit_join(self, seconds: int = 60) -> None:
        """Open the network for ``seconds`` (0 closes it) on the coordinator and routers."""
        api = self.ctx.require_api()
        s = max(0, min(int(seconds), 254))
        for mode, dst, what in (
            (t.AddrMode.NWK, 0x0000, "coordinator"),
            (t.AddrMode.BROADCAST, 0xFFFC, "broadcast"),
        ):
            rsp = await api.request(
                c.ZDO_MGMT_PERMIT_JOIN_REQ, AddrMode=mode, Dst=dst, Duration=s, TCSignificance=1
            )
            check(rsp, f"permit join ({what})")
        self.permit_join_until = time.monotonic() + s
        _LOGGER.info("permit join for %d s", s)

    async def switch(self, ieee: str, action: str) -> CommandResult:
        """On/off/toggle to a plug or relay; delivery failures are outcomes, not raises."""
        rec = self.ctx.table.get(ieee)
        if rec is None:
            return CommandResult(CommandStatus.UNKNOWN_DEVICE, f"no zigbee device {ieee}")
        cmd_id = {"off": 0x00, "on": 0x01, "toggle": 0x02}.get(action)
        if cmd_id is None:
            return CommandResult(
                CommandStatus.UNSUPPORTED, f"action {action!r} is not on/off/toggle"
            )
        spec = xiaomi.spec_for(rec.model)
        if spec is not None and spec.switch_endpoint is None:
            return CommandResult(CommandStatus.UNSUPPORTED, f"{rec.model} has no switch")
        endpoint = spec.switch_endpoint if spec is not None and spec.switch_endpoint else 1
        data = zf.cluster_command(self.next_tsn(), cmd_id)
        try:
            status = await self.send_zcl(rec.nwk, endpoint, cl.ON_OFF, data)
        except TimeoutError:
            self.ctx.counters["commands_failed"] += 1
            return CommandResult(CommandStatus.TIMEOUT, "no delivery confirmation from the stick")
        except DriverError as exc:
            self.ctx.counters["commands_failed"] += 1
            return CommandResult(CommandStatus.ERROR, str(exc))
        if status == t.Status.SUCCESS:
            self.ctx.counters["commands_ok"] += 1
            state: dict[str, Value] = {} if action == "toggle" else {"switch": action == "on"}
            return CommandResult(CommandStatus.OK, "", state)
        self.ctx.counters["commands_failed"] += 1
        name = t.Status(status).name
        if status in t.SOFT_DELIVERY_FAILURES:
            return CommandResult(
                CommandStatus.UNREACHABLE,
                f"device did not take it ({name}): asleep or out of range",
            )
        return CommandResult(CommandStatus.ERROR, f"stick reported {name} (0x{int(status):02X})")

    async def send_zcl(
        self, nwk: int, endpoint: int, cluster: int, data: bytes, *, ack: bool = True
    ) -> int:
        """AF_DATA_REQUEST, then its AF_DATA_CONFIRM status (soft failures are returned)."""
        api = self.ctx.require_api()
        self._trans_id = (self._trans_id + 1) & 0xFF
        trans_id = self._trans_id
        rsp, confirm = await api.request_then(
            c.AF_DATA_REQUEST,
            c.AF_DATA_CONFIRM,
            {"TSN": trans_id},
            callback_wait_s=self.ctx.timing.confirm_timeout,
            DstAddr=nwk,
            DstEndpoint=endpoint,
            SrcEndpoint=COORDINATOR_ENDPOINT,
            ClusterId=cluster,
            TSN=trans_id,
            Options=t.TransmitOptions.ACK_REQUEST if ack else t.TransmitOptions.NONE,
            Radius=30,
            Data=data,
        )
        if confirm is None:
            return int(rsp["Status"])
        return int(confirm["Status"])

    async def send_zcl_quiet(self, nwk: int, endpoint: int, cluster: int, data: bytes) -> None:
        """Best effort (a default response, an interview read): failures only counted."""
        with contextlib.suppress(DriverError, TimeoutError):
            await self.send_zcl(nwk, endpoint, cluster, data, ack=False)
