"""tools/install.sh on the live-system path (no DESTDIR), inside a private mount namespace
whose /etc, /opt and /var are throw-away overlays: the real user creation with
``systemd-sysusers``, the real ``systemctl enable``, and nothing of it reaches the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.helpers import copy_shipped

SCRIPT = textwrap.dedent("""\
    set -eu
    T=$1
    SRC=$2
    for d in etc opt var; do
        mkdir -p "$T/up/$d" "$T/work/$d"
        mount -t overlay overlay \\
            -o "lowerdir=/$d,upperdir=$T/up/$d,workdir=$T/work/$d" "/$d"
        # never touch the host: stop unless /$d really is the throw-away overlay now
        [ "$(findmnt -n -o FSTYPE "/$d")" = overlay ] || exit 97
    done
    echo "=== first"
    MIGW_PIP_ARGS=--no-deps sh "$SRC/tools/install.sh"
    echo "=== second"
    MIGW_PIP_ARGS=--no-deps sh "$SRC/tools/install.sh"
    echo "=== facts"
    id -nG migw
    getent passwd migw | cut -d: -f6,7
    stat -c '%n %a %U:%G' /etc/migw /etc/migw/config.toml /var/lib/migw \\
        /etc/systemd/system/migw.service /etc/dbus-1/system.d/migw.conf /opt/migw/bin/migw
    readlink /etc/systemd/system/multi-user.target.wants/migw.service
    """)


def _can_overlay(tmp_path: Path) -> str | None:
    if os.geteuid() != 0:
        return "needs root for a mount namespace"
    if shutil.which("unshare") is None or shutil.which("findmnt") is None:
        return "needs unshare and findmnt (util-linux)"
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mkdir -p {tmp_path}/pu {tmp_path}/pw && mount -t overlay overlay -o "
            f"lowerdir=/opt,upperdir={tmp_path}/pu,workdir={tmp_path}/pw /opt",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"overlay mounts are not allowed here: {probe.stderr.strip()}"
    return None


def test_live_install_in_a_throwaway_namespace(tmp_path: Path) -> None:
    reason = _can_overlay(tmp_path / "probe")
    if reason is not None:
        pytest.skip(reason)
    src = copy_shipped(tmp_path / "src")
    host_before = _host_state()
    script = tmp_path / "live.sh"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "PURGE")}
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            str(script),
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    first = out.split("=== first\n")[1].split("=== second\n")[0]
    second, facts = out.split("=== second\n")[1].split("=== facts\n")
    assert "installed /etc/systemd/system/migw.service" in first
    assert "installed /etc/migw/config.toml" in first
    # no systemd in a test environment: enabled for the next boot, nothing started
    assert "systemd is not running here: enabled migw.service for the next boot" in first
    assert second.splitlines() == [
        "migw install: kept the existing /etc/migw/config.toml",
        "migw install: systemd is not running here: enabled migw.service for the next boot",
    ]
    lines = facts.splitlines()
    assert sorted(lines[0].split()) == ["bluetooth", "dialout", "gpio", "migw"]
    assert lines[1] == "/var/lib/migw:/usr/sbin/nologin"
    assert lines[2:] == [
        "/etc/migw 750 root:migw",
        "/etc/migw/config.toml 640 root:migw",
        "/var/lib/migw 750 migw:migw",
        "/etc/systemd/system/migw.service 644 root:root",
        "/etc/dbus-1/system.d/migw.conf 644 root:root",
        "/opt/migw/bin/migw 755 root:root",
        "/etc/systemd/system/migw.service",
    ]
    # the host saw none of it
    assert _host_state() == host_before


def _host_state() -> tuple[bool, bool, bool]:
    return (
        Path("/etc/systemd/system/migw.service").exists(),
        Path("/opt/migw").exists(),
        any(line.startswith("migw:") for line in Path("/etc/passwd").read_text().splitlines()),
    )
