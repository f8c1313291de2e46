"""Replay: the configured rules over stored history or a JSONL file, on a virtual clock.

The same :class:`~gateway.automations.engine.Engine` as the live service; its effects only
record (commands are not sent). Inputs are merged in time order: readings from the state
database's ``history`` table, events and uplink changes from ``automations.db``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gateway.automations.engine import Engine
from gateway.automations.journal import FILE_NAME, Journal
from gateway.automations.model import Input, Trace
from gateway.config import Config
from gateway.model import Command, CommandResult, CommandStatus
from gateway.store.codec import decode_value

DB_NAME = "state.db"


@dataclass(frozen=True, slots=True)
class Firing:
    automation: str
    at: float
    trigger: str
    actions: tuple[str, ...]
    outcome: str

    def line(self, tz: dt.tzinfo | None = None) -> str:
        when = dt.datetime.fromtimestamp(self.at, tz or dt.UTC).isoformat(timespec="milliseconds")
        acts = "; ".join(self.actions) or "-"
        return f"{when}  {self.automation}  {self.outcome}  because {self.trigger}  ->  {acts}"


class _DryRun:
    def __init__(self) -> None:
        self.traces: list[Trace] = []

    async def command(self, device: str, command: Command) -> CommandResult:
        return CommandResult(CommandStatus.OK, "not sent (dry run)")

    def record(self, trace: Trace, action: str, message: str = "") -> None:
        if trace not in self.traces:
            self.traces.append(trace)

    def trace_done(self, trace: Trace) -> None:
        pass


def firings_of(traces: Iterable[Trace]) -> list[Firing]:
    out = [
        Firing(
            t.automation,
            t.at,
            t.trigger,
            tuple(f"{a['action']}: {a.get('result', '')}" for a in t.actions),
            t.outcome,
        )
        for t in traces
        if t.outcome in ("fired", "loop_stopped", "rate_limited")
    ]
    return sorted(out, key=lambda f: (f.at, f.automation))


async def replay(
    cfg: Config, inputs: Iterable[Input], *, start: float | None = None
) -> list[Firing]:
    """Run ``cfg``'s automations over ``inputs`` (time-ordered); what fired, in order."""
    items = list(inputs)
    first = start if start is not None else (items[0].ts if items else 0.0)
    effects = _DryRun()
    engine = Engine(cfg.automations, effects, location=cfg.location, start=first)
    for inp in items:
        await engine.handle(inp)
    if items:
        await engine.advance(items[-1].ts)
    return firings_of(effects.traces)


def stored_inputs(
    state_dir: Path, since: float | None = None, until: float | None = None
) -> list[Input]:
    """Readings from the state database plus the journal's events, in time order."""
    lo = since if since is not None else -math.inf
    hi = until if until is not None else math.inf
    out: list[Input] = []
    db_path = state_dir / DB_NAME
    if db_path.exists():
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT seq, device_id, metric, value, ts FROM history ORDER BY seq"
            ).fetchall()
        finally:
            db.close()
        for seq, device, metric, value, ts in rows:
            if lo <= ts <= hi:
                out.append(Input(ts, "reading", device, metric, decode_value(value), seq=seq))
    journal_path = state_dir / FILE_NAME
    if journal_path.exists():
        journal = Journal.open(journal_path, readonly=True)
        try:
            out += [i for i in journal.inputs() if lo <= i.ts <= hi]
        finally:
            journal.close()
    out.sort(key=lambda i: (i.ts, i.seq))
    return out


class JsonlError(ValueError):
    """A line of a replay file that is not a reading, an event or an uplink change."""


def jsonl_inputs(lines: TextIO) -> Iterator[Input]:
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj: Any = json.loads(raw)
        except ValueError:
            raise JsonlError(f"line {n}: not JSON") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("ts"), int | float):
            raise JsonlError(f"line {n}: an object with a numeric 'ts' is needed")
        ts = float(obj["ts"])
        if "uplink" in obj and isinstance(obj["uplink"], bool):
            yield Input(ts, "uplink", value=obj["uplink"])
        elif isinstance(obj.get("device"), str) and isinstance(obj.get("metric"), str):
            value = obj.get("value")
            if not isinstance(value, bool | int | float | str):
                raise JsonlError(f"line {n}: 'value' must be a number, boolean or string")
            yield Input(ts, "reading", obj["device"], obj["metric"], value, seq=n)
        elif isinstance(obj.get("device"), str) and isinstance(obj.get("action"), str):
            button = obj.get("button")
            yield Input(
                ts, "event", obj["device"], str(obj.get("event", "button")), obj["action"],
                button if isinstance(button, int) else None, seq=n,
            )  # fmt: skip
        else:
            raise JsonlError(f"line {n}: not a reading, an event or an uplink change")


def live_firings(state_dir: Path) -> list[Firing]:
    """What the live service recorded in its traces (for comparing with a replay)."""
    journal = Journal.open(state_dir / FILE_NAME, readonly=True)
    try:
        traces = journal.traces(None, limit=1_000_000)
    finally:
        journal.close()
    return firings_of(traces)
