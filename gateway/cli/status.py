"""``migw status`` (service, radios, upstream, outbox, clock and disk at a glance) and ``migw
queue`` (the outbox: depth, bytes, oldest; ``--watch`` its drain after an outage). Both show
the saved state when the service is down."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from gateway.api.serialize import devices_summary_json, disk_json, outbox_json
from gateway.cli.base import cli, json_option
from gateway.cli.calls import (
    EXIT_FAILED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    call_service,
    pass_target,
    read,
)
from gateway.cli.client import (
    ApiClient,
    Target,
    console,
    fmt_time,
    human_age,
    human_bytes,
    human_duration,
    notice,
    open_state,
    print_json,
)
from gateway.clock import clock_synchronized


async def _status_offline(target: Target) -> dict[str, Any]:
    async with open_state(target) as reader:
        devices = await reader.devices()
        stats = await reader.outbox_stats()
        oldest = await reader.outbox_fetch(1)
        last_seq = await reader.meta_get("last_seq")
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
    limit = ""
    if "max" in devs:  # the running service's device limit
        limit = f"; limit {devs['max']:,}"
        if devs.get("refused"):
            limit += f", {devs['refused']:,} new refused"
    con.print(f"devices    {devs['total']} ({by}); {devs['stale']} stale{limit}")
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
@pass_target
def status(target: Target, as_json: bool) -> int:
    """Service, uptime, radios, upstream, outbox, clock and disk at a glance.

    Exit code: 0 running and healthy, 1 running but degraded, 3 not running.
    """
    data, live = read(target, "/api/v1/status", _status_offline)
    if as_json:
        print_json(data)
    else:
        _render_status(data)
    if not live:
        return EXIT_NOT_RUNNING
    return EXIT_OK if data["service"]["status"] == "ok" else EXIT_FAILED


# ------------------------------------------------------------------------------ queue

#: What ``queue`` says without an uplink (the store then keeps only the newest items).
NO_UPLINK = "none configured (the outbox keeps only the newest items)"


async def _queue_offline(target: Target) -> dict[str, Any]:
    async with open_state(target) as reader:
        stats = await reader.outbox_stats()
        oldest = await reader.outbox_fetch(1)
    out = outbox_json(stats, oldest[0] if oldest else None, None)
    if stats.uplink:
        out["upstream"] = "unknown (service not running)"
    return out


async def _watch_queue(api: ApiClient, interval: float, as_json: bool) -> int:
    """Poll the outbox until it is empty, showing the drain's progress, rate and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    con = console()
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
@pass_target
def queue(target: Target, watch: bool, interval: float, as_json: bool) -> int:
    """The outbox: depth, bytes, oldest age, dropped, expired, and the oldest waiting item."""
    if watch:
        code, done = call_service(
            target, "--watch", lambda api: _watch_queue(api, interval, as_json)
        )
        return int(done) if code == EXIT_OK else code
    data, _live = read(target, "/api/v1/outbox", _queue_offline)
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
