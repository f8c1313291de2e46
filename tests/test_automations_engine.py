"""The automation engine on a virtual clock: triggers, conditions, actions, loops, timers.

The effects are the engine's outer boundary (router and store): recorded here, the device
answering a command by reporting its new state like a relay does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
import zoneinfo

import pytest

from gateway.automations.engine import Engine
from gateway.automations.model import Input, Trace
from gateway.config import loads
from gateway.errors import ConfigError
from gateway.model import Command, CommandResult, CommandStatus, Value
from tests.automation_toml import on_wait_off

T0 = 1_760_000_000.0  # a fixed wall time


class Recorder:
    def __init__(self) -> None:
        self.commands: list[tuple[float, str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.engine: Engine | None = None

    async def command(self, device: str, command: Command) -> CommandResult:
        assert self.engine is not None
        self.commands.append((self.engine.now, device, command.action))
        return CommandResult(CommandStatus.OK)

    def record(self, trace: Trace, action: str, message: str = "") -> None:
        self.events.append((trace.automation, action, message))

    def trace_done(self, trace: Trace) -> None:
        pass


def make(toml: str) -> tuple[Engine, Recorder]:
    cfg = loads(textwrap.dedent(toml))
    rec = Recorder()
    engine = Engine(cfg.automations, rec, location=cfg.location, start=T0)
    rec.engine = engine
    return engine, rec


def reading(t: float, device: str, metric: str, value: Value) -> Input:
    return Input(T0 + t, "reading", device, metric, value)


async def test_state_trigger_with_for_and_cancel() -> None:
    engine, rec = make("""
        [[automations]]
        id = "door-open-long"
        triggers = [{type = "state", device = "d", metric = "opening", to = true, for_s = 10}]
        actions = [{type = "command", device = "relay", command = "on"}]
    """)
    await engine.handle(reading(0, "d", "opening", False))
    await engine.handle(reading(1, "d", "opening", True))
    await engine.handle(reading(5, "d", "opening", False))  # closed again: cancelled
    await engine.advance(T0 + 30)
    assert rec.commands == []
    await engine.handle(reading(40, "d", "opening", True))
    await engine.advance(T0 + 49)
    assert rec.commands == []
    await engine.advance(T0 + 60)
    assert rec.commands == [(T0 + 50, "relay", "on")]
    trace = engine.traces["door-open-long"][-1]
    assert trace.trigger == "d opening = true (was false) for 10 s"


async def test_threshold_hysteresis() -> None:
    engine, rec = make("""
        [[automations]]
        id = "hot"
        [[automations.triggers]]
        type = "threshold"
        device = "t"
        metric = "temperature"
        above = 25
        hysteresis = 1
        [[automations.actions]]
        type = "publish"
        message = "hot"
    """)
    for i, v in enumerate([20, 26, 24.5, 26, 23.9, 25.5]):
        await engine.handle(reading(i, "t", "temperature", v))
    # fires at 26 (armed by 20), not again at 26 after 24.5 (inside the band), again after 23.9
    assert [e for e in rec.events if e[1] == "message"] == [("hot", "message", "hot")] * 2


async def test_event_trigger_conditions_and_choose() -> None:
    engine, rec = make("""
        [[automations]]
        id = "btn"
        triggers = [{type = "event", device = "b", action = "double"}]
        conditions = [{type = "not_fired", seconds = 5}]
        [[automations.actions]]
        type = "choose"
        default = [{type = "command", device = "led", command = "off"}]
        [[automations.actions.choose]]
        conditions = [{type = "state", device = "t", metric = "temperature", above = 20}]
        actions = [{type = "command", device = "led", command = "toggle"}]
    """)
    await engine.handle(Input(T0, "event", "b", "button", "single"))
    assert rec.commands == []
    await engine.handle(Input(T0 + 1, "event", "b", "button", "double"))
    await engine.handle(Input(T0 + 2, "event", "b", "button", "double"))  # not_fired: no
    await engine.handle(reading(3, "t", "temperature", 21.0))
    await engine.handle(Input(T0 + 10, "event", "b", "button", "double"))
    assert rec.commands == [(T0 + 1, "led", "off"), (T0 + 10, "led", "toggle")]
    outcomes = [t.outcome for t in engine.traces["btn"]]
    assert outcomes == ["fired", "not_met", "fired"]


async def test_self_triggering_loop_is_stopped_and_reported() -> None:
    engine, rec = make("""
        [[automations]]
        id = "a"
        triggers = [{type = "state", device = "relay", metric = "switch"}]
        actions = [{type = "command", device = "relay2", command = "toggle"}]
        [[automations]]
        id = "b"
        triggers = [{type = "state", device = "relay2", metric = "switch"}]
        actions = [{type = "command", device = "relay", command = "toggle"}]
    """)
    await engine.handle(reading(0, "relay", "switch", False))
    await engine.handle(reading(0, "relay2", "switch", False))
    await engine.handle(reading(1, "relay", "switch", True))  # a person flips the relay
    await engine.handle(reading(1.1, "relay2", "switch", True))  # caused by a
    await engine.handle(reading(1.2, "relay", "switch", False))  # caused by b: a again
    assert [c[1] for c in rec.commands] == ["relay2", "relay"]
    assert ("a", "loop_stopped", "a -> b -> a") in rec.events
    assert engine.traces["a"][-1].outcome == "loop_stopped"


FLOOD = """
    [[automations]]
    id = "door"
    mode = "parallel"
    triggers = [{type = "state", device = "door", metric = "opening"}]
    actions = [{type = "command", device = "relay", command = "toggle"}]
"""


async def _flood(engine: Engine, n: int, every_s: float) -> None:
    for i in range(n):
        await engine.handle(reading(i * every_s, "door", "opening", i % 2 == 0))


async def test_an_automation_firing_too_often_is_stopped_and_reported() -> None:
    engine, rec = make(FLOOD)
    await _flood(engine, 30, 0.1)  # 29 changes in 3 s: the 21st within 10 s is refused
    assert len(rec.commands) == 20
    assert ("door", "rate_limited", "20 firings in 10 s") in rec.events
    assert engine.traces["door"][-1].outcome == "rate_limited"
    # the window moves on: ten seconds after the first firings it may fire again
    await engine.handle(reading(12.5, "door", "opening", True))
    assert len(rec.commands) == 21


async def test_limits_set_on_a_running_engine_take_effect() -> None:
    engine, rec = make(FLOOD)
    engine.limits = dataclasses.replace(engine.limits, rate_max=100, rate_window_s=1.0)
    # 59 changes (the first value is no change), 10 a second: under the new 100 in 1 s
    await _flood(engine, 60, 0.1)
    assert len(rec.commands) == 59
    engine.limits = dataclasses.replace(engine.limits, rate_max=5)
    await engine.handle(reading(6.05, "door", "opening", True))  # 9 in the last second
    assert len(rec.commands) == 59
    assert engine.traces["door"][-1].outcome == "rate_limited"


async def test_delay_survives_restart_and_reload_keeps_timers() -> None:
    toml = """
        [[automations]]
        id = "pulse"
        triggers = [{type = "event", device = "b", action = "single"}]
    """ + on_wait_off("r", 60)
    engine, rec = make(toml)
    await engine.handle(Input(T0, "event", "b", "button", "single"))
    saved = engine.timers()
    assert [t["kind"] for t in saved] == ["run"]
    # reload with the same definition: the delay still runs
    engine.load(loads(textwrap.dedent(toml)).automations)
    await engine.advance(T0 + 61)
    assert [c[2] for c in rec.commands] == ["on", "off"]
    # a restart: a new engine resumes the saved delay
    engine2, rec2 = make(toml)
    assert engine2.restore(saved) == []
    await engine2.advance(T0 + 61)
    assert rec2.commands == [(T0 + 60, "r", "off")]
    # restored too late (past the grace period): dropped with a reason
    engine3, _ = make(toml)
    await engine3.advance(T0 + 600)
    assert engine3.restore(saved) == ["pulse: delay ended 540 s ago"]


async def test_run_action_and_mutual_run_loop() -> None:
    engine, rec = make("""
        [[automations]]
        id = "a"
        triggers = [{type = "uplink", to = "down"}]
        actions = [{type = "publish", message = "a"}, {type = "run", automation = "b"}]
        [[automations]]
        id = "b"
        triggers = [{type = "uplink", to = "up"}]
        actions = [{type = "publish", message = "b"}, {type = "run", automation = "a"}]
    """)
    await engine.handle(Input(T0, "uplink", value=True))  # first state: not a change
    await engine.handle(Input(T0 + 1, "uplink", value=False))
    assert rec.events == [
        ("a", "fired", ""), ("a", "message", "a"), ("a", "message", "b"),
        ("a", "loop_stopped", "a -> b -> a"),
    ]  # fmt: skip


async def test_time_trigger_and_window_across_midnight() -> None:
    engine, _ = make("""
        [location]
        timezone = "UTC"
        [[automations]]
        id = "nightly"
        triggers = [{type = "time", at = "23:30"}]
        conditions = [{type = "time", after = "22:00", before = "06:00"}]
        actions = [{type = "publish", message = "night"}]
    """)
    await engine.advance(T0 + 2 * 86400)
    fired = [t.at for t in engine.traces["nightly"] if t.outcome == "fired"]
    assert len(fired) == 2
    assert all(int(t) % 86400 == 23 * 3600 + 1800 for t in fired)


def test_config_errors_name_key_and_line() -> None:
    text = textwrap.dedent("""
        [[automations]]
        id = "ok"
        triggers = [{type = "event", device = "b", action = "single"}]
        actions = [{type = "run", automation = "ok"}]

        [[automations]]
        id = "bad"
        actions = [{type = "delay", seconds = 1}]

        [[automations.triggers]]
        type = "threshold"
        device = "t"
        metric = "temperature"
    """)
    with pytest.raises(ConfigError) as err:
        loads(text)
    assert str(err.value) == (
        "automations[1].triggers[0].above (line 11): a threshold trigger needs above or below"
        " (one of them)"
    )
    with pytest.raises(ConfigError) as err:
        loads(text.replace('type = "threshold"', 'type = "event"\naction = "x"').replace(
            'automation = "ok"', 'automation = "nope"'))  # fmt: skip
    assert str(err.value).startswith("automations[0].actions[0].automation (line 5): no automation")


async def test_stale_and_back() -> None:
    engine, rec = make("""
        [[automations]]
        id = "silent"
        triggers = [{type = "stale", device = "s", after_s = 60, to = "stale"}]
        actions = [{type = "publish", message = "silent"}]
        [[automations]]
        id = "back"
        triggers = [{type = "stale", device = "s", after_s = 60, to = "back"}]
        actions = [{type = "publish", message = "back"}]
    """)
    await engine.handle(reading(0, "s", "temperature", 20.0))
    await engine.handle(reading(50, "s", "temperature", 20.1))  # restarts the silence timer
    await engine.advance(T0 + 100)
    assert rec.events == []
    await engine.advance(T0 + 110)
    await engine.handle(reading(200, "s", "temperature", 20.2))
    fired = [(t.automation, t.at) for ts in engine.traces.values() for t in ts]
    assert sorted(fired) == [("back", T0 + 200), ("silent", T0 + 110)]


async def test_sun_trigger_fires_at_sunset() -> None:
    engine, _ = make("""
        [location]
        latitude = 51.50853
        longitude = -0.12574
        timezone = "Europe/London"
        [[automations]]
        id = "dusk"
        triggers = [{type = "sun", at = "sunset", offset_min = -10}]
        actions = [{type = "publish", message = "dusk"}]
    """)
    await engine.advance(T0 + 86400)
    (trace,) = engine.traces["dusk"]
    from gateway.automations.sun import sun_times_local

    london = zoneinfo.ZoneInfo("Europe/London")
    local = dt.datetime.fromtimestamp(trace.at, london)
    _, sunset = sun_times_local(local.date(), 51.50853, -0.12574, london)
    assert sunset is not None
    assert trace.at == pytest.approx(sunset - 600)


async def test_reload_drops_a_delay_whose_actions_changed() -> None:
    toml = """
        [[automations]]
        id = "a"
        triggers = [{type = "event", device = "b", action = "single"}]
        [[automations.actions]]
        type = "delay"
        seconds = 10
        [[automations.actions]]
        type = "run"
        automation = "b"
        [[automations]]
        id = "b"
        triggers = [{type = "event", device = "b", action = "long"}]
        actions = [{type = "command", device = "r", command = "on"}]
    """
    engine, rec = make(toml)
    await engine.handle(Input(T0, "event", "b", "button", "single"))
    # a change to b only: a's run keeps going (it is not inside b yet)
    assert engine.load(loads(textwrap.dedent(toml.replace('"on"', '"off"'))).automations) == []
    await engine.advance(T0 + 11)
    assert rec.commands == [(T0 + 10, "r", "off")]
    await engine.handle(Input(T0 + 20, "event", "b", "button", "single"))
    changed = toml.replace("seconds = 10", "seconds = 5")
    assert engine.load(loads(textwrap.dedent(changed)).automations) == ["a"]
    await engine.advance(T0 + 60)
    assert len(rec.commands) == 1
    assert engine.traces["a"][-1].outcome == "abandoned"
