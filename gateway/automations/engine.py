"""The automation engine: triggers, conditions and actions over a stream of timed inputs.

The same code runs live (inputs from the store's commits, ``now`` from the wall clock) and in
``migw automations replay`` (inputs from stored history, a virtual clock, commands not sent):
the engine never reads a clock itself. Every input and every timer carries its own time, and
:meth:`Engine.advance` runs the timers due up to a time in deadline order, each at its
deadline. So a replay of the inputs a live run saw produces the same firings at the same times.

Runs are data, not tasks: a run is a stack of positions in action lists, so a delay is a
timer that resumes the stack, and a pending delay or "for" can be saved and restored across a
restart (see :meth:`Engine.timers` / :meth:`Engine.restore`).

Loop protection: a command an automation sends marks its device with the chain of
automations that caused it for :attr:`Limits.cause_window_s`; an input from that device inherits the
chain. An automation that would fire inside its own chain (A -> A, A -> B -> A, a ``run`` of
an automation already running in the chain) is stopped and reported, as is one firing more
than :attr:`Limits.rate_max` times within :attr:`Limits.rate_window_s`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.automations.daytime import hm, in_window, local_tz, next_clock
from gateway.automations.model import (
    PERSON_PREFIX,
    PRESENCE_METRIC,
    SOURCE,
    TRACES_KEPT,
    Effects,
    Input,
    Limits,
    Outcome,
    Trace,
    describe,
    same_value,
    show,
)
from gateway.config import (
    ActionDef,
    AutomationDef,
    ConditionDef,
    LocationSection,
    TriggerDef,
)
from gateway.model import Command, CommandResult, Value

__all__ = [
    "PERSON_PREFIX",
    "PRESENCE_METRIC",
    "SOURCE",
    "TRACES_KEPT",
    "Effects",
    "Engine",
    "Input",
    "Limits",
    "Outcome",
    "Trace",
]

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class _Run:
    id: int
    automation: str
    chain: tuple[str, ...]
    trace: Trace
    #: Positions: (automation id, path of an action list, next index).
    stack: list[tuple[str, tuple[str | int, ...], int]]
    wake: float | None = None


@dataclass(slots=True)
class _TrigState:
    side: str | None = None  # threshold: "high"/"low"
    stale: bool = False


_Timer = tuple[float, int, tuple[Any, ...]]


class Engine:
    def __init__(
        self,
        automations: Iterable[AutomationDef],
        effects: Effects,
        *,
        location: LocationSection | None = None,
        start: float,
        limits: Limits | None = None,
        spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None,
    ) -> None:
        self.effects = effects
        self.limits = limits or Limits()
        #: Live: runs a command and the rest of its run as a task, so a slow device (a sleepy
        #: Zigbee end device) delays only its own run. None (replay): commands are awaited.
        self.spawn = spawn
        #: Called when a spawned run changed the timers (the live loop re-reads its deadline).
        self.on_change: Callable[[], None] | None = None
        self.location = location or LocationSection()
        self.defs: dict[str, AutomationDef] = {}
        self.enabled: dict[str, bool] = {}
        self.values: dict[tuple[str, str], Value] = {}
        self.last_seen: dict[str, float] = {}
        self.uplink: bool | None = None
        self.last_fired: dict[str, float] = {}
        self.traces: dict[str, deque[Trace]] = {}
        self.counters: dict[str, int] = {
            "fired": 0,
            "not_met": 0,
            "loop_stopped": 0,
            "action_errors": 0,
        }
        self.now = start
        self._trig: dict[tuple[str, int], _TrigState] = {}
        self._heap: list[_Timer] = []
        self._timers: dict[tuple[Any, ...], float] = {}
        self._tie = itertools.count()
        self._runs: dict[int, _Run] = {}
        self._run_ids = itertools.count(1)
        self._causes: dict[str, tuple[tuple[str, ...], float]] = {}
        self._rate: dict[str, deque[float]] = {}
        self._busy: set[str] = set()
        #: Device id -> the automations (in definition order) with a trigger on that device:
        #: a reading or event from any other device cannot match a trigger, so it costs one
        #: dict lookup instead of a pass over every trigger.
        self._by_device: dict[str, tuple[str, ...]] = {}
        #: Counts changes of what :meth:`timers` returns (timers set or dropped, runs
        #: stepped), so the live loop saves them only when they changed.
        self.version = 0
        self.load(automations)

    # ------------------------------------------------------------------ definitions

    def load(self, automations: Iterable[AutomationDef]) -> list[str]:
        """(Re)load the definitions. An automation whose definition is unchanged keeps its
        timers and running runs; a changed one keeps its runs only if its actions are
        unchanged. Returns the ids whose pending work was dropped."""
        new = {a.id: a for a in automations}
        dropped: list[str] = []
        self.version += 1
        for key in list(self._timers):
            owner = self._runs[key[1]].automation if key[0] == "run" else str(key[1])
            if key[0] == "run":
                run = self._runs[key[1]]
                # every automation whose actions the run is inside must keep its actions
                inside = {a for a, _path, _i in run.stack} | {run.automation}
                keep = all(
                    a in new and a in self.defs and new[a].actions == self.defs[a].actions
                    for a in inside
                )
            else:
                keep = key[1] in new and self.defs.get(key[1]) == new[key[1]]
            if not keep:
                self._cancel(key)
                if key[0] == "run":
                    self._finish(self._runs[key[1]], "abandoned")
                if key[0] in ("run", "for"):
                    dropped.append(owner)
        for aid, auto in new.items():
            if self.defs.get(aid) != auto:
                for i in range(len(auto.triggers)):
                    self._trig.pop((aid, i), None)
            old_def = self.defs.get(aid)
            if old_def is None or old_def.enabled != auto.enabled or aid not in self.enabled:
                self.enabled[aid] = auto.enabled  # the config wins when it changed
            self.traces.setdefault(aid, deque(maxlen=TRACES_KEPT))
        self.defs = new
        self._by_device = _index_by_device(new.values())
        for aid in list(self.enabled):
            if aid not in new:
                del self.enabled[aid]
        self._schedule_clock_triggers()
        return sorted(set(dropped))

    def set_enabled(self, automation: str, enabled: bool) -> None:
        if automation not in self.defs:
            raise KeyError(automation)
        self.enabled[automation] = enabled

    def seed(self, device: str, metric: str, value: Value, ts: float) -> None:
        """A value known before the first input (the store's state at start)."""
        self.values[(device, metric)] = value
        self.last_seen[device] = max(self.last_seen.get(device, ts), ts)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        while self._heap:
            when, _, key = self._heap[0]
            if self._timers.get(key) == when:
                return when
            heapq.heappop(self._heap)
        return None

    async def advance(self, now: float) -> None:
        """Run every timer due at or before ``now``, each at its own deadline."""
        while (when := self.next_deadline()) is not None and when <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._timers[key]
            self.version += 1
            self.now = max(self.now, when)
            await self._on_timer(key)
        self.now = max(self.now, now)

    def _schedule(self, key: tuple[Any, ...], when: float) -> None:
        self.version += 1
        self._timers[key] = when
        heapq.heappush(self._heap, (when, next(self._tie), key))

    def _cancel(self, key: tuple[Any, ...]) -> None:
        if self._timers.pop(key, None) is not None:
            self.version += 1

    def _schedule_clock_triggers(self) -> None:
        for aid, auto in self.defs.items():
            for i, trig in enumerate(auto.triggers):
                key = ("clock", aid, i)
                if trig.type in ("time", "sun") and key not in self._timers:
                    when = next_clock(self.location, trig, self.now)
                    if when is not None:
                        self._schedule(key, when)
                if trig.type == "stale" and ("stale", aid, i) not in self._timers:
                    seen = self.last_seen.get(trig.device, self.now)
                    self._schedule(("stale", aid, i), max(seen, self.now) + trig.after_s)

    async def _on_timer(self, key: tuple[Any, ...]) -> None:
        kind = key[0]
        if kind == "run":
            run = self._runs.get(key[1])
            if run is not None:
                run.wake = None
                await self._step(run)
            return
        aid, i = key[1], key[2]
        auto = self.defs.get(aid)
        if auto is None:
            return
        trig = auto.triggers[i]
        if kind == "clock":
            nxt = next_clock(self.location, trig, self.now)
            if nxt is not None:
                self._schedule(key, nxt)
            await self._fire(auto, f"{trig.at} at {hm(self.now, local_tz(self.location))}", 0, ())
        elif kind == "stale":
            self._trig.setdefault((aid, i), _TrigState()).stale = True
            if trig.to == "stale":
                await self._fire(auto, f"{trig.device} silent for {trig.after_s:g} s", 0, ())
        elif kind == "for":
            desc, seq, chain = key[3], key[4], key[5]
            await self._fire(auto, f"{desc} for {trig.for_s:g} s", seq, chain)

    # ------------------------------------------------------------------ inputs

    async def reading(
        self, ts: float, device: str, metric: str, value: Value, seq: int = 0
    ) -> None:
        """``handle(Input(ts, "reading", device, metric, value, seq=seq))``, without making
        the Input when no trigger concerns the device (most readings of a big home): only
        the timers due, the device's value and when it was last seen change then."""
        if device in self._by_device:
            await self.handle(Input(ts, "reading", device, metric, value, seq=seq))
            return
        await self.advance(ts)
        self.now = ts
        self.values[(device, metric)] = value
        self.last_seen[device] = ts

    async def handle(self, inp: Input) -> None:
        """One reading, event or uplink change, at ``inp.ts`` (timers due before it first)."""
        await self.advance(inp.ts)
        self.now = inp.ts  # the input's own time, also when a timer ran a bit later (live)
        chain: tuple[str, ...] = ()
        if inp.device:
            cause = self._causes.get(inp.device)
            if cause is not None and inp.ts <= cause[1]:
                chain = cause[0]
        prev: Value | None = None
        if inp.kind == "reading":
            prev = self.values.get((inp.device, inp.name))
            assert inp.value is not None
            self.values[(inp.device, inp.name)] = inp.value
        elif inp.kind == "uplink":
            was, self.uplink = self.uplink, bool(inp.value)
            if was is None or was == self.uplink:
                return  # the first state seen is not a change
        fired: list[tuple[AutomationDef, str]] = []
        concerned = self.defs if inp.kind == "uplink" else self._by_device.get(inp.device, ())
        for aid in concerned:
            auto = self.defs[aid]
            # every trigger sees the input (stale timers restart, "for" timers cancel); the
            # automation fires once, for its first matching trigger
            descs = [self._match(aid, i, trig, inp, prev) for i, trig in enumerate(auto.triggers)]
            first = next((d for d in descs if d), "")
            if first:
                fired.append((auto, first))
        if inp.device:
            self.last_seen[inp.device] = inp.ts
        for auto, desc in fired:
            await self._fire(auto, desc, inp.seq, chain)

    def _match(self, aid: str, i: int, trig: TriggerDef, inp: Input, prev: Value | None) -> str:
        """The trigger's description when ``inp`` fires it now, "" otherwise (starts or
        cancels a "for" timer as a side effect)."""
        t = trig.type
        if t == "uplink":
            if inp.kind == "uplink" and (trig.to == "up") == bool(inp.value):
                return f"uplink {trig.to}"
            return ""
        if t == "stale":
            if inp.device != trig.device:
                return ""
            st = self._trig.setdefault((aid, i), _TrigState())
            self._cancel(("stale", aid, i))
            self._schedule(("stale", aid, i), inp.ts + trig.after_s)
            if st.stale:
                st.stale = False
                if trig.to == "back":
                    return f"{trig.device} back ({inp.describe()})"
            return ""
        if t == "event":
            if inp.kind != "event" or inp.device != trig.device or inp.value != trig.action:
                return ""
            if trig.button is not None and inp.button != trig.button:
                return ""
            return inp.describe()
        if inp.kind != "reading":
            return ""
        device, metric = trig.device, trig.metric
        want: Value | None = trig.to
        if t == "presence":
            device, metric = PERSON_PREFIX + trig.person, PRESENCE_METRIC
            want = trig.to == "home"
        if inp.device != device or inp.name != metric:
            return ""
        value = inp.value
        assert value is not None
        if t == "threshold":
            return self._threshold(aid, i, trig, inp, value)
        # state and presence
        if prev is None or same_value(prev, value):
            return ""
        for_key = ("for", aid, i)
        pending = [k for k in self._timers if k[:3] == for_key]
        if want is not None and not same_value(value, want):
            for k in pending:
                self._cancel(k)
            return ""
        for k in pending:
            self._cancel(k)
        desc = f"{inp.describe()} (was {show(prev)})"
        if trig.for_s:
            chain = self._chain_of(inp)
            self._schedule((*for_key, desc, inp.seq, chain), inp.ts + trig.for_s)
            return ""
        return desc

    def _threshold(self, aid: str, i: int, trig: TriggerDef, inp: Input, value: Value) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return ""
        st = self._trig.setdefault((aid, i), _TrigState())
        if trig.above is not None:
            high = value > trig.above
            low = value < trig.above - trig.hysteresis
        else:
            assert trig.below is not None
            high = value < trig.below
            low = value > trig.below + trig.hysteresis
        side = "high" if high else "low" if low else st.side
        was, st.side = st.side, side
        for_key = ("for", aid, i)
        if side == "low":
            for k in [k for k in self._timers if k[:3] == for_key]:
                self._cancel(k)
        if was == "low" and side == "high":
            limit = f"above {trig.above:g}" if trig.above is not None else f"below {trig.below:g}"
            desc = f"{inp.describe()} ({limit})"
            if trig.for_s:
                self._schedule((*for_key, desc, inp.seq, self._chain_of(inp)), inp.ts + trig.for_s)
                return ""
            return desc
        return ""

    def _chain_of(self, inp: Input) -> tuple[str, ...]:
        cause = self._causes.get(inp.device)
        return cause[0] if cause is not None and inp.ts <= cause[1] else ()

    # ------------------------------------------------------------------ firing

    async def _fire(
        self, auto: AutomationDef, trigger: str, seq: int, chain: tuple[str, ...]
    ) -> None:
        if not self.enabled.get(auto.id, False):
            return
        run_id = next(self._run_ids)
        trace = Trace(
            run=run_id, automation=auto.id, at=self.now, trigger=trigger, seq=seq,
            chain=list(chain),
        )  # fmt: skip
        if auto.id in chain or len(chain) >= self.limits.max_chain:
            await self._stopped(trace, "loop_stopped", " -> ".join([*chain, auto.id]))
            return
        times = self._rate.setdefault(auto.id, deque())
        while times and times[0] <= self.now - self.limits.rate_window_s:
            times.popleft()
        if len(times) >= self.limits.rate_max:
            await self._stopped(
                trace,
                "rate_limited",
                f"{self.limits.rate_max} firings in {self.limits.rate_window_s:g} s",
            )
            return
        if not self._conditions(auto.conditions, auto.id, trace):
            trace.outcome = "not_met"
            self.counters["not_met"] += 1
            self._keep(trace)
            return
        running = [r for r in self._runs.values() if r.automation == auto.id]
        if running and auto.mode == "single":
            trace.outcome = "skipped"
            trace.actions.append({"at": self.now, "action": "-", "result": "already running"})
            self._keep(trace)
            return
        if auto.mode == "restart":
            for old in running:
                self._cancel(("run", old.id))
                self._finish(old, "abandoned")
        times.append(self.now)
        self.last_fired[auto.id] = self.now
        self.counters["fired"] += 1
        run = _Run(run_id, auto.id, (*chain, auto.id), trace, [(auto.id, ("actions",), 0)])
        self._runs[run_id] = run
        self._keep(trace)
        self.effects.record(trace, "fired")
        await self._step(run)

    async def _stopped(self, trace: Trace, outcome: Outcome, why: str) -> None:
        trace.outcome = outcome
        trace.finished = self.now
        trace.actions.append({"at": self.now, "action": "-", "result": f"stopped: {why}"})
        self.counters["loop_stopped"] += 1
        _LOGGER.warning("automation %s stopped (%s): %s", trace.automation, outcome, why)
        self._keep(trace)
        self.effects.record(trace, outcome, why)

    def _keep(self, trace: Trace) -> None:
        self.traces.setdefault(trace.automation, deque(maxlen=TRACES_KEPT)).append(trace)
        self.effects.trace_done(trace)

    def _finish(self, run: _Run, outcome: Outcome | None = None) -> None:
        self.version += 1
        self._runs.pop(run.id, None)
        if outcome is not None:
            run.trace.outcome = outcome
        run.trace.finished = self.now
        self.effects.trace_done(run.trace)

    async def _step(self, run: _Run) -> None:
        """Carry out actions until the run ends or waits in a delay."""
        trace = run.trace
        self.version += 1  # its stack and trace change
        while run.stack:
            aid, path, idx = run.stack[-1]
            try:
                actions = _resolve(self.defs[aid], path)
            except (KeyError, IndexError, AttributeError, TypeError):
                # a saved position that no longer fits the definitions: stop, never crash
                trace.actions.append({"at": self.now, "action": "-", "result": "position lost"})
                self._finish(run, "abandoned")
                return
            if idx >= len(actions):
                run.stack.pop()
                continue
            run.stack[-1] = (aid, path, idx + 1)
            act = actions[idx]
            here = (*path, idx)
            step: dict[str, Any] = {"at": self.now, "action": describe(act)}
            trace.actions.append(step)
            if act.type == "command":
                cmd = Command(act.command, seconds=act.seconds if act.command == "pulse" else None)  # type: ignore[arg-type]
                self._causes[act.device] = (run.chain, self.now + self.limits.cause_window_s)
                if self.spawn is not None:
                    # live: the run goes on when the device answers; the engine does not wait
                    self.spawn(self._command_then_step(run, act.device, cmd, step))
                    return
                self._command_result(step, await self.effects.command(act.device, cmd))
            elif act.type == "delay":
                run.wake = self.now + act.seconds
                step["result"] = f"until {hm(run.wake, local_tz(self.location))}"
                self._schedule(("run", run.id), run.wake)
                self.effects.trace_done(trace)
                return
            elif act.type == "publish":
                self.effects.record(trace, "message", act.message)
                step["result"] = "queued"
            elif act.type == "run":
                target = self.defs[act.automation]
                if act.automation in run.chain or len(run.chain) >= self.limits.max_chain:
                    why = " -> ".join([*run.chain, act.automation])
                    step["result"] = f"loop stopped: {why}"
                    self.counters["loop_stopped"] += 1
                    self.effects.record(trace, "loop_stopped", why)
                    continue
                if self._conditions(target.conditions, target.id, trace):
                    run.chain = (*run.chain, target.id)
                    run.stack.append((target.id, ("actions",), 0))
                    step["result"] = "started"
                else:
                    step["result"] = "conditions not met"
            elif act.type == "if":
                ok = self._conditions(act.conditions, run.automation, trace)
                run.stack.append((aid, (*here, "then" if ok else "otherwise"), 0))
                step["result"] = "then" if ok else "else"
            elif act.type == "choose":
                chosen: tuple[str | int, ...] = (*here, "default")
                step["result"] = "default"
                for k, choice in enumerate(act.choose):
                    if self._conditions(choice.conditions, run.automation, trace):
                        chosen = (*here, "choose", k, "actions")
                        step["result"] = f"choice {k}"
                        break
                run.stack.append((aid, chosen, 0))
            else:  # sequence
                run.stack.append((aid, (*here, "actions"), 0))
                step["result"] = "ok"
        self._finish(run)

    def _command_result(self, step: dict[str, Any], result: CommandResult) -> None:
        step["result"] = str(result.status) + (f": {result.detail}" if result.detail else "")
        if not result.ok:
            self.counters["action_errors"] += 1

    async def _command_then_step(
        self, run: _Run, device: str, cmd: Command, step: dict[str, Any]
    ) -> None:
        try:
            self._command_result(step, await self.effects.command(device, cmd))
            if run.id in self._runs:  # not cancelled (mode restart, reload) meanwhile
                await self._step(run)
        except Exception:  # an automation's failure never stops the others
            _LOGGER.exception("automation %s failed", run.automation)
            step.setdefault("result", "error")
            self._finish(run, "abandoned")
        if self.on_change is not None:
            self.on_change()

    # ------------------------------------------------------------------ conditions

    def _conditions(self, conds: Iterable[ConditionDef], aid: str, trace: Trace) -> bool:
        for cond in conds:
            ok = self._condition(cond, aid)
            trace.conditions.append({"at": self.now, "condition": describe(cond), "result": ok})
            if not ok:
                return False
        return True

    def _condition(self, c: ConditionDef, aid: str) -> bool:
        if c.type == "time":
            return in_window(self.location, c, self.now)
        if c.type == "state":
            value = self.values.get((c.device, c.metric))
            if value is None:
                return False
            if c.state is not None and not same_value(value, c.state):
                return False
            if c.above is not None or c.below is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    return False
                if c.above is not None and not value > c.above:
                    return False
                if c.below is not None and not value < c.below:
                    return False
            return True
        if c.type == "presence":
            home = self.values.get((PERSON_PREFIX + c.person, PRESENCE_METRIC)) is True
            return home == (c.state == "home")
        if c.type == "uplink":
            return self.uplink is not None and self.uplink == (c.state == "up")
        last = self.last_fired.get(c.automation or aid)
        return last is None or self.now - last >= c.seconds

    # ------------------------------------------------------------------ persistence

    def timers(self) -> list[dict[str, Any]]:
        """Pending "for" triggers and delayed runs, to survive a restart."""
        out: list[dict[str, Any]] = []
        for key, when in self._timers.items():
            if key[0] == "for":
                auto = self.defs[key[1]]
                trig = auto.triggers[key[2]]
                out.append({
                    "kind": "for", "automation": key[1], "trigger": key[2], "at": when,
                    "desc": key[3], "seq": key[4], "chain": list(key[5]),
                    "device": trig.device, "metric": trig.metric, "def": repr(auto),
                })  # fmt: skip
            elif key[0] == "run":
                run = self._runs[key[1]]
                out.append({
                    "kind": "run", "automation": run.automation, "at": when,
                    "chain": list(run.chain), "stack": [[a, list(p), i] for a, p, i in run.stack],
                    "trace": run.trace.to_dict(),
                    "def": repr(self.defs[run.automation].actions),
                })  # fmt: skip
        return out

    def restore(self, saved: Iterable[dict[str, Any]]) -> list[str]:
        """Resume saved timers where safe; returns why the others were dropped.

        A "for" resumes when its automation is unchanged and the device's current value
        (seeded from the store) still satisfies the trigger; a delay resumes when its
        automation's actions are unchanged and its deadline is less than ``limits.resume_grace_s``
        past (a late one runs at once).
        """
        notes: list[str] = []
        for t in saved:
            aid = str(t.get("automation", ""))
            auto = self.defs.get(aid)
            try:
                if t["kind"] == "for":
                    if auto is None or repr(auto) != t["def"]:
                        notes.append(f"{aid}: changed, pending 'for' dropped")
                        continue
                    trig = auto.triggers[int(t["trigger"])]
                    if not self._still_holds(trig):
                        notes.append(f"{aid}: state changed while stopped, 'for' dropped")
                        continue
                    key = ("for", aid, int(t["trigger"]), str(t["desc"]), int(t["seq"]),
                           tuple(t["chain"]))  # fmt: skip
                    self._schedule(key, float(t["at"]))
                elif t["kind"] == "run":
                    if auto is None or repr(auto.actions) != t["def"]:
                        notes.append(f"{aid}: actions changed, delayed run dropped")
                        continue
                    if float(t["at"]) < self.now - self.limits.resume_grace_s:
                        notes.append(f"{aid}: delay ended {self.now - float(t['at']):.0f} s ago")
                        continue
                    run_id = next(self._run_ids)
                    run = _Run(
                        run_id, aid, tuple(t["chain"]), Trace.from_dict(t["trace"]),
                        [(str(a), tuple(p), int(i)) for a, p, i in t["stack"]],
                        wake=float(t["at"]),
                    )  # fmt: skip
                    run.trace.run = run_id  # numbered in this start's sequence
                    run.trace.actions.append(
                        {"at": self.now, "action": "-", "result": "resumed after a restart"}
                    )
                    self._runs[run.id] = run
                    self._schedule(("run", run.id), max(self.now, float(t["at"])))
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                notes.append(f"{aid}: unreadable saved timer ({exc})")
        return notes

    def _still_holds(self, trig: TriggerDef) -> bool:
        value = self.values.get((trig.device, trig.metric))
        if value is None:
            return False
        if trig.type == "threshold":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            return value > trig.above if trig.above is not None else value < (trig.below or 0)
        return trig.to is None or same_value(value, trig.to)

    def running(self) -> int:
        return len(self._runs)


def _index_by_device(automations: Iterable[AutomationDef]) -> dict[str, tuple[str, ...]]:
    """Device id -> ids of the automations with a trigger that an input from it can match."""
    out: dict[str, list[str]] = {}
    for auto in automations:
        devices = {
            PERSON_PREFIX + t.person if t.type == "presence" else t.device for t in auto.triggers
        }
        for device in devices:
            out.setdefault(device, []).append(auto.id)
    return {device: tuple(ids) for device, ids in out.items()}


def _resolve(auto: AutomationDef, path: tuple[str | int, ...]) -> tuple[ActionDef, ...]:
    node: Any = auto
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    assert isinstance(node, tuple)
    return node
