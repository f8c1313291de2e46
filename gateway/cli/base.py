"""Groups and shared options of the ``migw`` CLI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import click

from gateway import config as config_mod


@dataclass(slots=True)
class CliContext:
    config_path: Path | None
    state_dir: Path | None
    api_port: int | None

    def load_config(self) -> config_mod.Config:
        """The config the service would use: --config, else the default file when present."""
        path = self.config_path
        if path is None and config_mod.DEFAULT_CONFIG_PATH.exists():
            path = config_mod.DEFAULT_CONFIG_PATH
        cfg = config_mod.load(path) if path is not None else config_mod.Config()
        if self.state_dir is not None:
            cfg = cfg.replace(gateway=dataclasses.replace(cfg.gateway, state_dir=self.state_dir))
        if self.api_port is not None:
            cfg = cfg.replace(api=dataclasses.replace(cfg.api, port=self.api_port))
        return config_mod.with_key_dir(cfg)


pass_ctx = click.make_pass_decorator(CliContext)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"Config file (default {config_mod.DEFAULT_CONFIG_PATH} when it exists).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="State directory (database, API token, backups); overrides the config.",
)
@click.option(
    "--api-port", type=click.IntRange(0, 65535), help="LAN API port; overrides the config."
)
@click.version_option(package_name="mi-gateway", prog_name="migw")
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, state_dir: Path | None, api_port: int | None
) -> None:
    """migw: the local hub of a Xiaomi smart home (BLE, Zigbee, GPIO -> SQLite -> MQTT)."""
    ctx.obj = CliContext(config_path=config_path, state_dir=state_dir, api_port=api_port)


@cli.group()
def decode() -> None:
    """Decode captured radio bytes offline (field tool; no service needed)."""


@cli.group()
def sniff() -> None:
    """Show live decoded radio traffic."""


@cli.group()
def zigbee() -> None:
    """Zigbee network: permit join, devices, backup and restore."""


@cli.group(name="config")
def config_group() -> None:
    """Configuration file tools."""


@cli.group(name="ble")
def ble_group() -> None:
    """BLE bind keys: add one (checked against the device's next encrypted advert), list."""
