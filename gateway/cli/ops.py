"""Operations commands: ``migw status|devices|tail|queue|send|token`` and
``migw zigbee permit-join``. Each talks to the running service through the LAN API; the
read-only ones (status, devices, queue) read the state database when the service is down,
and say so."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import click
from aiohttp import WSCloseCode

from gateway.api.serialize import device_json, is_stale, keyed_devices, outbox_json
from gateway.api.token import TokenError, ensure_token, file_mode, rotate_token, token_path
from gateway.cli.base import CliContext, cli, json_option, pass_ctx, zigbee
from gateway.cli.client import (
    ApiClient,
    ApiFailure,
    ServiceDown,
    Target,
    console,
    fmt_time,
    fmt_value,
    human_age,
    human_bytes,
    human_duration,
    notice,
    open_state,
    print_json,
    resolve,
)
from gateway.clock import clock_synchronized
from gateway.commands import DEFAULT_PULSE_S, MAX_PULSE_S
from gateway.errors import ConfigError, StoreError
from gateway.model import Transport

_T = TypeVar("_T")

#: Exit codes of the read-only commands (documented in docs/api.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


def _target(ctx: CliContext) -> Target | None:
    try:
        return resolve(ctx)
    except ConfigError as exc:
        notice(f"invalid config: {exc}")
        return None


def _run(coro: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coro

    return asyncio.run(main())


async def _api_or_state(
    target: Target,
    online: Callable[[ApiClient], Awaitable[Any]],
    offline: Callable[[Target], Awaitable[Any]],
) -> tuple[Any, bool]:
    """``(data, live)``: from the API, or from the read-only database when it is down."""
    async with ApiClient(target) as api:
        try:
            return await online(api), True
        except ServiceDown as exc:
            down = exc
    try:
        data = await offline(target)
    except StoreError as exc:
        raise ServiceDown(f"{down}, and the saved state cannot be read: {exc}") from None
    notice(f"{down}; showing the saved state from {target.db_path} (read-only)")
    return data, False


def _fail(exc: Exception) -> int:
    notice(str(exc))
    return EXIT_FAILED


def _read(
    target: Target, path: str, offline: Callable[[Target], Awaitable[Any]]
) -> tuple[Any, bool] | int:
    """``(data, live)`` for a read-only command, or its exit code when neither the API nor
    the saved state could answer."""
    try:
        return _run(_api_or_state(target, lambda api: api.get(path), offline))
    except ServiceDown as exc:
        notice(str(exc))
        return EXIT_NOT_RUNNING
    except (ApiFailure, StoreError) as exc:
        return _fail(exc)


# ------------------------------------------------------------------------------ status


async def _status_offline(target: Target) -> dict[str, Any]:
    reader = await open_state(target)
    try:
        devices = await reader.devices()
        stats = await reader.outbox_stats()
        oldest = await reader.outbox_fetch(1)
        last_seq = await reader.meta_get("last_seq")
    finally:
        await reader.close()
    now = time.time()
    try:
        usage = shutil.disk_usage(target.state_dir)
        disk: dict[str, Any] = {
            "path": str(target.state_dir),
            "free_bytes": usage.free,
            "total_bytes": usage.total,
        }
    except OSError as exc:
        disk = {"path": str(target.state_dir), "error": exc.strerror or str(exc)}
    outbox = outbox_json(stats, oldest[0] if oldest else None, None, now)
    outbox["upstream"] = "unknown (service not running)"
    return {
        "service": {"state": "not running", "status": "down", "reasons": [], "read_only": True},
        "radios": [],
        "upstream": outbox["upstream"],
        "outbox": outbox,
        "clock": {"synchronized": clock_synchronized()},
        "disk": disk,
        "store": {"last_seq": int(last_seq) if last_seq else 0},
        "devices": {
            "total": len(devices),
            "stale": sum(is_stale(d, now) for d in devices),
            "by_status": dict(sorted(Counter(d.status.value for d in devices).items())),
        },
    }


def _render_status(data: dict[str, Any]) -> None:
    from rich.table import Table

    con = console()
    svc = data["service"]
    if svc["state"] == "running":
        mode = " (demo)" if svc.get("demo") else ""
        con.print(
            f"service    running{mode}, {svc['status']}, up {human_duration(svc['uptime_s'])}"
            f", version {svc.get('version', '?')}, gateway {svc.get('gateway_id', '?')}"
        )
        for reason in svc.get("reasons", []):
            con.print(f"           degraded: {reason}")
    else:
        con.print("service    NOT RUNNING (figures below from the saved state, read-only)")
    ob = data["outbox"]
    con.print(f"upstream   {data['upstream']}")
    con.print(
        f"outbox     {ob['depth']} waiting ({human_bytes(ob['bytes'])}), oldest "
        f"{human_age(ob['oldest_age_s']) if ob['oldest_age_s'] is not None else '-'}"
        + (f", dropped {ob['dropped']}" if ob.get("dropped") is not None else "")
        + (f", expired {ob['expired']}" if ob.get("expired") is not None else "")
    )
    clock = "synchronised" if data["clock"]["synchronized"] else "NOT synchronised (check NTP)"
    con.print(f"clock      {clock}")
    disk = data["disk"]
    if "free_bytes" in disk:
        con.print(f"disk       {human_bytes(disk['free_bytes'])} free in {disk['path']}")
    else:
        con.print(f"disk       {disk['path']}: {disk.get('error')}")
    devs = data["devices"]
    by = ", ".join(f"{k} {v}" for k, v in devs["by_status"].items()) or "none"
    con.print(f"devices    {devs['total']} ({by}); {devs['stale']} stale")
    if data["radios"]:
        table = Table(
            "RADIO", "STATE", "HEALTH", "RESTARTS", "COUNTERS (non-zero)", "REASON", box=None
        )
        for r in data["radios"]:
            # non-zero counters only: a technician looks for what happened
            counters = " ".join(f"{k}={v}" for k, v in sorted(r["counters"].items()) if v)
            table.add_row(
                r["name"], r["state"], r["health"], str(r["restarts"]), counters, r["reason"]
            )
        con.print(table)


@cli.command()
@json_option
@pass_ctx
def status(ctx: CliContext, as_json: bool) -> int:
    """Service, uptime, radios, upstream, outbox, clock and disk at a glance.

    Exit code: 0 running and healthy, 1 running but degraded, 3 not running.
    """
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    got = _read(target, "/api/v1/status", _status_offline)
    if isinstance(got, int):
        return got
    data, live = got
    if as_json:
        print_json(data)
    else:
        _render_status(data)
    if not live:
        return EXIT_NOT_RUNNING
    return EXIT_OK if data["service"]["status"] == "ok" else EXIT_FAILED


# ------------------------------------------------------------------------------ devices


async def _devices_offline(target: Target) -> dict[str, Any]:
    reader = await open_state(target)
    try:
        devices = await reader.devices()
    finally:
        await reader.close()
    now = time.time()
    keyed = keyed_devices(target.config.ble)
    return {"devices": [device_json(d, now, keyed) for d in devices], "count": len(devices)}


def _render_devices(devices: list[dict[str, Any]]) -> None:
    from rich.table import Table

    con = console()
    if not devices:
        con.print("no devices")
        return
    table = Table(
        "ID",
        "NAME",
        "MODEL",
        "TRANSPORT",
        "LAST SEEN",
        "BATTERY",
        "RSSI/LQI",
        "KEY",
        "STATUS",
        box=None,
    )
    for d in devices:
        radio = "-"
        if d["rssi"] is not None:
            radio = f"{d['rssi']} dBm"
        elif d["lqi"] is not None:
            radio = f"lqi {d['lqi']}"
        status = d["status"] + (" (stale)" if d["stale"] else "")
        table.add_row(
            d["id"],
            d["name"] or "-",
            d["model"] or "-",
            d["transport"],
            human_age(d["last_seen_age_s"]),
            "-" if d["battery"] is None else f"{d['battery']:g} %",
            radio,
            d["key_status"],
            status,
        )
    con.print(table)


@cli.command()
@click.option(
    "--transport",
    "transports",
    multiple=True,
    type=click.Choice([t.value for t in Transport]),
    help="Only this transport (repeatable).",
)
@click.option("--stale", is_flag=True, help="Only devices silent for too long (or unavailable).")
@json_option
@pass_ctx
def devices(ctx: CliContext, transports: tuple[str, ...], stale: bool, as_json: bool) -> int:
    """Devices: id, model, transport, last seen, battery, rssi/lqi, key status."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    query = []
    if transports:
        query.append("transport=" + ",".join(transports))
    if stale:
        query.append("stale=true")
    path = "/api/v1/devices" + ("?" + "&".join(query) if query else "")
    got = _read(target, path, _devices_offline)
    if isinstance(got, int):
        return got
    data, _live = got
    rows = [
        d
        for d in data["devices"]
        if (not transports or d["transport"] in transports) and (not stale or d["stale"])
    ]
    if as_json:
        print_json({"devices": rows, "count": len(rows)})
    else:
        _render_devices(rows)
    return EXIT_OK


# ------------------------------------------------------------------------------ queue


async def _queue_offline(target: Target) -> dict[str, Any]:
    reader = await open_state(target)
    try:
        stats = await reader.outbox_stats()
        oldest = await reader.outbox_fetch(1)
    finally:
        await reader.close()
    out = outbox_json(stats, oldest[0] if oldest else None, None)
    out["upstream"] = "unknown (service not running)"
    return out


async def _watch_queue(target: Target, interval: float, as_json: bool) -> int:
    """Poll the outbox until it is empty, showing the drain's progress, rate and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    con = console()
    async with ApiClient(target) as api:
        data = await api.get("/api/v1/outbox")
        total = int(data["depth"])
        prev_depth, prev_t = total, time.monotonic()
        bar = None
        if con.is_terminal and not as_json:
            bar = Progress(
                TextColumn("draining the outbox"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=con,
                transient=False,
            )
            bar.start()
            task = bar.add_task("drain", total=max(total, 1), rate="")
        try:
            while True:
                depth = int(data["depth"])
                now = time.monotonic()
                rate = (prev_depth - depth) / (now - prev_t) if now > prev_t else 0.0
                prev_depth, prev_t = depth, now
                total = max(total, depth)
                eta = depth / rate if rate > 0 else None
                if bar is not None:
                    shown = f"{rate:,.0f}/s" if rate > 0 else ""
                    bar.update(task, total=max(total, 1), completed=total - depth, rate=shown)
                elif as_json:
                    line = {
                        "ts": time.time(),
                        "depth": depth,
                        "bytes": data["bytes"],
                        "upstream": data["upstream"],
                        "rate": round(rate, 1),
                    }
                    click.echo(json.dumps(line))
                else:
                    click.echo(
                        f"{time.strftime('%H:%M:%S')} waiting {depth} "
                        f"({human_bytes(data['bytes'])}), upstream {data['upstream']}"
                        + (f", draining {rate:,.0f}/s" if rate > 0 else "")
                        + (f", empty in ~{human_duration(eta)}" if eta is not None else "")
                    )
                if depth == 0:
                    break
                await asyncio.sleep(interval)
                data = await api.get("/api/v1/outbox")
        finally:
            if bar is not None:
                bar.stop()
    if not as_json:
        notice("the outbox is empty: everything reached the broker")
    return EXIT_OK


@cli.command()
@click.option(
    "--watch",
    is_flag=True,
    help="Follow the outbox until it is empty (a drain after an outage), with progress.",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --watch.",
)
@json_option
@pass_ctx
def queue(ctx: CliContext, watch: bool, interval: float, as_json: bool) -> int:
    """The outbox: depth, bytes, oldest age, dropped, expired, and the oldest waiting item."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    if watch:
        try:
            return _run(_watch_queue(target, interval, as_json))
        except ServiceDown as exc:
            notice(f"{exc}; --watch needs the running service")
            return EXIT_NOT_RUNNING
        except ApiFailure as exc:
            return _fail(exc)
    got = _read(target, "/api/v1/outbox", _queue_offline)
    if isinstance(got, int):
        return got
    data, _live = got
    if as_json:
        print_json(data)
        return EXIT_OK
    con = console()
    rows = [
        ("upstream", str(data["upstream"])),
        ("waiting", f"{data['depth']} ({data['events']} events)"),
        ("bytes", human_bytes(data["bytes"])),
        ("oldest age", human_duration(data["oldest_age_s"])),
        ("dropped", "-" if data.get("dropped") is None else str(data["dropped"])),
        ("expired", "-" if data.get("expired") is None else str(data["expired"])),
    ]
    from rich.table import Table

    table = Table("OUTBOX", "", box=None, show_header=False)
    for k, v in rows:
        table.add_row(k, v)
    con.print(table)
    oldest = data.get("oldest")
    if oldest:
        body = oldest["body"]
        what = json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body
        con.print(
            f"oldest waiting: #{oldest['seq']} {oldest['kind']} {oldest['device']} "
            f"at {fmt_time(oldest['ts'])}: {what}"
        )
    else:
        con.print("oldest waiting: nothing waiting")
    return EXIT_OK


# ------------------------------------------------------------------------------ tail


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


async def _tail(
    target: Target, path: str, count: int | None, as_json: bool, ready: Callable[[], None]
) -> int:
    seen = 0
    async with ApiClient(target) as api:
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
                if data.get("type") in ("reading", "event"):
                    seen += 1
                    if count is not None and seen >= count:
                        return EXIT_OK
        finally:
            await ws.close()
    code = ws.close_code
    if code == WSCloseCode.GOING_AWAY:
        notice("the service is stopping: the stream ended")
        return EXIT_NOT_RUNNING
    if code == WSCloseCode.TRY_AGAIN_LATER:
        notice("the service dropped this stream: the terminal did not keep up (use filters)")
        return EXIT_FAILED
    if code not in (None, WSCloseCode.OK):
        notice(f"the stream ended (WebSocket close code {code})")
        return EXIT_FAILED
    return EXIT_OK


@cli.command()
@click.option("--device", "devices_", multiple=True, help="Only this device id (repeatable).")
@click.option("--metric", "metrics", multiple=True, help="Only this metric (repeatable).")
@click.option("-n", "--count", type=click.IntRange(1), help="Stop after this many readings/events.")
@json_option
@pass_ctx
def tail(
    ctx: CliContext,
    devices_: tuple[str, ...],
    metrics: tuple[str, ...],
    count: int | None,
    as_json: bool,
) -> int:
    """Live readings and events as they are stored (Ctrl-C stops)."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
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
        return _run(_tail(target, path, count, as_json, ready))
    except ServiceDown as exc:
        notice(f"{exc}; tail needs the running service (`migw status` shows the saved state)")
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        return _fail(exc)


# ------------------------------------------------------------------------------ send


@cli.command()
@click.argument("device")
@click.argument("action", type=click.Choice(["on", "off", "toggle", "pulse"]))
@click.option(
    "--seconds",
    type=click.FloatRange(0, MAX_PULSE_S, min_open=True),
    help=f"Pulse: on for this many seconds, then off (default {DEFAULT_PULSE_S:g}).",
)
@json_option
@pass_ctx
def send(ctx: CliContext, device: str, action: str, seconds: float | None, as_json: bool) -> int:
    """Switch a relay, plug or GPIO output: on, off, toggle, or pulse (on for --seconds,
    then off, whatever the state before; a pulse while one runs extends it)."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    body: dict[str, Any] = {"command": action}
    if action == "pulse":
        body["seconds"] = seconds if seconds is not None else DEFAULT_PULSE_S
    elif seconds is not None:
        notice("--seconds only goes with pulse")
        return EXIT_USAGE

    async def go() -> Any:
        async with ApiClient(target) as api:
            quoted = urllib.parse.quote(device, safe="")
            return await api.post(f"/api/v1/devices/{quoted}/commands", body)

    try:
        result = _run(go())
    except ServiceDown as exc:
        notice(f"{exc}; commands need the running service")
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        if as_json:
            error = {"device": device, "status": "error", "code": exc.code}
            print_json({**error, "message": exc.message})
        return _fail(exc)
    if as_json:
        print_json(result)
    else:
        state = ", ".join(f"{k} = {fmt_value(v, metric=k)}" for k, v in result["state"].items())
        click.echo(f"{device}: {action} ok" + (f" ({state})" if state else ""))
    return EXIT_OK


# ------------------------------------------------------------------------------ token


@cli.command()
@click.option("--rotate", is_flag=True, help="Replace the token (the old one stops working).")
@json_option
@pass_ctx
def token(ctx: CliContext, rotate: bool, as_json: bool) -> int:
    """Print the LAN API bearer token (created when missing), or rotate it."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    try:
        value = rotate_token(target.state_dir) if rotate else ensure_token(target.state_dir)
    except TokenError as exc:
        return _fail(exc)
    path = token_path(target.state_dir)
    mode = file_mode(target.state_dir)
    if as_json:
        print_json(
            {
                "token": value,
                "path": str(path),
                "mode": None if mode is None else f"{mode:04o}",
                "rotated": rotate,
            }
        )
    else:
        click.echo(value)
        notice(
            f"{'new token written to' if rotate else 'token from'} {path}; use it as "
            f"'Authorization: Bearer <token>'"
        )
    return EXIT_OK


# ------------------------------------------------------------------------------ zigbee


@zigbee.command("permit-join")
@click.argument("seconds", type=click.IntRange(0, 254), default=60)
@json_option
@pass_ctx
def permit_join(ctx: CliContext, seconds: int, as_json: bool) -> int:
    """Let new Zigbee devices join for SECONDS (default 60; 0 closes the network)."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE

    async def go() -> Any:
        async with ApiClient(target) as api:
            return await api.post("/api/v1/zigbee/permit-join", {"seconds": seconds})

    try:
        result = _run(go())
    except ServiceDown as exc:
        notice(f"{exc}; permit join needs the running service")
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        return _fail(exc)
    if as_json:
        print_json(result)
    elif seconds:
        click.echo(
            f"the Zigbee network is open for {seconds} s: press the pairing button on the "
            "device now (`migw tail` shows it joining)"
        )
    else:
        click.echo("the Zigbee network is closed to new devices")
    return EXIT_OK
