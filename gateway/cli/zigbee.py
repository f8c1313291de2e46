"""``migw decode znp`` and ``migw zigbee backup|restore|devices``.

``decode znp`` reads hex MT frames from stdin, one per line, or with ``--stream`` a raw
capture (binary, or hex text) that is cut into frames like the driver does; it writes one
JSON line per frame (schema in docs/zigbee.md). ``zigbee backup`` goes through the running
service (``POST /api/v1/zigbee/backup``: the service owns the stick) and copies the file it
wrote; with the service stopped it talks to the stick at the configured port itself.
``zigbee restore`` always talks to the stick (stop the service first). ``zigbee devices``
lists the device table the running service uses (its path comes from the service's radio
info), or the persisted one when the service is down. ``zigbee permit-join`` lives in
gateway.cli.ops (it needs the running service).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import click

from drivers.errors import DriverError, ParseError
from drivers.zigbee.coordinator import (
    BACKUP_FILE,
    Coordinator,
    CoordinatorConfig,
    write_secret_json,
)
from drivers.zigbee.devices import load_table
from drivers.zigbee.inspect import FrameDescriber, parse_hex_line
from drivers.zigbee.znp import frames
from gateway.cli.base import CliContext, decode, json_option, pass_ctx, zigbee
from gateway.cli.client import ApiClient, ApiFailure, ServiceDown, Target, resolve
from gateway.config import Config
from gateway.errors import ConfigError

#: Seconds a backup or restore may take against the stick.
STICK_TIMEOUT_S = 120.0


def _emit(obj: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def decode_lines(inp: TextIO, out: TextIO, err: TextIO, model: str | None) -> tuple[int, int]:
    """Hex frames, one per line -> JSON lines. Returns (frames, errors)."""
    describer = FrameDescriber(model)
    n = bad = 0
    for lineno, line in enumerate(inp, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            frame = frames.decode(parse_hex_line(line))
        except ParseError as exc:
            bad += 1
            _emit({"line": lineno, "error": str(exc)}, out)
            err.write(f"line {lineno}: {exc}\n")
            continue
        n += 1
        _emit(_describe(describer, frame), out)
    return n, bad


def _describe(describer: FrameDescriber, frame: frames.Frame) -> dict[str, Any]:
    """One frame's JSON; a frame the describer chokes on is an error line, never the end."""
    try:
        return describer.describe(frame)
    except (ParseError, ArithmeticError, ValueError) as exc:
        return {"error": f"cannot describe the frame: {type(exc).__name__}: {exc}"}


def decode_stream(raw: bytes, out: TextIO, err: TextIO, model: str | None) -> tuple[int, int]:
    """A raw capture (bytes, or the same as hex text) -> JSON lines. Returns (frames, bad)."""
    text = raw.strip()
    if text and all(ch in b"0123456789abcdefABCDEF \t\r\n:" for ch in text):
        digits = "".join(text.decode().replace(":", "").split())
        if len(digits) % 2:
            raise ParseError(f"not a hex capture: {len(digits)} hex digits (odd)")
        raw = bytes.fromhex(digits)
    framer = frames.Framer()
    describer = FrameDescriber(model)
    n = 0
    for frame in framer.feed(raw):
        n += 1
        _emit(_describe(describer, frame), out)
    if framer.pending:
        err.write(f"{framer.pending} bytes of an incomplete frame at the end\n")
    if framer.bad_frames or framer.garbage_bytes:
        err.write(
            f"{framer.bad_frames} malformed frames dropped, {framer.garbage_bytes} bytes "
            "outside frames skipped\n"
        )
    return n, framer.bad_frames


@decode.command("znp")
@click.option("--stream", is_flag=True, help="Input is a raw capture, not one frame per line.")
@click.option("--model", help="Model of the sender(s) when the capture has no Basic report.")
def decode_znp(stream: bool, model: str | None) -> int:
    """Decode Z-Stack MT frames (hex lines on stdin) into JSON lines."""
    if stream:
        binary: BinaryIO = sys.stdin.buffer
        try:
            decode_stream(binary.read(), sys.stdout, sys.stderr, model)
        except ParseError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
        return 0
    _, bad = decode_lines(sys.stdin, sys.stdout, sys.stderr, model)
    return 1 if bad else 0


def _config(ctx: CliContext) -> Config:
    try:
        return ctx.load_config()
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


def _coordinator(cfg: Config) -> Coordinator:
    z = cfg.zigbee
    if not z.port:
        raise click.ClickException("zigbee.port is not set in the config")
    return Coordinator(
        CoordinatorConfig(
            port=z.port,
            baudrate=z.baud,
            rtscts=z.rtscts,
            channel=z.channel,
            skip_bootloader=z.skip_bootloader,
            state_dir=cfg.gateway.state_dir,
        )
    )


def _stick_error(exc: Exception, cfg: Config) -> click.ClickException:
    auto = cfg.gateway.state_dir / BACKUP_FILE
    return click.ClickException(
        f"{exc} (if the migw service is running it holds the port: stop it first; "
        f"it writes an automatic backup to {auto})"
    )


def _target(ctx: CliContext) -> Target:
    try:
        return resolve(ctx)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


async def _ask_service(target: Target, method: str, path: str) -> Any:
    async with ApiClient(target) as api:
        return await api.request(method, path)


def _backup_via_service(target: Target) -> dict[str, Any] | None:
    """The running service's backup (the file it wrote, read back); None when it is down."""
    slow = dataclasses.replace(target, request_timeout=STICK_TIMEOUT_S)
    try:
        answer = asyncio.run(_ask_service(slow, "POST", "/api/v1/zigbee/backup"))
    except ServiceDown:
        return None
    except ApiFailure as exc:
        raise click.ClickException(f"the running service could not back up: {exc}") from None
    src = Path(str(answer["path"]))
    try:
        doc: dict[str, Any] = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(
            f"the service wrote the backup to {src}, but it cannot be read here ({exc}): "
            "copy it as the service's user (it holds the network key)"
        ) from None
    return doc


@zigbee.command("backup")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
def backup_cmd(ctx: CliContext, file: Path) -> int:
    """Save the network (open coordinator backup JSON, as zigbee2mqtt and ZHA write it)."""
    cfg = _config(ctx)
    doc = _backup_via_service(_target(ctx))
    if doc is not None:
        write_secret_json(file, doc)
        click.echo(
            f"backup of PAN 0x{doc['pan_id']} channel {doc['channel']} "
            f"({len(doc['devices'])} devices) made by the running service, written to {file} "
            "(mode 0600: it holds the network key)"
        )
        return 0
    coord = _coordinator(cfg)

    async def go() -> dict[str, Any]:
        async with asyncio.timeout(STICK_TIMEOUT_S), coord.session(start=True) as session:
            return await session.backup()

    try:
        doc = asyncio.run(go())
    except (DriverError, TimeoutError, OSError) as exc:
        raise _stick_error(exc, cfg) from None
    write_secret_json(file, doc)
    click.echo(
        f"backup of PAN 0x{doc['pan_id']} channel {doc['channel']} "
        f"({len(doc['devices'])} devices) written to {file} (mode 0600: it holds the network key)"
    )
    return 0


@zigbee.command("restore")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def restore_cmd(ctx: CliContext, file: Path, yes: bool) -> int:
    """Write a backup's network onto the stick (from zigbee2mqtt, ZHA or migw)."""
    cfg = _config(ctx)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    if not yes:
        click.confirm(
            f"Replace the network on the stick at {cfg.zigbee.port} with the one in {file}?",
            abort=True,
        )
    coord = _coordinator(cfg)

    async def go() -> None:
        async with asyncio.timeout(STICK_TIMEOUT_S), coord.session(start=False) as session:
            await session.restore(doc)

    try:
        asyncio.run(go())
    except (DriverError, TimeoutError, OSError) as exc:
        raise _stick_error(exc, cfg) from None
    info = coord.info
    click.echo(
        f"restored: PAN 0x{info.pan_id or 0:04X}, channel {info.channel}, "
        f"extended PAN {info.extended_pan_id}"
    )
    return 0


def _table_dir(target: Target) -> Path:
    """Where the device table is: the running service says (``device_table`` in its zigbee
    radio's info); without it, the state dir's."""
    try:
        radios = asyncio.run(_ask_service(target, "GET", "/api/v1/radios"))
    except (ServiceDown, ApiFailure):
        return target.state_dir
    for radio in radios.get("radios", []):
        table = radio.get("info", {}).get("device_table") if radio.get("name") == "zigbee" else None
        if table:
            return Path(str(table)).parent
    return target.state_dir


@zigbee.command("devices")
@json_option
@pass_ctx
def devices_cmd(ctx: CliContext, as_json: bool) -> int:
    """List the devices of the persisted Zigbee device table."""
    directory = _table_dir(_target(ctx))
    records = load_table(directory)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in records]))
        return 0
    if not records:
        click.echo(f"no zigbee devices in {directory}")
        return 0
    now = time.time()
    click.echo(f"{'device':<20} {'nwk':<6} {'model':<26} {'lqi':>4}  last seen")
    for r in records:
        seen = "-" if r.last_seen is None else f"{int(now - r.last_seen)} s ago"
        click.echo(
            f"zb-{r.ieee:<17} {r.nwk:04x}   {(r.model or '?'):<26} "
            f"{'-' if r.lqi is None else r.lqi:>4}  {seen}"
        )
    return 0
