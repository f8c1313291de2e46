"""``migw run``: the service (production with --config, or --demo on simulated hardware)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway import config as config_mod
from gateway import logs
from gateway.adapters import DemoOptions
from gateway.cli.base import CliContext, cli, pass_ctx
from gateway.config import Config
from gateway.demo import default_state_dir
from gateway.errors import ConfigError, GatewayError

_LOGGER = logging.getLogger("gateway")


@cli.command()
@click.option("--demo", is_flag=True, help="Run on simulated hardware (hw_mocks).")
@click.option(
    "--ble-devices",
    type=click.IntRange(0, 10000),
    default=10,
    show_default=True,
    help=(
        "Demo: simulated BLE sensors (10 gives one of each simulated kind: thermometers,"
        " a door, a button, a dimmer, a cube and a double switch)."
    ),
)
@click.option(
    "--rate",
    type=click.FloatRange(0.001, 1000),
    callback=lambda _ctx, _param, value: _finite(value, "--rate"),
    default=0.5,
    show_default=True,
    help="Demo: adverts per second per simulated BLE sensor.",
)
@click.option("--no-zigbee", is_flag=True, help="Demo: without the simulated Zigbee stick.")
@click.option("--upstream", metavar="URL", help="MQTT broker URL; overrides upstream.url.")
@click.option(
    "--allow-insecure",
    is_flag=True,
    help="Allow plaintext mqtt:// to a broker that is not loopback (a LAN broker); "
    "sets upstream.allow_insecure.",
)
@click.option(
    "--log-level",
    type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Overrides gateway.log_level.",
)
@click.option(
    "--state-dir",
    "run_state_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="State directory; same as the global --state-dir.",
)
@click.option(
    "--api-port",
    "run_api_port",
    type=click.IntRange(0, 65535),
    help="LAN API port; same as the global --api-port.",
)
@pass_ctx
def run(
    ctx: CliContext,
    run_state_dir: Path | None,
    run_api_port: int | None,
    demo: bool,
    ble_devices: int,
    rate: float,
    no_zigbee: bool,
    upstream: str | None,
    allow_insecure: bool,
    log_level: str | None,
) -> int:
    """Run the gateway service until SIGTERM or Ctrl-C."""
    if run_state_dir is not None:
        ctx.state_dir = run_state_dir
    if run_api_port is not None:
        ctx.api_port = run_api_port
    from gateway.demo import demo_config

    def load_config() -> Config:
        """The config as started; SIGHUP calls it again (command-line overrides still win)."""
        if demo:
            base = config_mod.load(ctx.config_path) if ctx.config_path else config_mod.Config()
            cfg = demo_config(base, ctx.state_dir, ctx.api_port)
        else:
            cfg = ctx.load_config()
        if upstream is not None:
            # validated like the file's value before it is used: a bad URL is a config error
            # (one line, exit 2), never a traceback from the section's own checks
            _check_upstream(upstream)
            cfg = cfg.replace(upstream=dataclasses.replace(cfg.upstream, url=upstream))
        if allow_insecure:
            cfg = cfg.replace(upstream=dataclasses.replace(cfg.upstream, allow_insecure=True))
        if log_level is not None:
            level: Any = log_level  # one of click.Choice's values: a valid log_level
            cfg = cfg.replace(gateway=dataclasses.replace(cfg.gateway, log_level=level))
        return cfg

    options: DemoOptions | None = None
    if demo:
        options = DemoOptions(ble_devices=ble_devices, ble_rate=rate, zigbee=not no_zigbee)
    try:
        cfg = load_config()
    except GatewayError as exc:
        click.echo(f"migw: {exc}", err=True)
        return 2
    logs.setup(log_level or cfg.gateway.log_level)
    try:
        return asyncio.run(serve(cfg, options, reload_config=load_config))
    except KeyboardInterrupt:
        return 0


def _finite(value: float, name: str) -> float:
    """click's FloatRange lets NaN through (every comparison with it is false)."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number", param_hint=f"'{name}'")
    return value


def _check_upstream(url: str) -> None:
    """Raise :class:`ConfigError` for a ``--upstream`` value ``upstream.url`` would refuse.

    The message never repeats the value: it may hold a password."""

    if "@" in url.partition("://")[2].partition("/")[0]:
        raise ConfigError(
            "takes no user name or password: put them in upstream.username and"
            " upstream.password_file (see docs/configuration.md)",
            path="--upstream",
        )
    try:
        config_mod.from_dict({"upstream": {"url": url}})
    except ConfigError as exc:
        raise ConfigError(str(exc), path="--upstream") from None


def where_to_look(cfg: Config) -> str:
    """The start-up line telling where the CLI and the API token are (never the token)."""
    from gateway.api.token import token_path
    from gateway.cli.client import cli_command

    default = cfg.gateway.state_dir in (config_mod.DEFAULT_STATE_DIR, default_state_dir())
    global_args = "" if default else f" --state-dir {cfg.gateway.state_dir}"
    if cfg.api.port != config_mod.ApiSection().port:
        global_args += f" --api-port {cfg.api.port}"
    host = "127.0.0.1" if cfg.api.listen in ("", "0.0.0.0") else cfg.api.listen  # noqa: S104
    api = (
        f"web dashboard and LAN API on http://{host}:{cfg.api.port}/"
        if cfg.api.enabled
        else "LAN API off"
    )
    return (
        f"{api}, token in {token_path(cfg.gateway.state_dir)}; from another terminal: "
        f"`{cli_command()}{global_args} status` (`... token` prints the token)"
    )


async def serve(
    cfg: Config, demo: DemoOptions | None, reload_config: Callable[[], Config] | None = None
) -> int:
    from gateway.demo import ReadingLogger
    from gateway.service import Service
    from gateway.systemd import SystemdIntegration

    try:
        service = Service(cfg, demo=demo)
        # systemd: READY/STATUS/WATCHDOG/STOPPING (no-op without NOTIFY_SOCKET), SIGHUP reload
        async with service, SystemdIntegration(service, reload_config=reload_config) as sd:
            service.install_signal_handlers()
            sd.install_signal_handlers()
            assert service.store is not None
            if demo is not None:
                directory = service.ingest.directory if service.ingest is not None else None
                service.store.subscribe(ReadingLogger(directory))
            _LOGGER.info(
                "migw running%s: state in %s, %d driver(s): %s",
                " in demo mode" if demo else "",
                cfg.gateway.state_dir,
                len(service.drivers),
                ", ".join(d.name for d in service.drivers) or "none",
            )
            _LOGGER.info("%s", where_to_look(cfg))
            if service.store.recovered_from is not None:
                _LOGGER.error(
                    "the old state database was unusable and was moved to %s",
                    service.store.recovered_from,
                )
            await service.wait()
        if not service.clean_stop:
            # the state is flushed; a hung part must not keep the process (and systemd) waiting
            _LOGGER.error("migw stopped, abandoning parts that did not stop")
            logging.shutdown()
            os._exit(1)
        _LOGGER.info("migw stopped cleanly")
    except GatewayError as exc:
        _LOGGER.error("migw cannot run: %s", exc)
        return 2
    return 0
