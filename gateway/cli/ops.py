"""Operations commands: ``migw status|devices|tail|queue|send|token`` and
``migw zigbee permit-join``. Each talks to the running service through the LAN API; the
read-only ones (status, devices, queue) read the state database when the service is down,
and say so."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import click
from aiohttp import WSCloseCode

from gateway.api.serialize import (
    device_detail_json,
    device_json,
    devices_summary_json,
    disk_json,
    keyed_devices,
    outbox_json,
)
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
    has_state,
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


def call_service(
    target: Target, what: str, go: Callable[[ApiClient], Awaitable[Any]]
) -> tuple[int, Any]:
    """``(EXIT_OK, answer)`` of a call that needs the running service, or ``(exit code,
    None)`` with the reason on stderr."""

    async def run() -> Any:
        async with ApiClient(target) as api:
            return await go(api)

    try:
        return EXIT_OK, _run(run())
    except ServiceDown as exc:
        notice(f"{exc}; {what} needs the running service")
        return EXIT_NOT_RUNNING, None
    except ApiFailure as exc:
        notice(exc.message if exc.code == "unknown_device" else str(exc))
        return EXIT_FAILED, None


def get_for_table(target: Target, what: str, path: str, as_json: bool) -> tuple[int, Any]:
    """``GET path`` from the running service: ``(exit code, data to render)``, the data
    None when there is nothing more to do (an error, or printed as --json)."""
    code, data = call_service(target, what, lambda api: api.get(path))
    if code == EXIT_OK and as_json:
        print_json(data)
        return code, None
    return code, data


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
    outbox = outbox_json(stats, oldest[0] if oldest else None, None, now)
    outbox["upstream"] = "unknown (service not running)"
    return {
        "service": {"state": "not running", "status": "down", "reasons": [], "read_only": True},
        "radios": [],
        "upstream": outbox["upstream"],
        "outbox": outbox,
        "clock": {"synchronized": clock_synchronized()},
        "disk": disk_json(target.state_dir),
        "store": {"last_seq": int(last_seq) if last_seq else 0},
        "devices": devices_summary_json(devices, now),
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


#: Columns of ``migw devices`` from the last to drop on a narrow terminal to the first;
#: the id is never dropped nor cut (it is what ``send``, ``tail`` and ``device`` take).
_DEVICE_COLUMNS = (
    "ID",
    "NAME",
    "LAST SEEN",
    "STATUS",
    "MODEL",
    "BATTERY",
    "ROOM",
    "RSSI/LQI",
    "KEY",
    "TRANSPORT",
)
_WRAPPING = frozenset({"NAME", "MODEL", "ROOM", "STATUS"})


def _radio(d: dict[str, Any]) -> str:
    if d.get("rssi") is not None:
        return f"{d['rssi']} dBm"
    if d.get("lqi") is not None:
        return f"lqi {d['lqi']}"
    return "-"


def _device_cells(d: dict[str, Any]) -> dict[str, str]:
    return {
        "ID": d["id"],
        "NAME": d.get("name") or "-",
        "ROOM": d.get("room") or "-",
        "MODEL": d.get("model") or "-",
        "TRANSPORT": d["transport"],
        "LAST SEEN": human_age(d["last_seen_age_s"]),
        "BATTERY": "-" if d.get("battery") is None else f"{d['battery']:g} %",
        "RSSI/LQI": _radio(d),
        "KEY": d.get("key_status", "none"),
        "STATUS": d["status"] + (" (stale)" if d.get("stale") else ""),
    }


def fit_columns(rows: list[dict[str, str]], order: tuple[str, ...], width: int) -> list[str]:
    """The columns of ``order`` that fit ``width``: the first always, whole; wrapping ones at
    their header's width (or 10); the others at their widest cell. Dropped from the end."""
    gap = 2

    def need(col: str) -> int:
        widest = max([len(col), *(len(r[col]) for r in rows)])
        return min(widest, max(len(col), 10)) if col in _WRAPPING else widest

    shown = list(order)
    while len(shown) > 1 and sum(need(c) for c in shown) + gap * (len(shown) - 1) > width:
        shown.pop()
    return [c for c in order if c in shown]


def _render_devices(devices: list[dict[str, Any]]) -> None:
    from rich.table import Table

    con = console()
    if not devices:
        con.print("no devices")
        return
    rows = [_device_cells(d) for d in devices]
    columns = tuple(
        c for c in _DEVICE_COLUMNS if c != "ROOM" or any(r["ROOM"] != "-" for r in rows)
    )
    shown = fit_columns(rows, columns, con.width)
    # the table keeps the usual order: id, name, room, model, transport, ...
    order = [c for c in ("ID", "NAME", "ROOM", "MODEL", "TRANSPORT", "LAST SEEN", "BATTERY",
                         "RSSI/LQI", "KEY", "STATUS") if c in shown]  # fmt: skip
    table = Table(box=None, pad_edge=False)
    for col in order:
        if col == "ID":
            widest = max(len(r["ID"]) for r in rows)
            table.add_column(col, no_wrap=True, min_width=widest)
        elif col in _WRAPPING:
            table.add_column(col, overflow="fold")
        else:
            table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(*(r[c] for c in order))
    con.print(table)
    dropped = [c.lower() for c in columns if c not in shown]
    if dropped:
        notice(f"not shown on {con.width} columns: {', '.join(dropped)} (wider, or --json)")


@cli.command()
@click.option(
    "--transport",
    "transports",
    multiple=True,
    type=click.Choice([t.value for t in Transport]),
    help="Only this transport (repeatable).",
)
@click.option("--stale", is_flag=True, help="Only devices silent for too long (or unavailable).")
@click.option(
    "--seen",
    is_flag=True,
    help="BLE devices in range that are not added (a neighbour's, or yours before "
    "`migw allow`/`migw name`).",
)
@json_option
@pass_ctx
def devices(
    ctx: CliContext, transports: tuple[str, ...], stale: bool, seen: bool, as_json: bool
) -> int:
    """Devices: id, model, transport, last seen, battery, rssi/lqi, key status."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    if seen:
        return _seen(target, as_json)
    query = []
    if transports:
        query.append("transport=" + ",".join(transports))
    if stale:
        query.append("stale=true")
    path = "/api/v1/devices" + ("?" + "&".join(query) if query else "")
    got = _read(target, path, _devices_offline)
    if isinstance(got, int):
        return got
    data, live = got
    rows = [
        d
        for d in data["devices"]
        if (not transports or d["transport"] in transports) and (not stale or d["stale"])
    ]
    if as_json:
        print_json({"devices": rows, "count": len(rows)})
    else:
        _render_devices(rows)
        if live:
            _mention_strangers(target)
    return EXIT_OK


def _mention_strangers(target: Target) -> None:
    """One line on stderr when BLE devices in range are not added (they are easily missed)."""

    async def go() -> Any:
        async with ApiClient(target) as api:
            return await api.get("/api/v1/ble/seen")

    try:
        n = len(_run(go())["seen"])
    except (ServiceDown, ApiFailure):
        return
    if n:
        what = "1 BLE device in range is" if n == 1 else f"{n} BLE devices in range are"
        notice(f"{what} not added: `migw devices --seen`")


def _seen(target: Target, as_json: bool) -> int:
    code, data = get_for_table(target, "--seen", "/api/v1/ble/seen", as_json)
    if data is None:
        return code
    from rich.table import Table

    con = console()
    strangers = data["seen"]
    if not strangers:
        con.print(f"no BLE device seen but not added (join = {data['join']})")
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    table.add_column("ID (seen, not added)", no_wrap=True, min_width=16)
    for col in ("MODEL", "NAME", "RSSI", "LAST SEEN", "MESSAGES", "ENCRYPTED"):
        table.add_column(col, overflow="fold")
    for d in strangers:
        table.add_row(
            d["id"],
            d["model"] or "-",
            d["name"] or "-",
            "-" if d["rssi"] is None else f"{d['rssi']} dBm",
            human_age(d["last_seen_age_s"]),
            str(d["messages"]),
            "yes" if d["encrypted"] else "no",
        )
    con.print(table)
    notice("`migw allow ID` or `migw name ID NAME` adds one; nothing of theirs is kept or sent")
    return EXIT_OK


# ------------------------------------------------------------------------------ device

#: Recent readings shown by ``migw device``.
DEVICE_HISTORY = 10


async def _device_offline(target: Target, device_id: str) -> dict[str, Any]:
    reader = await open_state(target)
    try:
        dev = await reader.device(device_id)
        if dev is None:
            raise ApiFailure(404, "unknown_device", f"no device {device_id!r}")
        state = await reader.state(device_id)
        rows = await reader.history(device_id, limit=DEVICE_HISTORY)
    finally:
        await reader.close()
    out = device_detail_json(dev, state, keyed=keyed_devices(target.config.ble))
    out["history"] = [{"seq": q, "metric": m, "value": v, "ts": ts} for q, m, v, ts in rows]
    out["events"] = []  # kept by the running service only
    return out


async def _device_online(api: ApiClient, device_id: str) -> dict[str, Any]:
    quoted = urllib.parse.quote(device_id, safe="")
    data: dict[str, Any] = await api.get(f"/api/v1/devices/{quoted}")
    hist = await api.get(f"/api/v1/devices/{quoted}/history?limit={DEVICE_HISTORY}")
    data["history"] = hist["readings"]
    data["events"] = (await api.get(f"/api/v1/devices/{quoted}/events"))["events"]
    return data


def _render_device(d: dict[str, Any], now: float) -> None:
    from rich.table import Table

    con = console()
    title = d["id"] + (f"  {d['name']}" if d.get("name") else "")
    con.print(title + (f"  (room: {d['room']})" if d.get("room") else ""))
    facts = [
        ("model", " ".join(x for x in (d.get("manufacturer"), d.get("model")) if x) or "-"),
        ("transport", d["transport"]),
        ("status", d["status"] + (" (stale)" if d.get("stale") else "")),
        ("last seen", f"{human_age(d['last_seen_age_s'])} ({fmt_time(d['last_seen'])})"),
        ("battery", "-" if d.get("battery") is None else f"{d['battery']:g} %"),
        ("rssi/lqi", _radio(d)),
        ("key", d.get("key_status", "none")),
    ]
    for k, v in facts:
        con.print(f"  {k:<10} {v}")
    table = Table("METRIC", "VALUE", "AGE", box=None, title_justify="left")
    for metric, cur in sorted(d.get("state", {}).items()):
        table.add_row(
            metric, fmt_value(cur["value"], cur.get("unit"), metric), human_age(now - cur["ts"])
        )
    if table.row_count:
        con.print(table)
    else:
        con.print("  no values yet")
    events = d.get("events") or []
    if events:
        con.print("last events:")
        for e in reversed(events[-DEVICE_HISTORY:]):
            button = f" button {e['button']}" if e.get("button") is not None else ""
            con.print(f"  {fmt_time(e['ts'])}  #{e['seq']}  {e['event']}: {e['action']}{button}")
    units = {m: cur.get("unit") for m, cur in d.get("state", {}).items()}
    history = d.get("history") or []
    if history:
        con.print("last readings:")
        for h in reversed(history):
            value = fmt_value(h["value"], units.get(h["metric"]), h["metric"])
            con.print(f"  {fmt_time(h['ts'])}  #{h['seq']}  {h['metric']} = {value}")


@cli.command("device")
@click.argument("device_id", metavar="ID")
@json_option
@pass_ctx
def device_cmd(ctx: CliContext, device_id: str, as_json: bool) -> int:
    """One device: current values with units and age, last seen, battery, RSSI/LQI, key
    status, its last events (since the service started) and its last readings."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    try:
        data, _live = _run(
            _api_or_state(
                target,
                lambda api: _device_online(api, device_id),
                lambda t: _device_offline(t, device_id),
            )
        )
    except ServiceDown as exc:
        notice(str(exc))
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        if exc.code == "unknown_device":
            notice(f"no device {device_id!r} (`migw devices` lists them)")
            return EXIT_FAILED
        return _fail(exc)
    except StoreError as exc:
        return _fail(exc)
    if as_json:
        print_json(data)
    else:
        _render_device(data, time.time())
    return EXIT_OK


# ------------------------------------------------------------------------------ queue

#: What ``queue`` says without an uplink (the store then keeps only the newest items).
NO_UPLINK = "none configured (the outbox keeps only the newest items)"


async def _queue_offline(target: Target) -> dict[str, Any]:
    reader = await open_state(target)
    try:
        stats = await reader.outbox_stats()
        oldest = await reader.outbox_fetch(1)
    finally:
        await reader.close()
    out = outbox_json(stats, oldest[0] if oldest else None, None)
    if stats.uplink:
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
        if data.get("uplink") is False:
            notice(f"upstream: {NO_UPLINK}: there is no drain to follow")
            return EXIT_OK
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
        ("upstream", str(data["upstream"]) if data.get("uplink", True) else NO_UPLINK),
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
@pass_ctx
def tail(
    ctx: CliContext,
    devices_: tuple[str, ...],
    metrics: tuple[str, ...],
    count: int | None,
    as_json: bool,
) -> int:
    """Live readings and events as they are stored (Ctrl-C stops); follows the service
    through a restart."""
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
        return _run(_tail(target, path, devices_, count, as_json, ready))
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
@click.option(
    "--create",
    is_flag=True,
    help="Create a token in a state directory the service has not used yet (before its "
    "first start).",
)
@click.option(
    "--link",
    is_flag=True,
    help="Print a one-time login link for the web dashboard (for a phone; good for 5 "
    "minutes; needs the running service).",
)
@json_option
@pass_ctx
def token(ctx: CliContext, rotate: bool, create: bool, link: bool, as_json: bool) -> int:
    """Print the LAN API bearer token of the service, or rotate it."""
    target = _target(ctx)
    if target is None:
        return EXIT_USAGE
    if not create and not has_state(target.state_dir):
        # a token written where the service does not look would be refused by it
        notice(
            f"no migw state in {target.state_dir}: is this the service's state directory? "
            "The service logs where its token is at start (`journalctl -u migw`; the demo "
            "prints it); give that directory with `migw --state-dir DIR token`, or "
            "`migw token --create` to make one here before the service's first start"
        )
        return EXIT_FAILED
    try:
        value = rotate_token(target.state_dir) if rotate else ensure_token(target.state_dir)
    except TokenError as exc:
        return _fail(exc)
    path = token_path(target.state_dir)
    mode = file_mode(target.state_dir)
    if link:

        async def issue(api: ApiClient) -> tuple[Any, str]:
            radios = (await api.get("/api/v1/radios"))["radios"]
            listen = next((r["info"].get("listen", "") for r in radios if r["name"] == "api"), "")
            return await api.post("/api/v1/login-codes"), listen

        code, got = call_service(target, "a login link", issue)
        if code != EXIT_OK:
            return code
        issued, listen = got
        url = f"http://{_lan_host(target, listen)}/#code={issued['code']}"
        if as_json:
            print_json({"link": url, "expires_in_s": issued["expires_in_s"], "uses": 1})
        else:
            click.echo(url)
            notice(
                f"a one-time login link for the web dashboard, good for "
                f"{issued['expires_in_s']:.0f} s (the token itself is not in it)"
            )
        return EXIT_OK
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


def _lan_host(target: Target, listen: str) -> str:
    """``host:port`` a phone on the LAN reaches the API at, from the running service's
    listen address (``0.0.0.0:8380``): a wildcard is this host's address on its default
    route; a loopback API (a demo) stays loopback."""
    host, _, port = listen.rpartition(":")
    if not host:
        host, port = target.config.api.listen, str(target.config.api.port)
    if host not in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the route is chosen
            return f"{s.getsockname()[0]}:{port}"
    except OSError:
        return f"127.0.0.1:{port}"


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

    code, result = call_service(
        target,
        "permit join",
        lambda api: api.post("/api/v1/zigbee/permit-join", {"seconds": seconds}),
    )
    if code != EXIT_OK:
        return code
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
