"""``migw name ID NAME [--room R]``, ``migw forget ID [--ignore]``, ``migw allow ID``: which
devices the gateway keeps and what they are called (through the running service)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from gateway.cli.base import cli, json_option
from gateway.cli.calls import EXIT_OK, call_service, pass_target
from gateway.cli.client import Target, notice, print_json


def _quoted(device_id: str) -> str:
    return urllib.parse.quote(device_id, safe="")


@cli.command()
@click.argument("device_id", metavar="ID")
@click.argument("new_name", metavar="NAME")
@click.option("--room", help="The room it is in (kept until changed).")
@json_option
@pass_target
def name(target: Target, device_id: str, new_name: str, room: str | None, as_json: bool) -> int:
    """Give a device a name (and a room): shown by the CLI, the API, the logs and Home
    Assistant. Naming a BLE device that is only seen (`migw devices --seen`) adds it."""
    body: dict[str, Any] = {"name": new_name}
    if room is not None:
        body["room"] = room
    code, result = call_service(
        target, "naming", lambda api: api.post(f"/api/v1/devices/{_quoted(device_id)}/name", body)
    )
    if code != EXIT_OK:
        return code
    if as_json:
        print_json(result)
    else:
        where = f" in {result['room']}" if result["room"] else ""
        click.echo(f"{device_id} is now {result['name'] or '(no name)'!s}{where}")
    return EXIT_OK


@cli.command()
@click.argument("device_id", metavar="ID")
@json_option
@pass_target
def allow(target: Target, device_id: str, as_json: bool) -> int:
    """Add a BLE device that is only seen (`migw devices --seen`): ID or MAC."""
    code, result = call_service(
        target, "allowing", lambda api: api.post("/api/v1/ble/allow", {"id": device_id})
    )
    if code != EXIT_OK:
        return code
    if as_json:
        print_json(result)
    else:
        click.echo(f"{result['id']} is added: its readings are kept from now on")
    return EXIT_OK


@cli.command()
@click.argument("device_id", metavar="ID")
@click.option("--ignore", is_flag=True, help="Also keep it out from now on ([ble] ignore).")
@json_option
@pass_target
def forget(target: Target, device_id: str, ignore: bool, as_json: bool) -> int:
    """Remove a device: its record, current values, history, name and allowance."""
    query = "?ignore=true" if ignore else ""
    code, result = call_service(
        target,
        "forget",
        lambda api: api.request("DELETE", f"/api/v1/devices/{_quoted(device_id)}{query}"),
    )
    if code != EXIT_OK:
        return code
    if as_json:
        print_json(result)
        return EXIT_OK
    click.echo(f"{device_id} is forgotten" + (" and ignored from now on" if ignore else ""))
    if result["admitted"] and not device_id.startswith("ble-"):
        notice(
            "it is still in its network and comes back when it next reports (reset it, or "
            "take it out of the network, to be rid of it)"
        )
    elif result["admitted"]:
        notice(
            'it joins again when it next transmits ([ble] join = "all", a bind key or a '
            "config entry): `migw forget --ignore` keeps it out"
        )
    return EXIT_OK
