"""``migw status``: service, radios, upstream, outbox, clock and disk at a glance (the saved
state when the service is down)."""

from __future__ import annotations

import time
from typing import Any

from gateway.api.serialize import devices_summary_json, disk_json, outbox_json
from gateway.cli.base import cli, json_option
from gateway.cli.calls import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, pass_target, read
from gateway.cli.client import (
    Target,
    console,
    human_age,
    human_bytes,
    human_duration,
    open_state,
    print_json,
)
from gateway.clock import clock_synchronized


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
