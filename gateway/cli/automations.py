"""``migw automations list | trace ID | replay``: local automations (docs/automations.md).

``list`` and ``trace`` read the config and ``automations.db`` in the state directory (they
work with the service running or stopped); ``replay`` runs the configured rules over the
stored history or a JSONL file with the same engine on a virtual clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from gateway.automations.journal import FILE_NAME, Journal
from gateway.automations.replay import JsonlError, jsonl_inputs, replay, stored_inputs
from gateway.cli.base import CliContext, cli, json_option, pass_ctx
from gateway.config import Config
from gateway.errors import ConfigError


@cli.group()
def automations() -> None:
    """Local automations: list, traces, dry-run replay."""


def _config(ctx: CliContext, demo: bool = False) -> Config:
    try:
        cfg = ctx.load_config()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if demo:  # the rules `migw run --demo` adds
        from gateway.automations.demo import demo_automations

        cfg = demo_automations(cfg)
    return cfg


demo_option = click.option(
    "--demo", is_flag=True, help="The demo's automations (as `migw run --demo` runs them)."
)


def _journal(state_dir: Path) -> Journal | None:
    path = state_dir / FILE_NAME
    return Journal.open(path, readonly=True) if path.exists() else None


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


@automations.command(name="list")
@json_option
@demo_option
@pass_ctx
def list_cmd(ctx: CliContext, as_json: bool, demo: bool) -> int:
    """The configured automations and when each last fired."""
    cfg = _config(ctx, demo)
    journal = _journal(Path(cfg.gateway.state_dir))
    overrides = journal.enabled() if journal else {}
    rows: list[dict[str, Any]] = []
    for auto in cfg.automations:
        last = journal.traces(auto.id, 50) if journal else []
        fired = next((t for t in last if t.outcome == "fired"), None)
        rows.append(
            {
                "id": auto.id,
                "name": auto.name,
                "enabled": overrides.get(auto.id, auto.enabled),
                "triggers": [t.type for t in auto.triggers],
                "last_fired": fired.at if fired else None,
            }
        )
    if journal:
        journal.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        click.echo("no automations configured ([[automations]] in the config)")
    for r in rows:
        state = "on " if r["enabled"] else "off"
        click.echo(
            f"{state} {r['id']:<24} {','.join(r['triggers']):<20} last fired"
            f" {_when(r['last_fired'])}  {r['name']}"
        )
    return 0


@automations.command()
@click.argument("automation_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=5, show_default=True)
@json_option
@pass_ctx
def trace(ctx: CliContext, automation_id: str, limit: int, as_json: bool) -> int:
    """The newest traces of an automation: trigger, conditions, actions and results."""
    cfg = _config(ctx)
    journal = _journal(Path(cfg.gateway.state_dir))
    traces = journal.traces(automation_id, limit) if journal else []
    if journal:
        journal.close()
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in traces], ensure_ascii=False))
        return 0
    if not traces:
        click.echo(f"no trace of {automation_id!r}")
        return 0
    for t in traces:
        click.echo(f"run {t.run} at {_when(t.at)}: {t.outcome}")
        click.echo(f"  trigger: {t.trigger}" + (f" (seq {t.seq})" if t.seq else ""))
        if t.chain:
            click.echo(f"  caused by: {' -> '.join(t.chain)}")
        for c in t.conditions:
            click.echo(f"  condition {c['condition']}: {'yes' if c['result'] else 'no'}")
        for a in t.actions:
            click.echo(f"  {_when(a['at'])} {a['action']}: {a.get('result', '')}")
    return 0


@automations.command(name="replay")
@click.option(
    "--jsonl", "jsonl", type=click.File("r"), help="Readings/events to replay ('-': stdin)."
)
@click.option("--since", type=float, help="Unix time: replay stored history from here.")
@click.option("--until", type=float, help="Unix time: replay stored history up to here.")
@json_option
@demo_option
@pass_ctx
def replay_cmd(
    ctx: CliContext, jsonl: TextIO | None, since: float | None, until: float | None,
    as_json: bool, demo: bool,
) -> int:  # fmt: skip
    """What the configured rules would have fired over stored history (or a JSONL file)."""
    cfg = _config(ctx, demo)
    try:
        inputs = (
            list(jsonl_inputs(jsonl))
            if jsonl is not None
            else stored_inputs(Path(cfg.gateway.state_dir), since, until)
        )
    except JsonlError as exc:
        raise click.ClickException(str(exc)) from None
    firings = asyncio.run(replay(cfg, inputs))
    for f in firings:
        if as_json:
            click.echo(json.dumps({"automation": f.automation, "at": f.at, "trigger": f.trigger,
                                   "actions": list(f.actions), "outcome": f.outcome}))  # fmt: skip
        else:
            click.echo(f.line(dt.datetime.now().astimezone().tzinfo))
    if not as_json:
        click.echo(f"{len(firings)} firing(s) over {len(inputs)} input(s)", err=True)
    sys.stdout.flush()
    return 0
