"""``migw ble key MAC KEY`` and ``migw ble keys`` (through the running service)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from gateway.cli.base import CliContext, ble_group, json_option, pass_ctx
from gateway.cli.calls import EXIT_OK, EXIT_USAGE, call_service, get_for_table, target_of
from gateway.cli.client import REQUEST_TIMEOUT_S, console, fmt_time, notice, print_json
from gateway.cli.tables import id_table


@ble_group.command("key")
@click.argument("mac")
@click.argument("key", metavar="KEY|-")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(1, 600),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the device's next encrypted advert.",
)
@click.option(
    "--no-check", is_flag=True, help="Save without waiting for an advert (device out of range)."
)
@json_option
@pass_ctx
def key_cmd(
    ctx: CliContext, mac: str, key: str, wait_s: float, no_check: bool, as_json: bool
) -> int:
    """Add the bind key of a BLE device: checked against its next encrypted advert, kept in
    the state directory (mode 0600) and loaded by the running service.

    KEY is 32 hex digits (24 for legacy MiBeacon v2/v3); `-` reads it from stdin (keeps it
    out of the shell history).
    """
    target = target_of(ctx)
    if target is None:
        return EXIT_USAGE
    if key == "-":
        key = sys.stdin.readline().strip()
    body: dict[str, Any] = {"mac": mac, "key": key, "wait_s": wait_s, "check": not no_check}
    if not no_check and not as_json:
        notice(f"waiting up to {wait_s:g} s for an encrypted advert from {mac} ...")
    target = dataclasses.replace(target, request_timeout=wait_s + REQUEST_TIMEOUT_S)
    code, result = call_service(
        target, "adding a key", lambda api: api.post("/api/v1/ble/keys", body)
    )
    if code != EXIT_OK:
        return code
    if as_json:
        print_json(result)
        return EXIT_OK
    checked = "it decrypts the device's adverts" if result["check"] == "ok" else "not checked"
    click.echo(f"{result['mac']}: key saved in {result['path']} ({checked}); service reloaded")
    return EXIT_OK


@ble_group.command("keys")
@json_option
@pass_ctx
def keys_cmd(ctx: CliContext, as_json: bool) -> int:
    """BLE devices with a key or needing one: where the key is kept and whether it decrypts."""
    target = target_of(ctx)
    if target is None:
        return EXIT_USAGE
    code, result = get_for_table(target, "listing keys", "/api/v1/ble/keys", as_json)
    if result is None:
        return code
    rows = result["keys"]
    con = console()
    if not rows:
        con.print("no BLE key configured and no device needing one")
        return EXIT_OK
    table = id_table("DEVICE", ("NAME", "MODEL", "KEY STATUS", "KEPT IN", "LAST SEEN"))
    for r in rows:
        table.add_row(
            r["device"],
            r["name"] or "-",
            r["model"] or "-",
            r["key_status"],
            r["key"] or "- (needs `migw ble key`)",
            fmt_time(r["last_seen"]),
        )
    con.print(table)
    return EXIT_OK
