"""Groups and shared options of the ``migw`` CLI.

The groups are :class:`LazyGroup`: each names the module that registers each of its commands,
imported when the command is first resolved, so ``migw run`` (the service) loads its own
command and not the technician's tools (doctor, automations replay, tail...: about 2 MB of
RSS). ``migw --help`` lists them all (and loads them). ``tests/test_cli_lazy.py`` checks the
tables against what the modules register.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class LazyGroup(click.Group):
    """A group whose commands are registered by other modules, imported on first use.

    ``lazy`` maps a command's name to the module that registers it on this group (the
    click documentation's "lazily loading subcommands" pattern).
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self.lazy.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(module)
        return super().get_command(ctx, cmd_name)


_CLI = "gateway.cli."
#: The top level's commands, by the module that registers them.
_TOP = {
    "run_cmd": ("run",),
    "status": ("status", "queue"),
    "devices": ("devices", "device"),
    "tail": ("tail",),
    "control": ("send",),
    "token_cmd": ("token",),
    "names": ("name", "allow", "forget"),
    "doctor": ("doctor",),
    "automations": ("automations",),
}

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy={name: _CLI + module for module, names in _TOP.items() for name in names},
)
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


@cli.group(cls=LazyGroup, lazy={"ble": _CLI + "ble", "znp": _CLI + "zigbee"})
def decode() -> None:
    """Decode captured radio bytes offline (field tool; no service needed)."""


@cli.group(cls=LazyGroup, lazy={"ble": _CLI + "ble"})
def sniff() -> None:
    """Show live decoded radio traffic."""


@cli.group(
    cls=LazyGroup,
    lazy={
        "permit-join": _CLI + "control",
        **dict.fromkeys(("backup", "restore", "devices"), _CLI + "zigbee"),
    },
)
def zigbee() -> None:
    """Zigbee network: permit join, devices, backup and restore."""


@cli.group(name="config", cls=LazyGroup, lazy={"check": _CLI + "config_cmd"})
def config_group() -> None:
    """Configuration file tools."""


@cli.group(name="ble", cls=LazyGroup, lazy=dict.fromkeys(("key", "keys"), _CLI + "ble_keys"))
def ble_group() -> None:
    """BLE bind keys: add one (checked against the device's next encrypted advert), list."""
