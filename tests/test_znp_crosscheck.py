"""Our MT command table against two independent ones: zigpy-znp's and zigbee-herdsman 10.9.5's.

Every command of ours is looked up in both peers by subsystem, id and direction (request,
SRSP, callback) and its field layout compared as wire shapes (tests/znp_peers.py). Every
difference is either fixed or listed in tests/znp_deviations.toml with its reason, and
docs/zigbee.md names it: a new difference, or a listed one that went away, fails. Byte level
too: a frame built by our table must decode with zigpy-znp's and serialise back to the same
bytes.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp.commands import CommandDef, Kind
from drivers.zigbee.znp.types import CommandType
from tests import znp_peers as peers

DOCS = Path(__file__).resolve().parent.parent / "docs" / "zigbee.md"
TABLE = Path(__file__).resolve().parent / "znp_deviations.toml"

#: (peer, our command, direction) -> why: the table of tests/znp_deviations.toml.
Entry = tuple[str, str, str]


def _table(kind: str) -> dict[Entry, str]:
    doc = tomllib.loads(TABLE.read_text(encoding="utf-8"))
    return {(d["peer"], d["command"], d["direction"]): d["why"] for d in doc[kind]}


#: Where our layout differs from the peer's and stays as it is.
DEVIATIONS = _table("deviation")
#: Commands the peer does not define.
MISSING = _table("missing")


@pytest.fixture(scope="module")
def herdsman() -> dict[peers.Key, peers.PeerCommand]:
    return peers.herdsman_commands()


@pytest.fixture(scope="module")
def zigpy() -> dict[peers.Key, peers.PeerCommand]:
    return peers.zigpy_commands()


def _compare(
    name: str, table: dict[peers.Key, peers.PeerCommand]
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]], int]:
    differ: set[tuple[str, str, str]] = set()
    missing: set[tuple[str, str, str]] = set()
    compared = 0
    for key, (cmd, kind) in peers.ours().items():
        direction = key[2]
        theirs = table.get(key)
        if theirs is None:
            missing.add((name, cmd.name, direction))
            continue
        if theirs.shape and theirs.shape[0].startswith("zdo:"):
            continue  # herdsman's generic ZDO codec: covered by the herdsman host test
        compared += 1
        if theirs.shape != peers.layout_shape(cmd.layout(kind)):
            differ.add((name, cmd.name, direction))
    return differ, missing, compared


def test_every_command_matches_both_peers_or_is_a_listed_deviation(
    zigpy: dict[peers.Key, peers.PeerCommand], herdsman: dict[peers.Key, peers.PeerCommand]
) -> None:
    differ_z, missing_z, n_z = _compare("zigpy-znp", zigpy)
    differ_h, missing_h, n_h = _compare("zigbee-herdsman", herdsman)
    assert differ_z | differ_h == set(DEVIATIONS)
    assert missing_z | missing_h == set(MISSING)
    # every entry of ours was looked at in both tables
    assert n_z + len(missing_z) == len(peers.ours())
    assert n_h > 40


def test_ids_and_directions_agree_by_name(zigpy: dict[peers.Key, peers.PeerCommand]) -> None:
    """Our TI names and zigpy-znp's class names denote the same command at the same key."""
    for key, (cmd, _) in peers.ours().items():
        theirs = zigpy.get(key)
        assert theirs is not None or key[:2] == (0, 0), cmd.name
        if theirs is None:
            continue
        ours_words = set(re.sub(r"^[A-Z]+_", "", cmd.name).lower().replace("_", ""))
        assert ours_words & set(theirs.name.lower()), (cmd.name, theirs.name)


def test_deviations_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Deviations from the peers' tables") :]
    for _, command, _ in {**DEVIATIONS, **MISSING}:
        assert command in section, command


# --- byte level against zigpy-znp ------------------------------------------------------------


def _sample(codec: Any, i: int) -> Any:
    if isinstance(codec, cd.Optional):
        return _sample(codec.inner, i)
    if isinstance(codec, cd.Enum):
        # an address mode with a full 8-byte address; otherwise the first real code
        members = [m for m in codec.enum_cls if 0 < int(m) < 256**codec.size]
        return next((m for m in members if m.name == "IEEE"), members[0] if members else 1)
    if isinstance(codec, cd.UInt):
        return (0x21 + i) if not codec.signed else -(1 + i)
    if isinstance(codec, cd.Ieee):
        return "00124b00" + f"{i:08x}"
    if isinstance(codec, cd.FixedBytes):
        return bytes(range(i, i + codec.size))
    if isinstance(codec, cd.LenBytes):
        return bytes([0x18, i, 0x0A])
    if isinstance(codec, cd.IntList):
        return [1, 6] if codec.size == 1 else [0x0006, 0x0402]
    if isinstance(codec, cd.Rest):
        return bytes([0xAA, i])
    if isinstance(codec, cd.SimpleDescriptor):
        return None
    raise TypeError(codec)


def _zigpy_class(cmd: CommandDef, kind: Kind) -> Any:
    import zigpy_znp.commands as zc
    import zigpy_znp.types as zt

    typ = CommandType.SRSP if kind is Kind.RESPONSE else cmd.type
    header = zt.CommandHeader(0).with_id(cmd.cmd_id).with_subsystem(int(cmd.subsystem))
    return zc.COMMANDS_BY_ID.get(header.with_type(int(typ)))


def test_our_frames_decode_with_zigpy_znp_byte_for_byte(
    zigpy: dict[peers.Key, peers.PeerCommand],
) -> None:
    import zigpy_znp.frames as zf

    checked = 0
    for key, (cmd, kind) in peers.ours().items():
        theirs = zigpy.get(key)
        lay = cmd.layout(kind)
        if theirs is None or theirs.shape != peers.layout_shape(lay):
            continue  # listed above
        values = {f.name: _sample(f.codec, i) for i, f in enumerate(lay)}
        if any(v is None for v in values.values()):
            continue
        frame = cmd.frame(kind, values)
        cls = _zigpy_class(cmd, kind)
        assert cls is not None, cmd.name
        general = zf.GeneralFrame(cls.header, frame.data)
        decoded = cls.from_frame(general)
        assert decoded.to_frame().data == frame.data, cmd.name
        checked += 1
    assert checked > 50
