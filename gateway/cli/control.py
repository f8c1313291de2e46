"""Commands that act through the running service: ``migw send`` (relays, plugs, GPIO
outputs) and ``migw zigbee permit-join``."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from gateway.cli.base import cli, json_option, zigbee
from gateway.cli.calls import (
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    call_service,
    fail,
    pass_target,
    run,
)
from gateway.cli.client import (
    ApiClient,
    ApiFailure,
    ServiceDown,
    Target,
    fmt_value,
    notice,
    print_json,
)
from gateway.commands import DEFAULT_PULSE_S, MAX_PULSE_S


@cli.command()
@click.argument("device")
@click.argument("action", type=click.Choice(["on", "off", "toggle", "pulse"]))
@click.option(
    "--seconds",
    type=click.FloatRange(0, MAX_PULSE_S, min_open=True),
    help=f"Pulse: on for this many seconds, then off (default {DEFAULT_PULSE_S:g}).",
)
@json_option
@pass_target
def send(target: Target, device: str, action: str, seconds: float | None, as_json: bool) -> int:
    """Switch a relay, plug or GPIO output: on, off, toggle, or pulse (on for --seconds,
    then off, whatever the state before; a pulse while one runs extends it)."""
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
        result = run(go())
    except ServiceDown as exc:
        notice(f"{exc}; commands need the running service")
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        if as_json:
            error = {"device": device, "status": "error", "code": exc.code}
            print_json({**error, "message": exc.message})
        return fail(exc)
    if as_json:
        print_json(result)
    else:
        state = ", ".join(f"{k} = {fmt_value(v, metric=k)}" for k, v in result["state"].items())
        click.echo(f"{device}: {action} ok" + (f" ({state})" if state else ""))
    return EXIT_OK


@zigbee.command("permit-join")
@click.argument("seconds", type=click.IntRange(0, 254), default=60)
@json_option
@pass_target
def permit_join(target: Target, seconds: int, as_json: bool) -> int:
    """Let new Zigbee devices join for SECONDS (default 60; 0 closes the network)."""

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
