"""``migw config check FILE``."""

from __future__ import annotations

from pathlib import Path

import click

from gateway import config as config_mod
from gateway.cli.base import config_group
from gateway.errors import ConfigError


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def check(file: Path) -> int:
    """Validate a config file; print the first problem with its key path and line."""
    try:
        cfg = config_mod.load(file)
        config_mod.read_secret(
            cfg.upstream.password, cfg.upstream.password_file, "upstream.password"
        )
    except ConfigError as exc:
        click.echo(f"{file}: {exc}", err=True)
        return 1
    from gateway.adapters.ble import load_keys

    _keys, problems = load_keys(cfg.ble)
    if problems:
        for problem in problems:
            click.echo(f"{file}: ble: {problem}", err=True)
        return 1
    summary = (
        f"gateway {cfg.gateway.id}: {len(cfg.gpio.devices)} gpio device(s), "
        f"ble {'on' if cfg.ble.enabled else 'off'}, "
        f"zigbee {'on' if cfg.zigbee.enabled else 'off'}, "
        f"upstream {cfg.upstream.url or 'off'}"
    )
    click.echo(f"{file}: ok ({summary})")
    return 0
