"""``migw devices`` (the list, ``--seen`` for BLE devices in range but not added) and
``migw device ID`` (one device's values, events and readings)."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import click

from gateway.api.serialize import device_detail_json, device_json, keyed_devices
from gateway.cli.base import cli, json_option
from gateway.cli.calls import (
    EXIT_OK,
    ask,
    get_for_table,
    pass_target,
    read,
)
from gateway.cli.client import (
    ApiClient,
    ApiFailure,
    Target,
    console,
    fmt_time,
    fmt_value,
    human_age,
    notice,
    open_state,
    print_json,
)
from gateway.cli.tables import fit_columns, id_table
from gateway.model import Transport


async def _devices_offline(target: Target) -> dict[str, Any]:
    async with open_state(target) as reader:
        devices = await reader.devices()
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
    shown = fit_columns(rows, columns, con.width, _WRAPPING)
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
@pass_target
def devices(
    target: Target, transports: tuple[str, ...], stale: bool, seen: bool, as_json: bool
) -> int:
    """Devices: id, model, transport, last seen, battery, rssi/lqi, key status."""
    if seen:
        return _seen(target, as_json)
    query = []
    if transports:
        query.append("transport=" + ",".join(transports))
    if stale:
        query.append("stale=true")
    path = "/api/v1/devices" + ("?" + "&".join(query) if query else "")
    data, live = read(target, path, _devices_offline)
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

    seen = ask(target, "/api/v1/ble/seen")
    n = len(seen["seen"]) if seen is not None else 0
    if n:
        what = "1 BLE device in range is" if n == 1 else f"{n} BLE devices in range are"
        notice(f"{what} not added: `migw devices --seen`")


def _seen(target: Target, as_json: bool) -> int:
    code, data = get_for_table(target, "--seen", "/api/v1/ble/seen", as_json)
    if data is None:
        return code
    con = console()
    strangers = data["seen"]
    if not strangers:
        con.print(f"no BLE device seen but not added (join = {data['join']})")
        return EXIT_OK
    columns = ("MODEL", "NAME", "RSSI", "LAST SEEN", "MESSAGES", "ENCRYPTED")
    table = id_table("ID (seen, not added)", columns)
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
    async with open_state(target) as reader:
        dev = await reader.device(device_id)
        if dev is None:
            raise ApiFailure(404, "unknown_device", f"no device {device_id!r}")
        state = await reader.state(device_id)
        rows = await reader.history(device_id, limit=DEVICE_HISTORY)
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
@pass_target
def device_cmd(target: Target, device_id: str, as_json: bool) -> int:
    """One device: current values with units and age, last seen, battery, RSSI/LQI, key
    status, its last events (since the service started) and its last readings."""
    data, _live = read(
        target,
        lambda api: _device_online(api, device_id),
        lambda t: _device_offline(t, device_id),
        unknown=f"no device {device_id!r} (`migw devices` lists them)",
    )
    if as_json:
        print_json(data)
    else:
        _render_device(data, time.time())
    return EXIT_OK
