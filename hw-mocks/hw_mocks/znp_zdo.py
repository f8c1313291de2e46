"""The simulated Z-Stack stick's answers to ZDO and UTIL queries (see :mod:`hw_mocks.znp`)."""

from __future__ import annotations

import time
from typing import Any

from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import types as t
from hw_mocks.aqara import SimDevice
from hw_mocks.znp_layout import OK
from hw_mocks.znp_network import NetworkStick
from hw_mocks.znp_wire import StickOptions


class QueryStick(NetworkStick):
    """What hosts ask about the network: endpoints, addresses, node and simple descriptors,
    associated devices, APS groups (zigbee-herdsman asks for most of them)."""

    def __init__(self, options: StickOptions) -> None:
        super().__init__(options)
        #: APS groups: (endpoint, group id) -> name
        self.groups: dict[tuple[int, int], bytes] = {}

    def by_nwk(self, nwk: int) -> SimDevice | None:
        return next((d for d in self.devices if d.nwk == nwk), None)

    def _h_zdo_active_ep_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_ACTIVE_EP_REQ, Status=OK)
        nwk = f["NWKAddrOfInterest"]
        if nwk == 0:
            eps = sorted(self.endpoints)
        else:
            dev = self.by_nwk(nwk)
            if dev is None:
                return
            eps = [1, 2] if dev.model == "lumi.plug" else [1]
        self._callback(c.ZDO_ACTIVE_EP_RSP, Src=nwk, Status=OK, NWK=nwk, ActiveEndpoints=eps)

    def _h_zdo_msg_cb_register(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_MSG_CB_REGISTER, Status=OK)

    def _h_zdo_ieee_addr_req(self, f: dict[str, Any]) -> None:
        cmd = c.BY_NAME["ZDO_IEEE_ADDR_REQ"]
        self._srsp(cmd, Status=OK)
        dev = self.by_nwk(f["NWK"])
        if dev is not None:
            self._callback(
                c.BY_NAME["ZDO_IEEE_ADDR_RSP"],
                Status=OK,
                IEEE=dev.ieee,
                NWK=f["NWK"],
                StartIndex=0,
                AssocDevices=[],
            )

    # --- what a second host (zigbee-herdsman) asks for -------------------------------------

    def _h_util_led_control(self, f: dict[str, Any]) -> None:
        self._srsp(c.BY_NAME["UTIL_LED_CONTROL"], Status=OK)

    def _h_zdo_ext_route_disc(self, f: dict[str, Any]) -> None:
        self._srsp(c.BY_NAME["ZDO_EXT_ROUTE_DISC"], Status=OK)

    def _h_zdo_ext_find_group(self, f: dict[str, Any]) -> None:
        # aps_Group_t: group id, then a name of up to 16 bytes (length first), 19 with status
        name = self.groups.get((f["Endpoint"], f["GroupId"]))
        if name is None:
            group = f["GroupId"].to_bytes(2, "little") + bytes(17)
            self._srsp(c.BY_NAME["ZDO_EXT_FIND_GROUP"], Status=t.Status.FAILURE, Group=group)
            return
        body = (bytes([len(name)]) + name).ljust(17, b"\x00")[:17]
        group = f["GroupId"].to_bytes(2, "little") + body
        self._srsp(c.BY_NAME["ZDO_EXT_FIND_GROUP"], Status=OK, Group=group)

    def _h_zdo_ext_add_group(self, f: dict[str, Any]) -> None:
        key = (f["Endpoint"], f["GroupId"])
        if key in self.groups:
            self._srsp(c.BY_NAME["ZDO_EXT_ADD_GROUP"], Status=t.Status.APS_DUPLICATE_ENTRY)
            return
        self.groups[key] = bytes(f["GroupName"])[:16]
        self._srsp(c.BY_NAME["ZDO_EXT_ADD_GROUP"], Status=OK)

    def _assoc_entry(self, index: int, dev: SimDevice | None) -> bytes:
        size = 36 if self.aligned else 28
        if dev is None or dev.nwk is None:
            return b"\xff" * size
        entry = dev.nwk.to_bytes(2, "little") + index.to_bytes(2, "little") + b"\x01"
        return entry.ljust(size, b"\x00")

    def _h_util_assoc_find_device(self, f: dict[str, Any]) -> None:
        children = [d for d in self.devices if d.nwk is not None]
        i = f["Index"]
        dev = children[i] if i < len(children) else None
        self._srsp(c.BY_NAME["UTIL_ASSOC_FIND_DEVICE"], Device=self._assoc_entry(i, dev))

    def _h_util_assoc_get_with_address(self, f: dict[str, Any]) -> None:
        """associated_devices_t of a child: short address, index, relation (1 = child, end
        device), status, count, age, link info, end device info, timeout counter, keepalive
        (28 bytes packed, 36 aligned); all 0xFF when not a child."""
        found = next(
            (
                (i, d)
                for i, d in enumerate(self.devices)
                if d.nwk is not None and (d.nwk == f["NWK"] or d.ieee == str(f["IEEE"]))
            ),
            (0, None),
        )
        entry = self._assoc_entry(*found)
        self._srsp(c.BY_NAME["UTIL_ASSOC_GET_WITH_ADDRESS"], Device=entry)

    #: Node descriptors (13 bytes: logical type, frequency band, MAC capabilities,
    #: manufacturer code, buffer size, incoming size, server mask, outgoing size, flags).
    COORDINATOR_NODE_DESCRIPTOR = bytes.fromhex("00408f000050a000012ca00000")
    END_DEVICE_NODE_DESCRIPTOR = bytes.fromhex("0240805f117f6400002c640000")
    ROUTER_NODE_DESCRIPTOR = bytes.fromhex("01408e5f117f6400002c640000")

    def _h_zdo_node_desc_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_NODE_DESC_REQ, Status=OK)
        nwk = f["NWKAddrOfInterest"]
        if nwk == 0:
            desc = self.COORDINATOR_NODE_DESCRIPTOR
        else:
            dev = self.by_nwk(nwk)
            if dev is None or (dev.sleepy and time.monotonic() > dev.awake_until):
                return  # no answer: out of range or asleep
            desc = self.END_DEVICE_NODE_DESCRIPTOR if dev.sleepy else self.ROUTER_NODE_DESCRIPTOR
        self._callback(
            c.BY_NAME["ZDO_NODE_DESC_RSP"], Src=nwk, Status=OK, NWK=nwk, NodeDescriptor=desc
        )

    def _h_zdo_simple_desc_req(self, f: dict[str, Any]) -> None:
        self._srsp(c.ZDO_SIMPLE_DESC_REQ, Status=OK)
        nwk, ep = f["NWKAddrOfInterest"], f["Endpoint"]
        if nwk == 0:
            reg = self.endpoints.get(ep)
            if reg is None:
                return
            desc = {
                "endpoint": ep,
                "profile": 0x0104,
                "device_type": 0x0005,
                "device_version": 0,
                "input_clusters": list(reg),
                "output_clusters": [],
            }
        else:
            dev = self.by_nwk(nwk)
            if dev is None or (dev.sleepy and time.monotonic() > dev.awake_until):
                return
            desc = {
                "endpoint": ep,
                "profile": 0x0104,
                "device_type": 0x5F01,  # what Xiaomi devices say
                "device_version": 1,
                "input_clusters": [0x0000, 0x0003, 0xFFFF],
                "output_clusters": [0x0000, 0x0004, 0xFFFF],
            }
        self._callback(c.ZDO_SIMPLE_DESC_RSP, Src=nwk, Status=OK, NWK=nwk, SimpleDescriptor=desc)
