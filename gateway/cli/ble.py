"""``migw decode ble`` (offline field tool) and ``migw sniff ble`` (live, for a technician).

``decode ble`` reads JSON lines from stdin, one advert each::

    {"mac": "A4:C1:38:02:83:F4", "service_data": {"fe95": "5858..."}, "rssi": -60}

and writes one JSON line per input (schema in docs/ble.md)::

    {"mac", "format", "model", "values": {metric: value}, "events": [...]}
    {"mac", "error": "no_key|key_invalid|malformed|unsupported"}

Each line is decoded on its own (no de-duplication, no state). A short reason for each
error goes to stderr. Keys come from ``--bindkey MAC=HEX`` (repeatable) and the config's
``[ble]`` section; they are never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import click

from drivers.aio import cancel_and_wait
from drivers.ble.decoder import decode_advertisement, primary
from drivers.ble.dedup import Deduplicator
from drivers.ble.errors import KeyFormatError
from drivers.ble.jsonio import advertisement_from_json, outcome_to_json
from drivers.ble.keys import BindKey, parse_key
from drivers.ble.scanner import BleScanner, ScannerFactory, bleak_factory, supervise
from drivers.ble.types import Advertisement, Decoded, Failed, FailReason, normalize_mac
from drivers.errors import ParseError
from drivers.supervisor import State, SupervisorStatus
from gateway.adapters.ble_setup import load_keys
from gateway.cli.base import CliContext, decode, pass_ctx, sniff
from gateway.errors import ConfigError


def _keys(ctx: CliContext, bindkeys: tuple[str, ...], use_config: bool) -> dict[str, BindKey]:
    """Config keys (when a config is present), then ``--bindkey`` ones over them."""
    keys: dict[str, BindKey] = {}
    if use_config:
        try:
            cfg = ctx.load_config()
        except ConfigError as exc:
            raise click.ClickException(f"config: {exc}") from None
        keys, problems = load_keys(cfg.ble)
        for problem in problems:
            click.echo(f"warning: key ignored: {problem}", err=True)
    for item in bindkeys:
        mac, sep, hexkey = item.partition("=")
        if not sep:
            raise click.BadParameter("expected MAC=HEX", param_hint="--bindkey")
        try:
            norm = normalize_mac(mac)
        except ValueError:
            raise click.BadParameter(
                f"{mac!r} is not a MAC address", param_hint="--bindkey"
            ) from None
        try:
            keys[norm] = parse_key(hexkey, what=f"--bindkey for {norm}")
        except KeyFormatError as exc:
            raise click.BadParameter(str(exc), param_hint="--bindkey") from None
    return keys


def decode_line(line: str, keys: Mapping[str, BindKey]) -> tuple[dict[str, Any], str]:
    """One input line -> (output object, reason for stderr or "")."""
    try:
        obj = json.loads(line)
    except ValueError:
        return {"mac": "", "error": FailReason.MALFORMED.value}, "not a JSON object"
    mac = obj.get("mac", "") if isinstance(obj, dict) else ""
    try:
        adv = advertisement_from_json(obj)
    except ParseError as exc:
        return {"mac": mac if isinstance(mac, str) else "", "error": "malformed"}, str(exc)
    try:
        outcome = primary(decode_advertisement(adv, keys))
    except Exception as exc:  # noqa: BLE001 - a codec bug must not end the stream
        detail = f"decoder error (a bug): {type(exc).__name__}: {exc}"
        return {"mac": adv.address, "error": FailReason.MALFORMED.value}, detail
    if outcome is None:
        return (
            {"mac": adv.address, "error": FailReason.UNSUPPORTED.value},
            "no supported service data (MiBeacon, ATC/pvvx, BTHome, Mi scale)",
        )
    reason = outcome.detail if isinstance(outcome, Failed) else ""
    return outcome_to_json(outcome, adv.address), reason


def run_decode(stdin: TextIO, keys: Mapping[str, BindKey]) -> int:
    """0 when a line decoded (or there were none), 1 when every line failed."""
    lines = failed = 0
    for lineno, raw in enumerate(stdin, 1):
        line = raw.strip()
        if not line:
            continue
        lines += 1
        out, reason = decode_line(line, keys)
        click.echo(json.dumps(out, ensure_ascii=False, allow_nan=False))
        if "error" in out:
            failed += 1
        if reason:
            click.echo(f"line {lineno}: {out.get('mac') or '-'}: {reason}", err=True)
    if lines and failed == lines:
        click.echo(f"no line of {lines} decoded", err=True)
        return 1
    return 0


@decode.command("ble")
@click.option(
    "--bindkey",
    "bindkeys",
    multiple=True,
    metavar="MAC=HEX",
    help="Bind key for one device (24 or 32 hex characters); repeatable.",
)
@click.option("--no-config", is_flag=True, help="Do not read keys from the config file.")
@pass_ctx
def decode_ble(ctx: CliContext, bindkeys: tuple[str, ...], no_config: bool) -> int:
    """Decode BLE adverts given as JSON lines on stdin; one JSON line out per line in."""
    return run_decode(sys.stdin, _keys(ctx, bindkeys, not no_config))


# --- sniff -----------------------------------------------------------------------------------


def _format(adv: Advertisement, text: str, raw: bool) -> str:
    clock = time.strftime("%H:%M:%S")
    rssi = f"{adv.rssi:4d}" if adv.rssi is not None else "   ?"
    line = f"{clock} {adv.address} {rssi} dBm  {text}"
    if raw:
        line += "  " + " ".join(f"{u[4:8]}={d.hex()}" for u, d in adv.service_data.items())
    return line


class SniffPrinter:
    """Prints decoded adverts (each frame once) and, with ``show_all``, everything else."""

    def __init__(self, keys: Mapping[str, BindKey], raw: bool, show_all: bool) -> None:
        self._keys = keys
        self._raw = raw
        self._all = show_all
        self._dedup = Deduplicator(window_s=60.0)
        self.lines = 0

    def __call__(self, adv: Advertisement) -> None:
        outcomes = decode_advertisement(adv, self._keys)
        shown = False
        for outcome in outcomes:
            if isinstance(outcome, Decoded):
                if self._dedup.is_duplicate(outcome, adv.time) and not self._all:
                    continue
                values = " ".join(f"{k}={v}" for k, v in outcome.values.items())
                events = " ".join(
                    f"[{e.event} {e.action}{'' if e.button is None else f' {e.button}'}]"
                    for e in outcome.events
                )
                body = " ".join(part for part in (values, events) if part)
                text = f"{outcome.format.value} {outcome.model}: {body}".rstrip()
            else:
                if not self._all and outcome.reason is FailReason.MALFORMED:
                    continue
                text = f"{outcome.format.value if outcome.format else '?'} "
                text += f"{outcome.model or '?'}: {outcome.reason.value} ({outcome.detail})"
            self._emit(_format(adv, text, self._raw))
            shown = True
        if not shown and self._all and not outcomes:
            name = adv.local_name or ""
            self._emit(_format(adv, f"(not decoded) {name}".rstrip(), self._raw))

    def _emit(self, line: str) -> None:
        self.lines += 1
        click.echo(line)


class SniffFailed(Exception):
    """Scanning could not start (no adapter, no bluetoothd, no permission ...)."""


#: What to check when scanning cannot start at all.
SNIFF_HINT = (
    "check that a Bluetooth adapter is present and up (`ls /sys/class/bluetooth`, "
    "`rfkill list`), that bluetoothd is running, and that this user may use BlueZ over "
    "D-Bus; `migw doctor` checks all three"
)


async def run_sniff(
    factory: ScannerFactory,
    printer: SniffPrinter,
    duration: float | None,
    *,
    adapter: str = "",
) -> None:
    """Scan until ``duration`` ends (or forever). A scanner that never started raises
    :class:`SniffFailed`; a fault after it ran is reported on stderr and retried."""
    started = False
    failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_state(status: SupervisorStatus) -> None:
        nonlocal started
        if status.state is State.RUNNING:
            started = True
        elif status.state in (State.BACKOFF, State.FAILED) and status.reason:
            if not started:
                if not failed.done():
                    failed.set_result(status.reason)
            else:
                click.echo(f"BLE scanner fault, restarting: {status.reason}", err=True)

    scanner = BleScanner(factory)
    scanner.subscribe(printer)
    sup = supervise(scanner, name="BLE sniffer", on_state=on_state)
    task = asyncio.create_task(sup.run(), name="ble-sniff")
    try:
        async with asyncio.timeout(duration):
            done, _ = await asyncio.wait((task, failed), return_when=asyncio.FIRST_COMPLETED)
            if failed in done:
                on = f" on {adapter}" if adapter else ""
                raise SniffFailed(f"cannot scan{on}: {failed.result()}")
            await task
    except TimeoutError:
        pass
    finally:
        await cancel_and_wait(task)


@sniff.command("ble")
@click.option("--raw", is_flag=True, help="Also print the service data bytes.")
@click.option("--all", "show_all", is_flag=True, help="Show every advert: repeats, foreign, bad.")
@click.option("--adapter", default=None, help="Bluetooth adapter (default: config, hci0).")
@click.option("--active", is_flag=True, help="Active scanning (default: passive when possible).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option(
    "--bindkey", "bindkeys", multiple=True, metavar="MAC=HEX", help="Bind key; repeatable."
)
@click.option("--no-config", is_flag=True, help="Do not read keys from the config file.")
@click.option("--replay", type=click.Path(path_type=Path, dir_okay=False), hidden=True)
@click.option("--replay-rate", type=float, default=1000.0, hidden=True)
@pass_ctx
def sniff_ble(
    ctx: CliContext,
    raw: bool,
    show_all: bool,
    adapter: str | None,
    active: bool,
    duration: float | None,
    bindkeys: tuple[str, ...],
    no_config: bool,
    replay: Path | None,
    replay_rate: float,
) -> int:
    """Live decoded BLE adverts with RSSI (Ctrl-C to stop)."""
    keys = _keys(ctx, bindkeys, not no_config)
    factory: ScannerFactory
    adapter_name = ""
    if replay is not None:  # test and demo seam: the hw_mocks replay scanner
        from hw_mocks.ble import replay_factory

        factory = replay_factory(replay, rate=replay_rate)
    else:
        cfg_adapter = "hci0"
        if not no_config:
            with contextlib.suppress(ConfigError):
                cfg_adapter = ctx.load_config().ble.adapter
        adapter_name = adapter or cfg_adapter
        factory = bleak_factory(adapter_name, passive=not active)
    printer = SniffPrinter(keys, raw, show_all)
    try:
        asyncio.run(run_sniff(factory, printer, duration, adapter=adapter_name))
    except KeyboardInterrupt:
        return 130
    except SniffFailed as exc:
        click.echo(f"migw sniff ble: {exc}\n  {SNIFF_HINT}", err=True)
        return 1
    return 0
