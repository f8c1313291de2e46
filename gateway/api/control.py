"""The LAN API's endpoints that act: a device command, and the Zigbee coordinator's permit
join and backup (through the typed :class:`~gateway.driver.ZigbeeAdmin`). docs/api.md."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.api import http
from gateway.api.errors import ApiError, json_response
from gateway.api.request import TIMING, device_id_of, read_json, service_of
from gateway.commands import CommandParseError, parse_command
from gateway.driver import ZigbeeAdmin
from gateway.model import CommandStatus

if TYPE_CHECKING:
    from gateway.service import Service

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

PERMIT_JOIN_DEFAULT_S = 60
PERMIT_JOIN_MAX_S = 254

_COMMAND_ERRORS: dict[CommandStatus, tuple[int, str]] = {
    CommandStatus.UNKNOWN_DEVICE: (404, "unknown_device"),
    CommandStatus.UNSUPPORTED: (422, "unsupported_command"),
    CommandStatus.INVALID: (422, "invalid_command"),
    CommandStatus.UNREACHABLE: (409, "device_unreachable"),
    CommandStatus.TIMEOUT: (504, "device_timeout"),
    CommandStatus.ERROR: (502, "driver_error"),
}


async def command(request: http.Request) -> http.Response:
    svc = service_of(request)
    device_id = device_id_of(request)
    body = await read_json(request)
    try:
        cmd = parse_command(body)
    except CommandParseError as exc:
        raise ApiError(422, "invalid_command", str(exc)) from None
    result = await svc.command(device_id, cmd)
    if not result.ok:
        status_, code = _COMMAND_ERRORS.get(result.status, (502, "driver_error"))
        raise ApiError(status_, code, result.detail or result.status.value)
    return json_response(
        {"device": device_id, "command": cmd.action, "status": "ok", "state": result.state}
    )


def _zigbee(svc: Service) -> ZigbeeAdmin:
    admin = svc.zigbee
    if admin is None:
        raise ApiError(
            409, "zigbee_unavailable", "no Zigbee coordinator in this service (zigbee disabled)"
        )
    return admin


async def _ask_coordinator(what: str, call: Awaitable[_T], limit_s: float) -> _T:
    """``call`` on the Zigbee coordinator, its failures as API answers: 504 when it does not
    answer within ``limit_s``, 409 (not ready) for any driver failure."""
    try:
        async with asyncio.timeout(limit_s):
            return await call
    except TimeoutError:
        raise ApiError(
            504, "zigbee_timeout", f"the coordinator did not answer in {limit_s:g} s"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any driver failure is a "not ready" answer
        _LOGGER.warning("%s failed: %s", what, exc)
        raise ApiError(409, "zigbee_not_ready", str(exc)[:200] or type(exc).__name__) from None


async def permit_join(request: http.Request) -> http.Response:
    svc = service_of(request)
    body = await read_json(request, optional=True)
    seconds: Any = PERMIT_JOIN_DEFAULT_S
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"seconds"}:
            raise ApiError(422, "invalid_body", 'expected {"seconds": 0-254}')
        seconds = body.get("seconds", PERMIT_JOIN_DEFAULT_S)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not 0 <= seconds <= PERMIT_JOIN_MAX_S
    ):
        raise ApiError(422, "invalid_body", f"seconds must be an integer 0-{PERMIT_JOIN_MAX_S}")
    admin = _zigbee(svc)
    timeout = request.app[TIMING].permit_join_timeout_s
    await _ask_coordinator("permit join", admin.permit_join(seconds), timeout)
    return json_response({"status": "ok", "seconds": seconds})


async def zigbee_backup(request: http.Request) -> http.Response:
    """Back the Zigbee network up into the state dir (mode 0600). The network key stays on
    the gateway: the answer names the file and summarises it, never the key."""
    svc = service_of(request)
    await read_json(request, optional=True)
    admin = _zigbee(svc)
    timeout = request.app[TIMING].backup_timeout_s
    doc = await _ask_coordinator("zigbee backup", admin.backup(), timeout)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = svc.state_dir / f"zigbee_backup-{stamp}.json"
    try:
        await asyncio.to_thread(admin.write_backup, path, doc)
    except OSError as exc:
        raise ApiError(
            507, "backup_write_failed", f"cannot write {path}: {exc.strerror or exc}"
        ) from None
    summary = doc if isinstance(doc, dict) else {}
    devices = summary.get("devices")
    return json_response(
        {
            "status": "ok",
            "path": str(path),
            "pan_id": summary.get("pan_id"),
            "extended_pan_id": summary.get("extended_pan_id"),
            "channel": summary.get("channel"),
            "devices": len(devices) if isinstance(devices, list) else None,
        }
    )
