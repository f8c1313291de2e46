"""``migw doctor``: the checks in order, streamed as each finishes; exit code 1 when any fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.cli.base import CliContext, cli, json_option, pass_ctx
from gateway.cli.client import console, print_json
from gateway.cli.doctor import ble, broker, gpio, host, service, zigbee
from gateway.cli.doctor.base import Check, Checks, Doctor, DoctorHost, Level

#: Every check in the order they run, each with its name.
CHECKS: Checks = (
    *service.CHECKS,
    *zigbee.CHECKS,
    *ble.CHECKS,
    *gpio.CHECKS,
    *broker.CHECKS,
    *host.CHECKS,
)


_MARK = {Level.PASS: "PASS", Level.WARN: "WARN", Level.FAIL: "FAIL", Level.SKIP: "skip"}


_STYLE = {Level.PASS: "green", Level.WARN: "yellow", Level.FAIL: "bold red", Level.SKIP: "dim"}


async def run_checks(
    ctx: CliContext,
    on_start: Callable[[int, str], None],
    on_done: Callable[[int, Check], None],
    host: DoctorHost | None = None,
) -> list[Check]:
    doctor = Doctor(ctx, host or DoctorHost())
    limit = doctor.host.check_timeout_s
    results: list[Check] = []
    for i, (named, fn) in enumerate(CHECKS, 1):
        on_start(i, named.name)
        try:
            async with asyncio.timeout(limit):
                check = await fn(doctor)
        except TimeoutError:
            check = named(Level.FAIL, f"the check did not finish in {limit:g} s")
        except Exception as exc:  # noqa: BLE001 - a broken check is reported, never a crash
            check = named(Level.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}")
        results.append(check)
        on_done(i, check)
    return results


@cli.command()
@json_option
@pass_ctx
def doctor(ctx: CliContext, as_json: bool) -> int:
    """Check this gateway and print pass/warn/fail with a fix for each problem.

    Exit code 1 when any check fails.
    """
    return report(ctx, as_json)


def report(ctx: CliContext, as_json: bool, host: DoctorHost | None = None) -> int:
    """``migw doctor`` looking at ``host`` (default: this machine's paths and waits)."""
    con = console()
    err = console(stderr=True)
    total = len(CHECKS)
    status_cm: list[Any] = []

    def on_start(i: int, name: str) -> None:
        if err.is_terminal:
            cm = err.status(f"[{i}/{total}] checking {name}...")
            cm.__enter__()
            status_cm.append(cm)

    def on_done(i: int, check: Check) -> None:
        while status_cm:
            status_cm.pop().__exit__(None, None, None)
        if as_json:
            return
        mark = _MARK[check.level]
        con.print(
            f"[{i:>2}/{total}] [{_STYLE[check.level]}]{mark}[/] {check.name:<19} {check.detail}",
            markup=True,
            highlight=False,
        )
        if check.hint and check.level in (Level.WARN, Level.FAIL):
            con.print(f"{'':>8} fix: {check.hint}", markup=False)

    results = asyncio.run(run_checks(ctx, on_start, on_done, host))
    counts = {lvl.value: sum(c.level is lvl for c in results) for lvl in Level}
    failed = counts["fail"] > 0
    if as_json:
        print_json({"ok": not failed, "summary": counts, "checks": [c.to_json() for c in results]})
    else:
        con.print(
            f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
            f"{counts['skip']} skipped",
            markup=False,
        )
    return 1 if failed else 0
