"""What the systemd integration reports: whether the process makes progress
(what withholds a watchdog ping) and the one-line ``STATUS=``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from drivers.supervisor import State
from gateway.driver import Health

if TYPE_CHECKING:
    from gateway.service import Service

#: Event-loop lag above this (seconds) withholds the next watchdog ping.
LAG_THRESHOLD_S = 2.0
#: Rows pending without any commit for this long count as a hung store.
STORE_STALL_S = 60.0
#: systemd shows the whole line; keep it readable.
STATUS_MAX_CHARS = 400


class Progress:
    """Why the service is not making progress: its own liveness, loop lag and a store whose
    pending rows see no commit."""

    def __init__(self, service: Service, lag_threshold_s: float = LAG_THRESHOLD_S) -> None:
        self._service = service
        self.lag_threshold_s = lag_threshold_s
        self._store_commits = -1
        self._store_progress = time.monotonic()

    def problems(self, lag: float) -> list[str]:
        """Empty: healthy enough to ping."""
        problems = list(self._service.liveness())
        if lag > self.lag_threshold_s:
            problems.append(f"event loop lag {lag:.1f} s")
        store = self._service.store
        if store is not None:
            now = time.monotonic()
            if store.counters.commits != self._store_commits or store.pending() == 0:
                self._store_commits = store.counters.commits
                self._store_progress = now
            elif now - self._store_progress > STORE_STALL_S:
                problems.append(
                    f"store: {store.pending()} rows waiting, no commit for "
                    f"{now - self._store_progress:.0f} s"
                )
        return problems


def status_line(
    service: Service, problems: list[str], late: list[str], backlog: int | None, note: str
) -> str:
    """``ok | gpio=ok ble=degraded seq=N | backlog=N``: the head says what is wrong first."""
    health = service.health()
    if problems:
        head = f"watchdog withheld ({'; '.join(problems)})"
    elif health["status"] != "ok" or late:
        reasons = [*health["reasons"], *(f"{name}: not up yet" for name in late)]
        head = f"degraded ({'; '.join(reasons)})"
    else:
        head = "ok"
    parts = [head, parts_line(service)]
    if backlog is not None:
        parts.append(f"backlog={backlog}")
    if note:
        parts.append(note)
    line = " | ".join(parts)
    if len(line) > STATUS_MAX_CHARS:
        line = line[: STATUS_MAX_CHARS - 3] + "..."
    return line


def parts_line(service: Service) -> str:
    """``gpio=ok ble=degraded sync=backoff api=ok seq=N``: health first, then the
    supervisor state when it is not simply starting/running."""
    items = []
    for r in service.radios():
        if r.health is not Health.OK:
            items.append(f"{r.name}={r.health.value}")
        elif r.state in (State.STARTING, State.RUNNING):
            items.append(f"{r.name}=ok")
        else:
            items.append(f"{r.name}={r.state}")
    store = service.store
    if store is not None:
        items.append(f"seq={store.last_seq}")
    return " ".join(items) or "no radios"
