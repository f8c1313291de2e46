"""Loop protection of automations (see :class:`~gateway.automations.model.Limits`).

An automation that would fire inside its own chain of causes (A -> A, A -> B -> A, a ``run``
of one already running in the chain), or at the end of a chain longer than ``max_chain``,
is stopped; so is one firing more than ``rate_max`` times within ``rate_window_s``.
Split from :mod:`gateway.automations.engine`, which reports what this refuses.
"""

from __future__ import annotations

from collections import deque

from gateway.automations.model import Limits, Outcome


class LoopGuard:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        #: Automation id -> when it fired, within the rate window.
        self._fired: dict[str, deque[float]] = {}

    def loop(self, automation: str, chain: tuple[str, ...]) -> str:
        """The loop (``a -> b -> a``) when ``automation`` may not run after ``chain``, else ""."""
        if automation in chain or len(chain) >= self.limits.max_chain:
            return " -> ".join([*chain, automation])
        return ""

    def refusal(
        self, automation: str, chain: tuple[str, ...], now: float
    ) -> tuple[Outcome, str] | None:
        """Why ``automation`` may not fire now after ``chain`` (outcome, reason), or None."""
        loop = self.loop(automation, chain)
        if loop:
            return "loop_stopped", loop
        times = self._fired.setdefault(automation, deque())
        limits = self.limits
        while times and times[0] <= now - limits.rate_window_s:
            times.popleft()
        if len(times) >= limits.rate_max:
            return "rate_limited", f"{limits.rate_max} firings in {limits.rate_window_s:g} s"
        return None

    def fired(self, automation: str, now: float) -> None:
        self._fired.setdefault(automation, deque()).append(now)
