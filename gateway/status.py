"""The service's status as API, CLI, systemd and logs see it: each part's health as its
supervisor and its own :meth:`health` tell it, the service's health and its liveness."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.supervisor import State, Supervisor
from gateway.driver import Driver, Health
from gateway.ingest import Ingest
from gateway.parts import Component
from gateway.store import Store


@dataclass(slots=True)
class RadioStatus:
    name: str
    state: str
    health: Health
    reason: str
    restarts: int
    counters: dict[str, int] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


def radios(
    parts: Iterable[Driver | Component], supervisors: Mapping[str, Supervisor]
) -> list[RadioStatus]:
    """Each part's status: its own health, degraded while its supervisor backs off or
    waits for a human."""
    out: list[RadioStatus] = []
    for part in parts:
        h = part.health()
        sup = supervisors.get(part.name)
        state = sup.status.state if sup is not None else State.STARTING
        health = h.health
        reason = h.reason
        if sup is not None and state in (State.BACKOFF, State.FAILED):
            health = Health.DEGRADED
            reason = reason or sup.status.reason
        out.append(
            RadioStatus(
                name=part.name,
                state=str(state),
                health=health,
                reason=reason,
                restarts=sup.status.restarts if sup is not None else 0,
                counters=dict(h.counters),
                info=dict(h.info),
            )
        )
    return out


def health(
    statuses: Iterable[RadioStatus], store: Store | None, ingest: Ingest | None = None
) -> dict[str, Any]:
    """``{"status": "ok"|"degraded", "reasons": [...]}`` for API, CLI and watchdog."""
    reasons = [f"{r.name}: {r.reason or r.state}" for r in statuses if r.health is Health.DEGRADED]
    if ingest is not None:
        # new devices refused at the device limit
        reasons.extend(f"ingest: {problem}" for problem in ingest.problems())
    if store is None:
        reasons.append("store: closed")
    else:
        # failing writes, drops at the memory bound, files moved aside or found damaged
        reasons.extend(f"store: {problem}" for problem in store.problems())
    return {"status": "degraded" if reasons else "ok", "reasons": reasons}


def liveness(stopping: bool, ended: Iterable[str], store: Store | None) -> list[str]:
    """Why the service is not making progress (empty: alive). The systemd watchdog
    withholds its pings while this is non-empty; a degraded radio is still alive."""
    problems: list[str] = []
    if stopping:
        problems.append("service: stopping")
    problems.extend(f"{name}: supervisor task ended" for name in ended)
    if store is None:
        problems.append("store: closed")
    elif store.last_error:
        problems.append(f"store: writes failing ({store.last_error})")
    return problems


def status_line(statuses: Iterable[RadioStatus], store: Store | None) -> str:
    """A one-line summary (systemd STATUS=, logs)."""
    parts = [
        f"{r.name}={r.health.value if r.health is not Health.OK else r.state}" for r in statuses
    ]
    if store is not None:
        parts.append(f"seq={store.last_seq}")
    return " ".join(parts) or "no radios"
