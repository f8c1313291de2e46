"""``migw token``: print, create or rotate the LAN API token, or a one-time dashboard login
link."""

from __future__ import annotations

import socket
from typing import Any

import click

from gateway.api.token import TokenError, ensure_token, file_mode, rotate_token, token_path
from gateway.cli.base import cli, json_option
from gateway.cli.calls import EXIT_FAILED, EXIT_OK, call_service, fail, pass_target
from gateway.cli.client import ApiClient, Target, has_state, notice, print_json


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
@pass_target
def token(target: Target, rotate: bool, create: bool, link: bool, as_json: bool) -> int:
    """Print the LAN API bearer token of the service, or rotate it."""
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
        return fail(exc)
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
