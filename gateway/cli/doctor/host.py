"""Doctor checks of the host: clock, disk space, state database, systemd unit."""

from __future__ import annotations

import calendar
import contextlib
import shutil
import time
from pathlib import Path

from gateway.cli.client import Target, human_bytes
from gateway.cli.doctor.base import (
    UNIT,
    Check,
    Checks,
    Doctor,
    Level,
    Named,
    exists,
    needs_config,
)
from gateway.clock import clock_synchronized
from gateway.errors import GatewayError
from gateway.store import open_readonly
from gateway.store.writer import META_DAMAGE

#: Free space below this fails; below the outbox limit warns.
DISK_MIN_BYTES = 100 * 1024 * 1024


SYSTEMD_RUN = Path("/run/systemd/system")

#: Damage the store found at a start within this many seconds is a warning (later: noted).
DAMAGE_RECENT_S = 7 * 24 * 3600.0


_DB_HINT = (
    "stop migw and start it again: a corrupt database is moved aside (state.db.corrupt-*) "
    "and a new one is created; the old file is kept for recovery"
)


CLOCK = Named("clock")
DISK = Named("disk space")
DATABASE = Named("state database")
SYSTEMD = Named("systemd unit")


async def check_clock(d: Doctor) -> Check:
    synced = bool(d.status["clock"]["synchronized"]) if d.status else clock_synchronized()
    if not synced:
        return CLOCK(
            Level.WARN,
            "the system clock is not synchronised: readings are re-stamped once it is",
            "timedatectl status; sudo timedatectl set-ntp true; allow UDP 123 to the NTP server",
        )
    return CLOCK(Level.PASS, f"synchronised ({time.strftime('%Y-%m-%d %H:%M:%S %Z')})")


@needs_config(DISK)
async def check_disk(_d: Doctor, target: Target) -> Check:
    where = target.state_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return DISK(Level.FAIL, f"{where}: {exc}", "check the mount")
    limit = target.config.upstream.outbox_max_bytes
    free = human_bytes(usage.free)
    if usage.free < DISK_MIN_BYTES:
        return DISK(
            Level.FAIL,
            f"only {free} free for {target.state_dir}",
            "free space (sudo journalctl --vacuum-size=50M; apt-get clean)",
        )
    if usage.free < limit:
        return DISK(
            Level.WARN,
            f"{free} free, less than the outbox limit {human_bytes(limit)}",
            "free space or lower upstream.outbox_max_bytes so an outage cannot fill the disk",
        )
    return DISK(Level.PASS, f"{free} free for {target.state_dir}")


@needs_config(DATABASE)
async def check_database(_d: Doctor, target: Target) -> Check:
    path = target.db_path
    if not path.exists():
        return DATABASE(
            Level.WARN,
            f"no state database at {path} yet",
            "the service creates it at its first start",
        )
    try:
        reader = await open_readonly(path)
    except GatewayError as exc:
        return DATABASE(Level.FAIL, str(exc), _DB_HINT)
    damage: str | None = None
    try:
        result = await reader.integrity_check()
        with contextlib.suppress(Exception):
            damage = await reader.meta_get(META_DAMAGE)
    except Exception as exc:  # noqa: BLE001 - sqlite errors on a broken file are findings
        result = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await reader.close()
    if result != "ok":
        return DATABASE(Level.FAIL, f"{path}: {result}", _DB_HINT)
    if damage:
        # "<UTC time> <what>; <what>": what the store found at a start (a lost or damaged
        # write-ahead log, a database behind the sequence reservation ...)
        stamp, _, what = damage.partition(" ")
        try:
            when: float = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            when = 0.0
        detail = f"{path}: integrity ok; at {stamp} the store found: {what}"
        if time.time() - when < DAMAGE_RECENT_S:
            return DATABASE(
                Level.WARN,
                detail,
                "readings committed just before that may be lost; sequence numbers continued "
                "above every number handed out; the damaged files are kept beside the "
                "database (*.damaged-*, *.corrupt-*); check the SD card and the power supply",
            )
        return DATABASE(Level.PASS, detail)
    return DATABASE(Level.PASS, f"{path}: integrity ok")


async def check_systemd(d: Doctor) -> Check:
    systemctl = shutil.which("systemctl")
    if systemctl is None or not exists(SYSTEMD_RUN):
        return SYSTEMD(Level.SKIP, "no systemd on this machine")
    out = await d.host.output(systemctl, "show", "-p", "LoadState,ActiveState,SubState", UNIT)
    props = dict(line.split("=", 1) for line in (out or "").splitlines() if "=" in line)
    if props.get("LoadState") in (None, "not-found"):
        return SYSTEMD(
            Level.WARN if d.running else Level.FAIL,
            f"{UNIT} is not installed",
            "sudo make install (installs and enables the unit)",
        )
    active = props.get("ActiveState", "unknown")
    if active == "active":
        return SYSTEMD(Level.PASS, f"{UNIT} active ({props.get('SubState')})")
    if d.running:
        return SYSTEMD(
            Level.WARN,
            f"{UNIT} is {active}, but a migw service answers (started by hand?)",
            f"stop the manual one and sudo systemctl enable --now {UNIT}",
        )
    return SYSTEMD(
        Level.FAIL,
        f"{UNIT} is {active}",
        f"sudo systemctl enable --now {UNIT}; journalctl -u migw -n 50 shows why it stopped",
    )


#: This module's checks in the order they run, each with its name.
CHECKS: Checks = (
    (CLOCK, check_clock),
    (DISK, check_disk),
    (DATABASE, check_database),
    (SYSTEMD, check_systemd),
)
