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
automations that caused it for :attr:`Limits.cause_window_s`; an input from that device inherits
the chain, and :mod:`.guard` stops what would loop or fire too often.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from gateway.automations.conditions import condition_holds
from gateway.automations.daytime import hm, local_tz, next_clock
from gateway.automations.guard import LoopGuard
from gateway.automations.model import (
    TRACES_KEPT,
    Effects,
    Input,
    Limits,
    Outcome,
    Run,
    Trace,
    describe,
)
from gateway.automations.persist import kept_on_reload, restore_timers, saved_timers
from gateway.automations.timers import TimerQueue
from gateway.automations.triggers import Causes, TriggerMatcher, index_by_device
from gateway.config import (
    ActionDef,
    AutomationDef,
    ConditionDef,
    LocationSection,
)
from gateway.model import Command, CommandResult, Value

_LOGGER = logging.getLogger(__name__)


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
        self._guard = LoopGuard(limits or Limits())
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
        self._timers = TimerQueue()
        self._runs: dict[int, Run] = {}
        self._run_ids = itertools.count(1)
        self._causes: Causes = {}
        self._triggers = TriggerMatcher(self._timers, self._causes)
        #: Device id -> the automations (in definition order) with a trigger on that device:
        #: a reading or event from any other device cannot match a trigger, so it costs one
        #: dict lookup instead of a pass over every trigger.
        self._by_device: dict[str, tuple[str, ...]] = {}
        #: Runs stepped or finished (with the timers' own count: :attr:`version`).
        self._run_changes = 0
        self.load(automations)

    @property
    def limits(self) -> Limits:
        """The loop, rate and cause limits in force (the loop guard's: one source)."""
        return self._guard.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self._guard.limits = limits

    @property
    def version(self) -> int:
        """Counts changes of what :meth:`timers` returns (timers set or dropped, runs
        stepped), so the live loop saves them only when they changed."""
        return self._timers.version + self._run_changes

    # ------------------------------------------------------------------ definitions

    def load(self, automations: Iterable[AutomationDef]) -> list[str]:
        """(Re)load the definitions. An automation whose definition is unchanged keeps its
        timers and running runs; a changed one keeps its runs only if its actions are
        unchanged. Returns the ids whose pending work was dropped."""
        new = {a.id: a for a in automations}
        dropped: list[str] = []
        self._run_changes += 1
        for key in self._timers.all_keys():
            owner = self._runs[key[1]].automation if key[0] == "run" else str(key[1])
            if not kept_on_reload(key, self._runs, self.defs, new):
                self._timers.cancel(key)
                if key[0] == "run":
                    self._finish(self._runs[key[1]], "abandoned")
                if key[0] in ("run", "for"):
                    dropped.append(owner)
        for aid, auto in new.items():
            if self.defs.get(aid) != auto:
                self._triggers.forget(aid, len(auto.triggers))
            old_def = self.defs.get(aid)
            if old_def is None or old_def.enabled != auto.enabled or aid not in self.enabled:
                self.enabled[aid] = auto.enabled  # the config wins when it changed
            self.traces.setdefault(aid, deque(maxlen=TRACES_KEPT))
        self.defs = new
        self._by_device = index_by_device(new.values())
        for aid in list(self.enabled):
            if aid not in new:
                del self.enabled[aid]
        self._triggers.schedule_clock(self.defs, self.location, self.now, self.last_seen)
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
        return self._timers.next_deadline()

    async def advance(self, now: float) -> None:
        """Run every timer due at or before ``now``, each at its own deadline."""
        while (due := self._timers.pop_due(now)) is not None:
            when, key = due
            self.now = max(self.now, when)
            await self._on_timer(key)
        self.now = max(self.now, now)

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
                self._timers.set(key, nxt)
            await self._fire(auto, f"{trig.at} at {hm(self.now, local_tz(self.location))}", 0, ())
        elif kind == "stale":
            self._triggers.state(aid, i).stale = True
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
        chain = self._triggers.chain_of(inp)
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
        match = self._triggers.match
        concerned = self.defs if inp.kind == "uplink" else self._by_device.get(inp.device, ())
        for aid in concerned:
            auto = self.defs[aid]
            # every trigger sees the input (stale timers restart, "for" timers cancel); the
            # automation fires once, for its first matching trigger
            descs = [match(aid, i, trig, inp, prev) for i, trig in enumerate(auto.triggers)]
            first = next((d for d in descs if d), "")
            if first:
                fired.append((auto, first))
        if inp.device:
            self.last_seen[inp.device] = inp.ts
        for auto, desc in fired:
            await self._fire(auto, desc, inp.seq, chain)

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
        refused = self._guard.refusal(auto.id, chain, self.now)
        if refused is not None:
            await self._stopped(trace, *refused)
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
                self._timers.cancel(("run", old.id))
                self._finish(old, "abandoned")
        self._guard.fired(auto.id, self.now)
        self.last_fired[auto.id] = self.now
        self.counters["fired"] += 1
        run = Run(run_id, auto.id, (*chain, auto.id), trace, [(auto.id, ("actions",), 0)])
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

    def _finish(self, run: Run, outcome: Outcome | None = None) -> None:
        self._run_changes += 1
        self._runs.pop(run.id, None)
        if outcome is not None:
            run.trace.outcome = outcome
        run.trace.finished = self.now
        self.effects.trace_done(run.trace)

    async def _step(self, run: Run) -> None:
        """Carry out actions until the run ends or waits in a delay."""
        trace = run.trace
        self._run_changes += 1  # its stack and trace change
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
                self._timers.set(("run", run.id), run.wake)
                self.effects.trace_done(trace)
                return
            elif act.type == "publish":
                self.effects.record(trace, "message", act.message)
                step["result"] = "queued"
            elif act.type == "run":
                target = self.defs[act.automation]
                why = self._guard.loop(act.automation, run.chain)
                if why:
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
        self, run: Run, device: str, cmd: Command, step: dict[str, Any]
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
        return condition_holds(
            c, aid, now=self.now, location=self.location, values=self.values,
            uplink=self.uplink, last_fired=self.last_fired,
        )  # fmt: skip

    # ------------------------------------------------------------------ persistence

    def timers(self) -> list[dict[str, Any]]:
        """Pending "for" triggers and delayed runs, to survive a restart."""
        return saved_timers(self._timers, self.defs, self._runs)

    def restore(self, saved: Iterable[dict[str, Any]]) -> list[str]:
        """Resume saved timers where safe; returns why the others were dropped (see
        :func:`.persist.restore_timers`)."""
        return restore_timers(
            saved, defs=self.defs, values=self.values, now=self.now,
            grace_s=self.limits.resume_grace_s, timers=self._timers, runs=self._runs,
            run_ids=self._run_ids,
        )  # fmt: skip

    def running(self) -> int:
        return len(self._runs)


def _resolve(auto: AutomationDef, path: tuple[str | int, ...]) -> tuple[ActionDef, ...]:
    node: Any = auto
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    assert isinstance(node, tuple)
    return node
