"""The shipped systemd unit, sysusers.d entry and D-Bus policy, checked by the real tools."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "migw.service"
SYSUSERS = ROOT / "systemd" / "sysusers.d" / "migw.conf"
DBUS_POLICY = ROOT / "systemd" / "dbus" / "migw.conf"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
MAX_EXPOSURE = 2.0
EXEC_START = "/opt/migw/bin/migw"


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat)."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_settings(UNIT.read_text()) if s == section and k == key]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if not os.access(SYSTEMD_ANALYZE, os.X_OK):
        pytest.fail("systemd-analyze is missing: install systemd (tools/system-deps.sh)")
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_unit_declares_the_required_service_contract() -> None:
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": [f"{EXEC_START} --config /etc/migw/config.toml run"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "WatchdogSec": ["30"],
        "Restart": ["on-failure"],
        "User": ["migw"],
        "Group": ["migw"],
        "SupplementaryGroups": ["dialout gpio bluetooth"],
        "StateDirectory": ["migw"],
        "ConfigurationDirectory": ["migw"],
        "RuntimeDirectory": ["migw"],
        "StandardOutput": ["journal"],
        "StandardError": ["journal"],
        "DevicePolicy": ["closed"],
        "DeviceAllow": [
            "char-ttyUSB rw",
            "char-ttyACM rw",
            "char-ttyAMA rw",
            "char-gpiochip rw",
        ],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "AmbientCapabilities": [""],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_BLUETOOTH"],
        "SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "MemoryMax": ["256M"],
        "Environment": ["PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONFAULTHANDLER=1"],
    }
    actual = {key: values(key) for key in expected}
    assert actual == expected
    # PrivateDevices would hide the radios: the device allow-list replaces it
    assert values("PrivateDevices") == []
    # gpiozero reads the Pi's revision from /proc/device-tree or /proc/cpuinfo
    assert values("ProcSubset") == []
    assert values("StartLimitBurst", "Unit") == ["5"]
    assert values("StartLimitIntervalSec", "Unit") == ["600"]
    assert values("WantedBy", "Install") == ["multi-user.target"]


def test_security_exposure_is_at_most_2() -> None:
    proc = analyze("security", "--offline=true", str(UNIT))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match is not None, proc.stdout + proc.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, proc.stdout


def test_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` checks that ExecStart exists: verify a copy whose ExecStart
    points at a stand-in executable under a temporary root; nothing else is changed."""
    stand_in = tmp_path / EXEC_START.lstrip("/")
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(EXEC_START) == 1
    copy = tmp_path / "migw.service"
    copy.write_text(text.replace(EXEC_START, str(stand_in)))
    proc = analyze("verify", "--man=no", str(copy))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == ""


def test_unit_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify check above can fail: a missing ExecStart binary is reported."""
    copy = tmp_path / "migw.service"
    copy.write_text(UNIT.read_text().replace(EXEC_START, str(tmp_path / "nope")))
    proc = analyze("verify", "--man=no", str(copy))
    assert proc.returncode != 0
    assert "is not executable" in proc.stderr


def test_sysusers_creates_the_user_in_its_groups(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.fail("systemd-sysusers is missing: install systemd")
    (tmp_path / "etc" / "sysusers.d").mkdir(parents=True)
    shutil.copy(SYSUSERS, tmp_path / "etc" / "sysusers.d" / "migw.conf")
    subprocess.run([sysusers, f"--root={tmp_path}"], check=True, capture_output=True, timeout=60)
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc" / "group").read_text().splitlines()
    }
    user = passwd["migw"]
    assert user[5:] == ["/var/lib/migw", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    assert groups["migw"][2] == user[3]
    members = {name: g[3].split(",") for name, g in groups.items() if g[3]}
    assert members == {"dialout": ["migw"], "gpio": ["migw"], "bluetooth": ["migw"]}


def test_dbus_policy_allows_the_service_user_to_reach_bluez_only() -> None:
    tree = ET.parse(DBUS_POLICY)
    root = tree.getroot()
    assert root.tag == "busconfig"
    policies = root.findall("policy")
    assert [p.attrib for p in policies] == [{"user": "migw"}]
    rules = [(r.tag, r.attrib) for r in policies[0]]
    assert rules == [
        ("allow", {"send_destination": "org.bluez"}),
        ("allow", {"receive_sender": "org.bluez"}),
    ]


def test_dbus_daemon_accepts_the_policy(tmp_path: Path) -> None:
    """A private dbus-daemon loads the policy file (a malformed file stops it)."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon is not installed (the policy XML is still checked above)")
    config = tmp_path / "bus.conf"
    config.write_text(
        textwrap.dedent(f"""\
        <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
         "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
        <busconfig>
          <type>custom</type>
          <listen>unix:path={tmp_path}/bus</listen>
          <auth>EXTERNAL</auth>
          <policy context="default"><allow user="*"/></policy>
          <include>{DBUS_POLICY}</include>
        </busconfig>
        """)
    )
    with subprocess.Popen(
        [daemon, f"--config-file={config}", "--nofork", "--nopidfile", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline()
        finally:
            proc.terminate()
            _, errors = proc.communicate(timeout=10)
    assert address.startswith(f"unix:path={tmp_path}/bus"), errors
