"""``migw tail``: live readings and events over the API's WebSocket, following the service
through a restart."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import click
from aiohttp import WSCloseCode

from gateway.cli.base import cli, json_option
from gateway.cli.calls import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, fail, pass_target, run
from gateway.cli.client import ApiClient, ApiFailure, ServiceDown, Target, fmt_value, notice


def _tail_line(msg: dict[str, Any]) -> str | None:
    kind = msg.get("type")
    when = time.strftime("%H:%M:%S", time.localtime(msg.get("ts") or time.time()))
    if kind == "reading":
        value = fmt_value(msg["value"], msg.get("unit"), msg.get("metric", ""))
        return f"{when} #{msg['seq']} {msg['device']} {msg['metric']} = {value}"
    if kind == "event":
        button = f" button {msg['button']}" if msg.get("button") is not None else ""
        return f"{when} #{msg['seq']} {msg['device']} {msg['event']}: {msg['action']}{button}"
    if kind == "status":
        reasons = "; ".join(msg.get("reasons", []))
        return f"{when} service {msg.get('status')}" + (f": {reasons}" if reasons else "")
    return None


#: Seconds between attempts to reach a restarting service (``tail`` follows it back).
TAIL_RETRY_S = (0.2, 0.5, 1.0, 2.0)
#: After this long without the service, ``tail`` gives up.
TAIL_GIVE_UP_S = 300.0


class _StreamEnded(Exception):
    """The service closed the stream (stopping or restarting): reconnect."""


async def _check_devices(api: ApiClient, devices: tuple[str, ...]) -> None:
    for dev in devices:
        try:
            await api.get(f"/api/v1/devices/{urllib.parse.quote(dev, safe='')}")
        except ApiFailure as exc:
            if exc.code == "unknown_device":
                raise ApiFailure(
                    404, "unknown_device", f"no such device {dev!r} (`migw devices` lists them)"
                ) from None
            raise


async def _follow(
    api: ApiClient, path: str, as_json: bool, on_item: Callable[[], bool], ready: Callable[[], None]
) -> int:
    """One WebSocket session; the exit code, or _StreamEnded when the service went away."""
    ws = await api.websocket(path)
    try:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("type") == "hello":
                ready()
                continue
            if as_json:
                click.echo(json.dumps(data, ensure_ascii=False))
            else:
                line = _tail_line(data)
                if line is not None:
                    click.echo(line)
            if data.get("type") in ("reading", "event") and on_item():
                return EXIT_OK
    finally:
        await ws.close()
    code = ws.close_code
    if code == WSCloseCode.TRY_AGAIN_LATER:
        notice("the service dropped this stream: the terminal did not keep up (use filters)")
        return EXIT_FAILED
    # going away (a restart or a stop), or the connection broke: follow the service back
    raise _StreamEnded(f"close code {code}")


async def _tail(
    target: Target,
    path: str,
    devices: tuple[str, ...],
    count: int | None,
    as_json: bool,
    ready: Callable[[], None],
) -> int:
    seen = 0

    def on_item() -> bool:
        nonlocal seen
        seen += 1
        return count is not None and seen >= count

    async with ApiClient(target) as api:
        await _check_devices(api, devices)
        first = True
        while True:
            try:
                return await _follow(api, path, as_json, on_item, ready if first else lambda: None)
            except _StreamEnded:
                pass
            first = False
            notice("the service went away (restarting?): waiting for it to come back")
            started = time.monotonic()
            attempt = 0
            while True:
                await asyncio.sleep(TAIL_RETRY_S[min(attempt, len(TAIL_RETRY_S) - 1)])
                attempt += 1
                try:
                    await api.get("/api/v1/health")
                    break
                except ServiceDown:
                    if time.monotonic() - started > TAIL_GIVE_UP_S:
                        notice(f"the service did not come back in {TAIL_GIVE_UP_S:g} s")
                        return EXIT_NOT_RUNNING
            notice("the service is back: following again")


@cli.command()
@click.option("--device", "devices_", multiple=True, help="Only this device id (repeatable).")
@click.option("--metric", "metrics", multiple=True, help="Only this metric (repeatable).")
@click.option("-n", "--count", type=click.IntRange(1), help="Stop after this many readings/events.")
@json_option
@pass_target
def tail(
    target: Target,
    devices_: tuple[str, ...],
    metrics: tuple[str, ...],
    count: int | None,
    as_json: bool,
) -> int:
    """Live readings and events as they are stored (Ctrl-C stops); follows the service
    through a restart."""
    query = []
    if devices_:
        query.append("device=" + ",".join(devices_))
    if metrics:
        query.append("metric=" + ",".join(metrics))
    path = "/api/v1/events" + ("?" + "&".join(query) if query else "")

    def ready() -> None:
        if not as_json:
            notice(f"following {target.base_url} (Ctrl-C stops)")

    try:
        return run(_tail(target, path, devices_, count, as_json, ready))
    except ServiceDown as exc:
        notice(f"{exc}; tail needs the running service (`migw status` shows the saved state)")
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        return fail(exc)
