"""Two independent MT command tables, normalised to wire shapes, as oracles for our own.

- zigpy-znp (PyPI, a test extra): ``zigpy_znp.commands.COMMANDS_BY_ID``.
- zigbee-herdsman 10.9.5 (npm): its ``definition.js`` dumped to JSON by
  tests/herdsman/dump_definition.js, from the package installed by tools/herdsman.sh into
  ``.cache/herdsman`` (never committed; no lockfile).

A shape is a tuple of wire items: ``u8``/``u16``/``u32``/``i8`` (little-endian integers),
``b<n>`` (n fixed bytes; an IEEE address is ``b8``), ``lv8``/``lv16`` (bytes after a u8/u16
length), ``list8:u8``/``list8:u16`` (items after a u8 count), ``rest`` (bytes to the end),
``simpledesc``/``nodedesc`` (ZDO descriptors); a trailing optional item ends with ``?``.
Names differ between the tables and are not compared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp.commands import COMMANDS, CommandDef, Kind, Layout
from drivers.zigbee.znp.types import CommandType

ROOT = Path(__file__).resolve().parent.parent
HERDSMAN_VERSION = "10.9.5"
HERDSMAN_DIR = ROOT / ".cache" / "herdsman" / "node_modules" / "zigbee-herdsman"

Shape = tuple[str, ...]
#: (subsystem id, command id, direction): direction is "request" (host -> stick, SREQ or
#: AREQ), "response" (SRSP) or "callback" (AREQ from the stick).
Key = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class PeerCommand:
    name: str
    shape: Shape


# --- ours ------------------------------------------------------------------------------------


def _codec_shape(codec: Any) -> Shape:
    if isinstance(codec, cd.Optional):
        inner = _codec_shape(codec.inner)
        return (*inner[:-1], inner[-1] + "?")
    if isinstance(codec, cd.UInt):
        return (("i" if codec.signed else "u") + str(8 * codec.size),)
    if isinstance(codec, cd.Enum):
        return (f"u{8 * codec.size}",)
    if isinstance(codec, cd.Ieee):
        return ("b8",)
    if isinstance(codec, cd.FixedBytes):
        return (f"b{codec.size}",)
    if isinstance(codec, cd.LenBytes):
        return (f"lv{8 * codec.len_size}",)
    if isinstance(codec, cd.IntList):
        return (f"list8:u{8 * codec.size}",)
    if isinstance(codec, cd.Rest):
        return ("rest",)
    if isinstance(codec, cd.SimpleDescriptor):
        return ("simpledesc",)
    raise TypeError(f"no shape for {codec!r}")


def layout_shape(layout: Layout) -> Shape:
    return tuple(item for f in layout for item in _codec_shape(f.codec))


def ours() -> dict[Key, tuple[CommandDef, Kind]]:
    out: dict[Key, tuple[CommandDef, Kind]] = {}
    for cmd in COMMANDS:
        if cmd.request is not None:
            out[(int(cmd.subsystem), cmd.cmd_id, "request")] = (cmd, Kind.REQUEST)
        if cmd.response is not None:
            kind = Kind.RESPONSE if cmd.type is CommandType.SREQ else Kind.CALLBACK
            direction = "response" if kind is Kind.RESPONSE else "callback"
            out[(int(cmd.subsystem), cmd.cmd_id, direction)] = (cmd, kind)
    return out


# --- zigpy-znp ---------------------------------------------------------------------------------


def _zigpy_shape(typ: Any) -> Shape:
    import zigpy.types as zt
    import zigpy.zdo.types as zdo_t
    import zigpy_znp.types as zt2
    import zigpy_znp.types.basic as zb

    if issubclass(typ, zdo_t.SimpleDescriptor):
        return ("simpledesc",)
    if issubclass(typ, zdo_t.NodeDescriptor):
        return ("nodedesc",)
    if issubclass(typ, zt.CharacterString):
        return ("lv8",)  # a length byte and the text
    if typ is zt2.AddrModeAddress:
        return ("u8", "b8")
    if issubclass(typ, zb.ShortBytes):
        return ("lv16",) if issubclass(typ, zb.LongBytes) else ("lv8",)
    if issubclass(typ, zb.Bytes):
        return ("rest",)
    if issubclass(typ, zb.LVList):
        header = typ._header._size
        return (f"list{8 * header}:" + "+".join(_zigpy_shape(typ._item_type)),)
    if issubclass(typ, zb.CompleteList):
        return ("list*:" + "+".join(_zigpy_shape(typ._item_type)),)
    if issubclass(typ, zt.FixedList | zb.FixedList):
        item = _zigpy_shape(typ._item_type)
        return (f"b{typ._length}",) if item == ("u8",) else (f"{typ._length}x" + "+".join(item),)
    if issubclass(typ, zt.FixedIntType):
        return (("i" if typ._signed else "u") + str(8 * typ._size),)
    if issubclass(typ, zt.Struct | zt2.CStruct) or isinstance(typ, type):
        return (f"struct:{typ.__name__}",)
    raise TypeError(f"no shape for zigpy-znp type {typ!r}")


def zigpy_commands() -> dict[Key, PeerCommand]:
    import zigpy_znp.commands as zc

    out: dict[Key, PeerCommand] = {}
    for header, cls in zc.COMMANDS_BY_ID.items():
        typ = int(header.type)
        if typ == CommandType.SREQ:
            direction = "request"
        elif typ == CommandType.SRSP:
            direction = "response"
        else:
            direction = "callback" if cls.__name__ == "Callback" else "request"
        shape: list[str] = []
        for param in cls.schema:
            items = _zigpy_shape(param.type)
            if param.optional:
                items = (*items[:-1], items[-1] + "?")
            shape.extend(items)
        name = cls.__qualname__.rsplit(".", 1)[0]
        out[(int(header.subsystem), int(header.id), direction)] = PeerCommand(name, tuple(shape))
    return out


# --- zigbee-herdsman -----------------------------------------------------------------------------

_HERDSMAN_FIXED = {
    "UINT8": "u8",
    "UINT16": "u16",
    "UINT32": "u32",
    "INT8": "i8",
    "IEEEADDR": "b8",
    "BUFFER8": "b8",
    "BUFFER16": "b16",
    "BUFFER18": "b18",
    "BUFFER32": "b32",
    "BUFFER42": "b42",
    "BUFFER100": "b100",
}


def herdsman_shape(params: list[dict[str, str]]) -> Shape:
    """A variable item (BUFFER, LIST_*) takes its length from the parameter before it
    (herdsman's zpiObject does the same): that pair is one length-prefixed item."""
    out: list[str] = []
    for p in params:
        typ = p["type"]
        if typ in _HERDSMAN_FIXED:
            out.append(_HERDSMAN_FIXED[typ])
            continue
        length = out.pop() if out and out[-1] in ("u8", "u16") else "?"
        bits = length[1:]
        if typ == "BUFFER":
            out.append(f"lv{bits}")
        elif typ == "LIST_UINT8":
            out.append(f"list{bits}:u8")
        elif typ == "LIST_UINT16":
            out.append(f"list{bits}:u16")
        else:
            out.append(f"list{bits}:{typ.lower()}")
    return tuple(out)


def herdsman_available() -> bool:
    return (HERDSMAN_DIR / "package.json").exists() and shutil.which("node") is not None


def install_herdsman() -> None:
    """tools/herdsman.sh: npm into .cache/herdsman (no lockfile); idempotent."""
    if herdsman_available():
        return
    subprocess.run(["sh", str(ROOT / "tools" / "herdsman.sh")], check=True, timeout=600)


def herdsman_definition() -> dict[str, Any]:
    install_herdsman()
    script = ROOT / "tests" / "herdsman" / "dump_definition.js"
    out = subprocess.run(
        ["node", str(script), str(HERDSMAN_DIR)],
        check=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "NODE_OPTIONS": ""},
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def herdsman_commands() -> dict[Key, PeerCommand]:
    """herdsman lists an AREQ's payload as ``request`` whatever its direction: it is filed
    under both directions here (ours says which one it is)."""
    doc = herdsman_definition()
    assert doc["version"] == HERDSMAN_VERSION, doc["version"]
    out: dict[Key, PeerCommand] = {}
    for cmd in doc["commands"]:
        sub, cid = int(cmd["subsystem_id"]), int(cmd["id"])
        if cmd["zdo_cluster"] is not None:
            # no MT layout in the table: herdsman builds and parses these with its generic
            # ZDO codec (an SRSP is a status; a callback is srcaddr + the ZDO payload)
            zdo = PeerCommand(cmd["name"], (f"zdo:0x{int(cmd['zdo_cluster']):04x}",))
            for direction in ("request", "response", "callback"):
                out[(sub, cid, direction)] = zdo
            continue
        if cmd["type"] == "SREQ":
            shape = herdsman_shape(cmd["request"] or [])
            out[(sub, cid, "request")] = PeerCommand(cmd["name"], shape)
            if cmd["response"] is not None:
                shape = herdsman_shape(cmd["response"])
                out[(sub, cid, "response")] = PeerCommand(cmd["name"], shape)
        else:
            shape = herdsman_shape(cmd["request"] or [])
            for direction in ("request", "callback"):
                out[(sub, cid, direction)] = PeerCommand(cmd["name"], shape)
    return out
