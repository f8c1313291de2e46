"""Tables of the CLI: a device-id table whose first column is never cut, and which columns
fit a terminal's width."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table


def id_table(first: str, columns: tuple[str, ...], *, min_width: int = 16) -> Table:
    """A borderless table: ``first`` (an id, whole on one line), then ``columns`` folded
    when the terminal is narrow."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column(first, no_wrap=True, min_width=min_width)
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def fit_columns(
    rows: list[dict[str, str]], order: tuple[str, ...], width: int, wrapping: frozenset[str]
) -> list[str]:
    """The columns of ``order`` that fit ``width``: the first always, whole; ``wrapping``
    ones at their header's width (or 10); the others at their widest cell. Dropped from the
    end."""
    gap = 2

    def need(col: str) -> int:
        widest = max([len(col), *(len(r[col]) for r in rows)])
        return min(widest, max(len(col), 10)) if col in wrapping else widest

    shown = list(order)
    while len(shown) > 1 and sum(need(c) for c in shown) + gap * (len(shown) - 1) > width:
        shown.pop()
    return [c for c in order if c in shown]
