"""Bind keys through the API (``migw ble key``, ``migw ble keys``). A key never leaves the
gateway: answers name the MAC, where the key is kept and whether it decrypts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

from drivers.ble.errors import KeyFormatError
from drivers.ble.keys import BindKey, parse_key
from drivers.ble.types import Advertisement, Decoded, Failed, FailReason
from gateway.api import http
from gateway.api.errors import ApiError, json_response
from gateway.api.request import SERVICE, read_json
from gateway.api.serialize import key_status
from gateway.config import ble_device_id, key_dir
from gateway.driver import BleAdverts

_LOGGER = logging.getLogger(__name__)

DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 600.0


def _mac(device_id: str) -> str:
    """``ble-a4c138123456`` -> ``A4:C1:38:12:34:56``."""
    h = device_id.removeprefix("ble-").upper()
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


async def next_verdict(ble: BleAdverts, mac: str, key: BindKey, wait_s: float) -> str:
    """``ok`` when the next encrypted advert of ``mac`` decrypts with ``key``, ``key_invalid``
    when it does not; TimeoutError when none came within ``wait_s``."""
    # the codecs (and cryptography) only where BLE runs: a Zigbee or GPIO gateway's API
    # never loads them
    from drivers.ble.decoder import FORMATS, decode_payload

    loop = asyncio.get_running_loop()
    verdict: asyncio.Future[str] = loop.create_future()

    def on_advert(adv: Advertisement) -> None:
        if verdict.done() or adv.address.upper() != mac:
            return
        for uuid, data in adv.service_data.items():
            if uuid not in FORMATS:
                continue
            outcome = decode_payload(uuid, bytes(data), mac, key)
            if isinstance(outcome, Decoded) and outcome.encrypted:
                verdict.set_result("ok")
            elif isinstance(outcome, Failed) and outcome.reason is FailReason.KEY_INVALID:
                verdict.set_result("key_invalid")

    unsubscribe = ble.subscribe_adverts(on_advert)
    if unsubscribe is None:
        raise ApiError(409, "ble_unavailable", "the BLE scanner is not running")
    try:
        async with asyncio.timeout(wait_s):
            return await verdict
    finally:
        unsubscribe()


def _write_key(path: Path, key_hex: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key_hex + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def add_key(request: http.Request) -> http.Response:
    """``{"mac", "key", "wait_s", "check"}``: check the key on the device's next encrypted
    advert, keep it in ``<state_dir>/ble-keys/<MAC>`` (0600) and reload the BLE driver."""
    svc = request.app[SERVICE]
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"mac", "key", "wait_s", "check"}:
        raise ApiError(422, "invalid_body", 'expected {"mac": "...", "key": "<32 hex>"}')
    device_id = ble_device_id(body["mac"]) if isinstance(body.get("mac"), str) else None
    if device_id is None:
        raise ApiError(422, "invalid_body", "mac must be a MAC address (A4:C1:38:12:34:56)")
    mac = _mac(device_id)
    raw_key = body.get("key")
    if not isinstance(raw_key, str):
        raise ApiError(422, "invalid_body", "key must be a string of 32 (or 24) hex digits")
    try:
        key = parse_key(raw_key, what=f"the key for {mac}")
    except KeyFormatError as exc:
        raise ApiError(422, "invalid_key", str(exc)) from None
    wait_s = body.get("wait_s", DEFAULT_WAIT_S)
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float):
        raise ApiError(422, "invalid_body", "wait_s must be a number")
    wait_s = min(max(float(wait_s), 0.1), MAX_WAIT_S)
    cfg = svc.config
    in_config = [m for m in cfg.ble.keys if ble_device_id(m) == device_id] + [
        m
        for m, p in cfg.ble.key_files.items()
        if ble_device_id(m) == device_id and p.parent != key_dir(cfg)
    ]
    if in_config:
        raise ApiError(409, "key_in_config", f"{mac} has a key in the config file: change it there")
    verdict = "unchecked"
    if body.get("check", True):
        if svc.ble is None:
            raise ApiError(409, "ble_unavailable", "BLE is not enabled in this service")
        try:
            verdict = await next_verdict(svc.ble, mac, key, wait_s)
        except TimeoutError:
            raise ApiError(
                504,
                "no_encrypted_advert",
                f"no encrypted advert from {mac} in {wait_s:g} s (in range? battery?): "
                "the key is not saved",
            ) from None
        if verdict != "ok":
            raise ApiError(
                422, "key_invalid", f"the key does not decrypt {mac}'s adverts: not saved"
            )
    path = key_dir(cfg) / mac
    try:
        await asyncio.to_thread(_write_key, path, key.raw.hex())
    except OSError as exc:
        raise ApiError(507, "write_failed", f"cannot write {path}: {exc.strerror}") from None
    new = cfg.replace(ble=dataclasses.replace(cfg.ble, key_files={**cfg.ble.key_files, mac: path}))
    result = await svc.reload(new)
    _LOGGER.info("BLE bind key for %s saved in %s (%s)", mac, path, verdict)
    return json_response(
        {
            "status": "ok",
            "mac": mac,
            "device": device_id,
            "path": str(path),
            "check": verdict,
            "reloaded": list(result.restarted),
        }
    )


async def list_keys(request: http.Request) -> http.Response:
    """Every MAC with a key (where it is kept, whether it decrypts) and every device that
    needs one. Never a key."""
    svc = request.app[SERVICE]
    store = svc.store
    if store is None:
        raise ApiError(409, "store_closed", "the state database is closed")
    ble = svc.config.ble
    where: dict[str, str] = {}
    for mac in ble.keys:
        where[ble_device_id(mac) or mac] = "config"
    for mac, path in ble.key_files.items():
        where[ble_device_id(mac) or mac] = str(path)
    devices = {d.id: d for d in await store.devices() if d.id.startswith("ble-")}
    keyed = frozenset(where)
    rows = []
    for dev_id in sorted(set(where) | {i for i, d in devices.items() if key_status(d) != "none"}):
        dev = devices.get(dev_id)
        rows.append(
            {
                "device": dev_id,
                "mac": _mac(dev_id) if ble_device_id(dev_id) == dev_id else dev_id,
                "name": dev.name if dev else "",
                "model": dev.model if dev else "",
                "key": where.get(dev_id),
                "key_status": key_status(dev, keyed) if dev else "not_seen",
                "last_seen": dev.last_seen if dev else None,
                "added": dev is not None,
            }
        )
    # encrypted strangers (not added: join = "allowlisted") need a key before they can be
    directory = svc.ingest.directory if svc.ingest is not None else None
    listed = {r["device"] for r in rows}
    rows.extend(
        {
            "device": s["id"],
            "mac": _mac(s["id"]),
            "name": s["name"],
            "model": s["model"],
            "key": None,
            "key_status": "needs_key",
            "last_seen": s["last_seen"],
            "added": False,
        }
        for s in (directory.strangers() if directory is not None else ())
        if s["encrypted"] and s["id"] not in listed
    )
    return json_response({"keys": rows})
