"""Small helpers for the store's SQL text."""

from __future__ import annotations

from typing import Any


def where(*conditions: str | tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a AND b ...`` and its arguments: a ``(sql, argument)`` condition counts only
    when its argument is not None; a plain string always counts (it takes no argument)."""
    parts: list[str] = []
    args: list[Any] = []
    for cond in conditions:
        if isinstance(cond, str):
            parts.append(cond)
        elif cond[1] is not None:
            parts.append(cond[0])
            args.append(cond[1])
    return (" WHERE " + " AND ".join(parts) if parts else ""), args
