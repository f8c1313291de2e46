"""Frames to JSON-ready dicts for tools (``migw decode znp``): pure, no I/O.

One dict per MT frame: type, subsystem, command, direction and fields; for AF_INCOMING_MSG
also the decoded ZCL frame and the metrics/events it stands for. The interpreter keeps state
across frames of one capture (models learned from Basic reports, duplicate broadcasts).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from drivers.errors import ParseError
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import xiaomi
from drivers.zigbee.zcl.interpret import Interpreter
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t

#: Printed instead of key material (network key, TCLK seed) found in a capture.
REDACTED = "<redacted>"


def jsonable(value: Any) -> Any:
    """Decoded values as JSON: enums by name, bytes as hex, NaN/inf as strings."""
    if isinstance(value, enum.IntFlag):
        return int(value)
    if isinstance(value, enum.IntEnum):
        return value.name if value.name != "UNKNOWN" else f"UNKNOWN(0x{int(value):02X})"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, cd.Held):  # a payload the stick kept back (AF_DATA_RETRIEVE)
        return {"held_bytes": value.length}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def zcl_json(frame: zf.ZclFrame) -> dict[str, Any]:
    h = frame.header
    out: dict[str, Any] = {
        "cluster": f"0x{frame.cluster:04X}",
        "cluster_name": cl.NAMES.get(frame.cluster, "unknown"),
        "frame_type": "global" if h.frame_type == zf.FrameType.GLOBAL else "cluster",
        "manufacturer": None if h.manufacturer is None else f"0x{h.manufacturer:04X}",
        "direction": "server_to_client" if h.direction else "client_to_server",
        "disable_default_response": h.disable_default_response,
        "tsn": h.tsn,
        "command_id": f"0x{h.command_id:02X}",
    }
    p = frame.payload
    if h.frame_type == zf.FrameType.GLOBAL:
        try:
            out["command"] = zf.GlobalCommand(h.command_id).name.lower()
        except ValueError:
            out["command"] = "unknown"
    if isinstance(p, zf.ReportAttributes | zf.ReadAttributesResponse):
        records = []
        items = (
            [(a, None) for a in p.attributes]
            if isinstance(p, zf.ReportAttributes)
            else [(r.attribute, r) for r in p.records]
        )
        for attr, rec in items:
            if attr is None:
                assert rec is not None
                records.append({"attr": f"0x{rec.attr_id:04X}", "status": jsonable(rec.status)})
                continue
            r: dict[str, Any] = {"attr": f"0x{attr.attr_id:04X}", "type": f"0x{attr.type_id:02X}"}
            if (frame.cluster, attr.attr_id) in zf.LENIENT_STRING_ATTRS and isinstance(
                attr.value, bytes
            ):
                tlv = xiaomi.parse_tlv(attr.value)
                r["tlv"] = {str(k): jsonable(v) for k, v in tlv.values.items()}
                if attr.declared_len is not None:
                    r["declared_len"] = attr.declared_len
                    r["actual_len"] = len(attr.value)
                if tlv.truncated:
                    r["truncated"] = True
            else:
                r["value"] = jsonable(attr.value)
            records.append(r)
        out["records"] = records
        if p.trailing:
            out["trailing"] = p.trailing.hex()
    elif isinstance(p, zf.RawCommand):
        out["payload"] = p.payload.hex()
    else:
        out["args"] = jsonable(dataclasses.asdict(p))
    return out


class FrameDescriber:
    def __init__(self, model: str | None = None) -> None:
        self.interpreter = Interpreter()
        self.default_model = model
        self.models: dict[int, str] = {}
        self._secret_pending = False

    def describe(self, frame: frames.Frame) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": t.CommandType(frame.type).name,
            "subsystem": t.Subsystem(frame.subsystem).name,
            "cmd0": f"0x{frame.cmd0:02X}",
            "cmd1": f"0x{frame.cmd_id:02X}",
        }
        try:
            msg = c.decode(frame)
        except ParseError as exc:
            out["command"] = None
            out["data"] = frame.data.hex()
            out["error"] = str(exc)
            return out
        out["command"] = msg.command.name
        out["kind"] = msg.kind.value
        fields = dict(msg.fields)
        if msg.kind is c.Kind.REQUEST and msg.command in c.NV_ID_COMMANDS:
            self._secret_pending = c.touches_secret(msg.command, fields)
            if self._secret_pending and "Value" in fields:
                fields["Value"] = REDACTED
        elif msg.kind is c.Kind.RESPONSE and msg.command in c.NV_ID_COMMANDS:
            if self._secret_pending and "Value" in fields:
                fields["Value"] = REDACTED
            self._secret_pending = False
        out["fields"] = jsonable(fields)
        if msg.command is c.AF_INCOMING_MSG:
            out.update(self._incoming(msg))
        return out

    def _incoming(self, msg: c.Message) -> dict[str, Any]:
        f = msg.fields
        src = int(f["SrcAddr"])
        cluster = int(f["ClusterId"])
        model = self.models.get(src, self.default_model)
        res = self.interpreter.interpret(
            f"{src:04x}", model, cluster, int(f["SrcEndpoint"]), bytes(f["Data"])
        )
        extra: dict[str, Any] = {}
        if res.error is not None:
            extra["zcl_error"] = res.error
            return extra
        if res.frame is not None:
            extra["zcl"] = zcl_json(res.frame)
        if res.model is not None:
            self.models[src] = res.model
        extra["model"] = self.models.get(src, model)
        extra["metrics"] = {m: jsonable(v) for m, v in res.readings}
        if res.events:
            extra["events"] = [{"action": a, "button": b} for a, b in res.events]
        if res.duplicate:
            extra["duplicate"] = True
        if res.junk:
            extra["junk_dropped"] = res.junk
        return extra


def parse_hex_line(line: str) -> bytes:
    """``fe 01 61 ...``, ``FE:01:61``, ``0xfe0161``: one frame as hex. ParseError otherwise."""
    text = line.strip().lower().removeprefix("0x")
    for sep in (" ", ":", "-", "\t", ","):
        text = text.replace(sep, "")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ParseError(f"not hex: {line.strip()[:40]!r}") from None
