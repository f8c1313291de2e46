"""Backup and restore of the network on the stick, and the backup files.

The format itself (open coordinator backup v1 <-> NetworkInfo) is :mod:`drivers.zigbee.backup`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drivers.errors import ProtocolError
from drivers.zigbee import backup as bk
from drivers.zigbee.devices import DeviceRecord, fsync_dir
from drivers.zigbee.linkkeys import LinkKeyStore
from drivers.zigbee.network import Network
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp.types import NvId

_LOGGER = logging.getLogger(__name__)


async def read_network(network: Network, devices: Iterable[DeviceRecord]) -> bk.NetworkInfo:
    """What a backup holds, read from the running stick (contains the network key)."""
    api, nv = network.api, network.nv
    dev = await api.request(c.UTIL_GET_DEVICE_INFO)
    nwk = await api.request(c.ZDO_EXT_NWK_INFO)
    key_info = await nv.read_secret(NvId.NWK_ACTIVE_KEY_INFO)
    if key_info is not None and len(key_info) >= 17:
        seq, key = key_info[0], key_info[1:17]
    else:
        pre = await nv.read_secret(NvId.PRECFGKEY)
        if pre is None or len(pre) < 16:
            raise ProtocolError("cannot read the network key from the stick")
        seq, key = 0, pre[:16]
    ext = str(nwk["ExtendedPanId"])
    children = set(dev["AssociatedDevices"])
    counter = await nv.read_frame_counter(ext)
    # Z-Stack 3's TCLK seed (on 1.2 the id holds the default TC link key entry, no seed)
    seed = await nv.read_secret(NvId.TCLK_SEED) if network.zstack3 else None
    seed16 = bytes(seed[:16]) if seed is not None and len(seed) >= 16 else None
    # the stick's address manager and link key tables (Z-Stack 3; 1.2 keeps no unique keys)
    stick = {d.ieee: d for d in await LinkKeyStore(nv).read(seed16)}
    known = []
    for r in devices:
        on_stick = stick.pop(r.ieee, None)
        known.append(
            bk.BackupDevice(
                r.ieee,
                r.nwk,
                is_child=r.nwk in children,
                link_key=on_stick.link_key if on_stick is not None else None,
            )
        )
    return bk.NetworkInfo(
        coordinator_ieee=str(dev["IEEE"]),
        pan_id=int(nwk["PanId"]),
        extended_pan_id=ext,
        channel=int(nwk["Channel"]),
        network_key=bytes(key),
        key_sequence=seq,
        frame_counter=counter,
        channel_mask=(int(nwk["Channel"]),),
        # devices the stick knows but our table does not are kept too (their keys matter)
        devices=(*known, *stick.values()),
        tclk_seed=seed16,
    )


async def restore_network(network: Network, info: bk.NetworkInfo) -> None:
    """Write a backup's network to the stick and start it (devices need not rejoin)."""
    await network.form(info)
    if network.zstack3:
        seed = info.tclk_seed or await network.nv.read_secret(NvId.TCLK_SEED)
        await LinkKeyStore(network.nv).write(list(info.devices), seed[:16] if seed else None)
    # restart so the stick loads what was written (IEEE, frame counter) from NV
    await network.reset()
    await network.resume()
    await network.finish_startup()


def write_secret_json(path: Path, doc: Any) -> None:
    """Atomically write a JSON file readable by its owner only (it holds the network key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _network_identity(doc: Any) -> tuple[str, str] | None:
    try:
        return str(doc["extended_pan_id"]).lower(), str(doc["network_key"]["key"]).lower()
    except (KeyError, TypeError):
        return None


def keep_other_network_backup(path: Path, doc: Any) -> Path | None:
    """Move ``path`` aside when it holds another network than ``doc`` (never lose a backup).

    The old file is kept as ``<stem>.<extended pan id>.<UTC timestamp>.json`` (mode 0600);
    returns its new path, or None when there was nothing to keep.
    """
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        old = None
    old_id = _network_identity(old)
    if old_id is not None and old_id == _network_identity(doc):
        return None
    ext = old_id[0] if old_id is not None and old_id[0].isalnum() else "unknown"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.stem}.{ext[:16]}.{stamp}{path.suffix}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.{ext[:16]}.{stamp}-{n}{path.suffix}")
        n += 1
    os.chmod(path, 0o600)
    os.replace(path, target)
    fsync_dir(path.parent)
    _LOGGER.warning("kept the backup of another zigbee network as %s", target)
    return target
