"""Run the benchmarks: a table, then one JSON line per figure.

Each module ``bench/<name>.py`` exposes ``run(quick: bool) -> list[dict]``; a figure is
``{"name", "value", "unit"}`` plus optional ``"peer"``/``"peer_value"``/``"ratio"``/``"target"``
(peers are measured in the same run, on the same input, so ratios compare like with like).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
import traceback
from typing import Any

MODULES = ["store", "ble", "zigbee", "sync", "automations", "demo"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (CI smoke run)")
    ap.add_argument("names", nargs="*", help=f"subset of {MODULES}")
    args = ap.parse_args(argv)
    names = args.names or MODULES
    figures: list[dict[str, Any]] = []
    failed = False
    for name in names:
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"[bench] {name}: not present, skipped", file=sys.stderr)
                continue
            raise
        t0 = time.perf_counter()
        try:
            got = mod.run(args.quick)
        except Exception:
            failed = True
            traceback.print_exc()
            continue
        for fig in got:
            fig.setdefault("bench", name)
        figures.extend(got)
        print(f"[bench] {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    env = {"python": platform.python_version(), "machine": platform.machine(), "quick": args.quick}
    headers = ["bench", "figure", "value", "unit", "peer", "peer value", "ratio", "target"]
    rows = [
        [
            f.get("bench", ""),
            f["name"],
            _fmt(f["value"]),
            f.get("unit", ""),
            f.get("peer", ""),
            _fmt(f.get("peer_value", "")),
            (f"{f['ratio']:.1f}x" if isinstance(f.get("ratio"), int | float) else ""),
            str(f.get("target", "")),
        ]
        for f in figures
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print()
    for f in figures:
        print(json.dumps({**f, **env}, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
