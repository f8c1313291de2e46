"""The CLI's lazily loaded commands: the tables in gateway.cli.base name every command the
modules register (none unreachable, none missing), and `migw run` loads only its own module."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click

from gateway.cli.base import LazyGroup, cli

ROOT = Path(__file__).resolve().parent.parent


def _groups(group: click.Group, path: str = "migw") -> list[tuple[str, LazyGroup]]:
    """The lazy groups of the tree; a group a command module defines (``migw automations``)
    is loaded with its module, so its commands must come from that module too."""
    if not isinstance(group, LazyGroup):
        assert group.callback is not None
        home = group.callback.__module__
        for name, cmd in group.commands.items():
            assert cmd.callback is not None and cmd.callback.__module__ == home, (
                f"{path} {name} is registered from outside {home}: make {path} a LazyGroup"
            )
        return []
    out = [(path, group)]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if isinstance(sub, click.Group):
            out += _groups(sub, f"{path} {name}")
    return out


def test_every_lazy_entry_resolves_to_a_command_of_its_module() -> None:
    for path, group in _groups(cli):
        ctx = click.Context(group)
        for name, module in group.lazy.items():
            cmd = group.get_command(ctx, name)
            assert cmd is not None, f"{path} {name}: {module} does not register it"
            assert cmd.callback is not None
            owner = cmd.callback.__module__
            assert owner == module or owner.startswith(module + "."), (
                f"{path} {name} is registered by {owner}, the table says {module}"
            )


def test_every_registered_command_is_in_its_groups_table() -> None:
    # import every command module: whatever they register must be reachable lazily
    modules = {m for _path, g in _groups(cli) for m in g.lazy.values()}
    for m in sorted(modules):
        importlib.import_module(m)
    for path, group in _groups(cli):
        defined_here = {
            name
            for name, cmd in group.commands.items()
            if cmd.callback is not None and cmd.callback.__module__ == "gateway.cli.base"
        }
        assert set(group.commands) - defined_here <= set(group.lazy), (
            f"{path}: registered but not in the lazy table: "
            f"{sorted(set(group.commands) - defined_here - set(group.lazy))}"
        )


def test_help_lists_every_command() -> None:
    listed = cli.list_commands(click.Context(cli))
    assert {"run", "status", "doctor", "automations", "zigbee", "decode"} <= set(listed)


def test_migw_run_loads_its_command_and_not_the_technicians_tools() -> None:
    code = (
        "import json, sys\n"
        "from gateway.cli import main\n"
        "main(['run', '--help'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gateway.cli'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "gateway.cli.run_cmd" in loaded
    for tool in ("doctor", "automations", "tail", "devices", "zigbee", "ble", "status"):
        assert f"gateway.cli.{tool}" not in loaded, f"migw run loaded gateway.cli.{tool}"
