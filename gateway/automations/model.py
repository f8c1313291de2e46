"""The automation engine's vocabulary: inputs, traces, limits and the effects seam.

Split from :mod:`gateway.automations.engine` (which runs them); :mod:`.journal`,
:mod:`.replay` and the live component share these types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.config import ActionDef, ConditionDef
from gateway.model import Command, CommandResult, Value


@dataclass(frozen=True, slots=True)
class Limits:
    #: An input from a device within this many seconds of an automation's command to it is
    #: taken as caused by that automation (its chain is inherited).
    cause_window_s: float = 5.0
    #: Longest chain of automations triggering each other.
    max_chain: int = 8
    #: An automation firing more often than rate_max times within rate_window_s is stopped.
    rate_max: int = 20
    rate_window_s: float = 10.0
    #: A delay whose deadline passed more than this long before a restart is not resumed.
    resume_grace_s: float = 60.0


#: Traces kept in memory per automation.
TRACES_KEPT = 20
#: Device id prefix of people's presence (``person-alice``) and their metric.
PERSON_PREFIX = "person-"
PRESENCE_METRIC = "presence"
#: ``source`` of the events the engine records; inputs from it are ignored.
SOURCE = "automations"

Outcome = Literal["fired", "not_met", "skipped", "loop_stopped", "rate_limited", "abandoned"]


@dataclass(frozen=True, slots=True)
class Input:
    """A reading (``name`` is the metric), an event (``name`` the event, ``value`` the action)
    or an uplink change (``kind`` "uplink", ``value`` True when up)."""

    ts: float
    kind: Literal["reading", "event", "uplink"]
    device: str = ""
    name: str = ""
    value: Value | None = None
    button: int | None = None
    seq: int = 0

    def describe(self) -> str:
        if self.kind == "uplink":
            return f"uplink {'up' if self.value else 'down'}"
        button = f" button {self.button}" if self.button is not None else ""
        sep = " = " if self.kind == "reading" else ": "
        return f"{self.device} {self.name}{sep}{show(self.value)}{button}"


@dataclass(slots=True)
class Trace:
    """What one firing did: trigger, conditions evaluated, actions and their results."""

    run: int
    automation: str
    at: float
    trigger: str
    seq: int = 0
    chain: list[str] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    outcome: Outcome = "fired"
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Effects(Protocol):
    """What the engine does to the world: live (router, store) or a replay's dry run."""

    async def command(self, device: str, command: Command) -> CommandResult: ...

    def record(self, trace: Trace, action: str, message: str = "") -> None:
        """Record an event for the trace (``action`` fired/loop_stopped/message...)."""

    def trace_done(self, trace: Trace) -> None:
        """A trace changed (fired, an action ran, finished)."""


def same_value(a: Value | None, b: Value | None) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def show(value: Value | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(d: ActionDef | ConditionDef) -> str:
    """A short text of an action or condition: its type and the fields that are set."""
    parts: list[str] = [d.type]
    for f in dataclasses.fields(d):
        if f.name == "type":
            continue
        value = getattr(d, f.name)
        if value in ((), "", None, 0.0) and value is not False:
            continue
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            parts.append(f"{f.name}=[{len(value)}]")
        else:
            parts.append(f"{f.name}={show(value)}")
    return " ".join(parts)


@dataclass(slots=True)
class Run:
    """A running automation: where it is in its actions (a delay is a timer that resumes it)."""

    id: int
    automation: str
    chain: tuple[str, ...]
    trace: Trace
    #: Positions: (automation id, path of an action list, next index).
    stack: list[tuple[str, tuple[str | int, ...], int]]
    wake: float | None = None
