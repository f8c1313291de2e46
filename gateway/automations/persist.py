"""Saving and restoring the engine's pending work across a restart: "for" triggers and
delayed runs as plain dicts (kept in ``automations.db`` by :mod:`.journal`).

Split from :mod:`gateway.automations.engine`, which owns the timers and runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gateway.automations.conditions import trigger_holds
from gateway.automations.model import Run, Trace
from gateway.automations.timers import TimerKey, TimerQueue
from gateway.config import AutomationDef
from gateway.model import Value


def saved_timers(
    timers: TimerQueue, defs: Mapping[str, AutomationDef], runs: Mapping[int, Run]
) -> list[dict[str, Any]]:
    """Pending "for" triggers and delayed runs, to survive a restart."""
    out: list[dict[str, Any]] = []
    for key, when in timers.items():
        if key[0] == "for":
            auto = defs[key[1]]
            trig = auto.triggers[key[2]]
            out.append({
                "kind": "for", "automation": key[1], "trigger": key[2], "at": when,
                "desc": key[3], "seq": key[4], "chain": list(key[5]),
                "device": trig.device, "metric": trig.metric, "def": repr(auto),
            })  # fmt: skip
        elif key[0] == "run":
            run = runs[key[1]]
            out.append({
                "kind": "run", "automation": run.automation, "at": when,
                "chain": list(run.chain), "stack": [[a, list(p), i] for a, p, i in run.stack],
                "trace": run.trace.to_dict(),
                "def": repr(defs[run.automation].actions),
            })  # fmt: skip
    return out


def restore_timers(
    saved: Iterable[dict[str, Any]],
    *,
    defs: Mapping[str, AutomationDef],
    values: Mapping[tuple[str, str], Value],
    now: float,
    grace_s: float,
    timers: TimerQueue,
    runs: dict[int, Run],
    run_ids: Iterator[int],
) -> list[str]:
    """Resume saved timers where safe; returns why the others were dropped.

    A "for" resumes when its automation is unchanged and the device's current value
    (seeded from the store) still satisfies the trigger; a delay resumes when its
    automation's actions are unchanged and its deadline is less than ``grace_s``
    past (a late one runs at once).
    """
    notes: list[str] = []
    for t in saved:
        aid = str(t.get("automation", ""))
        auto = defs.get(aid)
        try:
            if t["kind"] == "for":
                if auto is None or repr(auto) != t["def"]:
                    notes.append(f"{aid}: changed, pending 'for' dropped")
                    continue
                trig = auto.triggers[int(t["trigger"])]
                if not trigger_holds(trig, values):
                    notes.append(f"{aid}: state changed while stopped, 'for' dropped")
                    continue
                key = ("for", aid, int(t["trigger"]), str(t["desc"]), int(t["seq"]),
                       tuple(t["chain"]))  # fmt: skip
                timers.set(key, float(t["at"]))
            elif t["kind"] == "run":
                if auto is None or repr(auto.actions) != t["def"]:
                    notes.append(f"{aid}: actions changed, delayed run dropped")
                    continue
                if float(t["at"]) < now - grace_s:
                    notes.append(f"{aid}: delay ended {now - float(t['at']):.0f} s ago")
                    continue
                run_id = next(run_ids)
                run = Run(
                    run_id, aid, tuple(t["chain"]), Trace.from_dict(t["trace"]),
                    [(str(a), tuple(p), int(i)) for a, p, i in t["stack"]],
                    wake=float(t["at"]),
                )  # fmt: skip
                run.trace.run = run_id  # numbered in this start's sequence
                run.trace.actions.append(
                    {"at": now, "action": "-", "result": "resumed after a restart"}
                )
                runs[run.id] = run
                timers.set(("run", run.id), max(now, float(t["at"])))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            notes.append(f"{aid}: unreadable saved timer ({exc})")
    return notes


def kept_on_reload(
    key: TimerKey,
    runs: Mapping[int, Run],
    old: Mapping[str, AutomationDef],
    new: Mapping[str, AutomationDef],
) -> bool:
    """Whether a timer survives a reload from ``old`` to ``new`` definitions: a delayed run
    when every automation whose actions it is inside keeps its actions, another timer when
    its automation is unchanged."""
    if key[0] == "run":
        run = runs[key[1]]
        inside = {a for a, _path, _i in run.stack} | {run.automation}
        return all(a in new and a in old and new[a].actions == old[a].actions for a in inside)
    return key[1] in new and old.get(key[1]) == new[key[1]]
