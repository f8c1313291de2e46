"""``migw config check FILE``: the checks the service makes at start, without starting it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from drivers.errors import NeedsHumanError
from gateway import config as config_mod
from gateway.cli.base import config_group, json_option
from gateway.cli.client import print_json
from gateway.errors import ConfigError

#: Exit codes (docs/api.md): a config the service would refuse is a configuration error.
EXIT_OK = 0
EXIT_CONFIG = 2


def uplink_problems(cfg: config_mod.Config) -> list[str]:
    """What the sync agent would refuse at start: plaintext MQTT to a host that is not
    loopback without ``allow_insecure``, TLS files with a plaintext URL (the agent's own
    check, :func:`gateway.sync.mqtt.check_transport`)."""
    from gateway.sync.agent import ha_settings, upstream_settings
    from gateway.sync.mqtt import check_transport

    problems = []
    for key, settings in (
        ("upstream", upstream_settings(cfg.upstream, cfg.gateway.id)),
        ("homeassistant", ha_settings(cfg.homeassistant, cfg.upstream, cfg.gateway.id)),
    ):
        if settings is None:
            continue
        try:
            check_transport(settings)
        except NeedsHumanError as exc:
            problems.append(f"{key}.url: {exc}")
    return problems


def check_config(file: Path) -> tuple[config_mod.Config | None, list[str]]:
    """The config and every problem the service would stop at (first parse error only)."""
    try:
        cfg = config_mod.load(file)
        config_mod.read_secret(
            cfg.upstream.password, cfg.upstream.password_file, "upstream.password"
        )
    except ConfigError as exc:
        return None, [str(exc)]
    from gateway.adapters.ble_setup import load_keys

    _keys, key_problems = load_keys(cfg.ble)
    problems = [f"ble: {p}" for p in key_problems]
    problems += uplink_problems(cfg)
    return cfg, problems


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@json_option
def check(file: Path, as_json: bool) -> int:
    """Validate a config file as the service would; print each problem with its key path.

    Exit code: 0 valid, 2 invalid (the service would refuse it).
    """
    cfg, problems = check_config(file)
    summary: dict[str, Any] | None = None
    if cfg is not None:
        summary = {
            "gateway": cfg.gateway.id,
            "gpio_devices": len(cfg.gpio.devices),
            "ble": cfg.ble.enabled,
            "zigbee": cfg.zigbee.enabled,
            "upstream": cfg.upstream.url or None,
        }
    if as_json:
        print_json(
            {"file": str(file), "ok": not problems, "problems": problems, "summary": summary}
        )
    else:
        for problem in problems:
            click.echo(f"{file}: {problem}", err=True)
        if not problems and cfg is not None:
            click.echo(
                f"{file}: ok (gateway {cfg.gateway.id}: {len(cfg.gpio.devices)} gpio "
                f"device(s), ble {'on' if cfg.ble.enabled else 'off'}, "
                f"zigbee {'on' if cfg.zigbee.enabled else 'off'}, "
                f"upstream {cfg.upstream.url or 'off'})"
            )
    return EXIT_CONFIG if problems else EXIT_OK
