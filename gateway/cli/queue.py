"""``migw queue``: the outbox (depth, bytes, oldest), or ``--watch`` its drain after an
outage."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from gateway.api.serialize import outbox_json
from gateway.cli.base import cli, json_option
from gateway.cli.calls import EXIT_NOT_RUNNING, EXIT_OK, fail, pass_target, read, run
from gateway.cli.client import (
    ApiClient,
    ApiFailure,
    ServiceDown,
    Target,
    console,
    fmt_time,
    human_bytes,
    human_duration,
    notice,
    open_state,
    print_json,
)

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
@pass_target
def queue(target: Target, watch: bool, interval: float, as_json: bool) -> int:
    """The outbox: depth, bytes, oldest age, dropped, expired, and the oldest waiting item."""
    if watch:
        try:
            return run(_watch_queue(target, interval, as_json))
        except ServiceDown as exc:
            notice(f"{exc}; --watch needs the running service")
            return EXIT_NOT_RUNNING
        except ApiFailure as exc:
            return fail(exc)
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
