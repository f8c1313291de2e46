"""tools/install.sh and tools/uninstall.sh (``make install`` / ``make uninstall``) into a
temporary root (DESTDIR): every file placed with its mode and owner, a second run changes
nothing, the config is never overwritten, uninstall keeps the data unless PURGE=1."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, copy_shipped

# --no-deps: the runtime dependencies are not what this test is about (and would take
# minutes); pip still builds and installs migw itself into the venv.
ENV = {"MIGW_PIP_ARGS": "--no-deps"}
VENV = "opt/migw"
IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # "d", "f", "l"
    mode: int
    user: str
    group: str
    target: str = ""


def d(mode: int, user: str = "root", group: str = "root") -> Entry:
    return Entry("d", mode, user, group)


def f(mode: int, user: str = "root", group: str = "root") -> Entry:
    return Entry("f", mode, user, group)


#: Everything the installer places outside the venv (sysusers writes the account files).
EXPECTED = {
    "etc": d(0o755),
    "etc/.pwd.lock": f(0o600),
    "etc/passwd": f(0o644),
    "etc/group": f(0o644),
    "etc/shadow": f(0o000),
    "etc/gshadow": f(0o000),
    "etc/sysusers.d": d(0o755),
    "etc/sysusers.d/migw.conf": f(0o644),
    "etc/systemd": d(0o755),
    "etc/systemd/system": d(0o755),
    "etc/systemd/system/migw.service": f(0o644),
    "etc/systemd/system/multi-user.target.wants": d(0o755),
    "etc/systemd/system/multi-user.target.wants/migw.service": Entry(
        "l", 0o777, "root", "root", "/etc/systemd/system/migw.service"
    ),
    "etc/dbus-1": d(0o755),
    "etc/dbus-1/system.d": d(0o755),
    "etc/dbus-1/system.d/migw.conf": f(0o644),
    "etc/migw": d(0o750, "root", "migw"),
    "etc/migw/config.toml": f(0o640, "root", "migw"),
    "etc/migw/config.example.toml": f(0o640, "root", "migw"),
    "opt": d(0o755),
    VENV: d(0o755),
    "var": d(0o755),
    "var/lib": d(0o755),
    "var/lib/migw": d(0o750, "migw", "migw"),
}
SAME_AS_SOURCE = {
    "etc/sysusers.d/migw.conf": "systemd/sysusers.d/migw.conf",
    "etc/systemd/system/migw.service": "systemd/migw.service",
    "etc/dbus-1/system.d/migw.conf": "systemd/dbus/migw.conf",
    "etc/migw/config.toml": "config.example.toml",
    "etc/migw/config.example.toml": "config.example.toml",
    f"{VENV}/share/doc/migw/operations.md": "docs/operations.md",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the shipped files (the working tree may change under the test)."""
    return copy_shipped(tmp_path_factory.mktemp("src"))


def run(script: str, source: Path, root: Path, **env: str) -> str:
    proc = subprocess.run(
        ["sh", str(source / "tools" / script)],
        env={**os.environ, **ENV, "DESTDIR": str(root), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def installed(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    run("install.sh", source, root)
    return root


def ids(root: Path, table: str) -> dict[str, int]:
    out = {"root": 0}
    for line in (root / "etc" / table).read_text().splitlines():
        fields = line.split(":")
        out[fields[0]] = int(fields[2])
    return out


def entry(path: Path, users: dict[str, int], groups: dict[str, int]) -> Entry:
    st = path.lstat()
    kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
    user = next((n for n, i in users.items() if i == st.st_uid), str(st.st_uid))
    group = next((n for n, i in groups.items() if i == st.st_gid), str(st.st_gid))
    target = os.readlink(path) if kind == "l" else ""
    return Entry(kind, stat.S_IMODE(st.st_mode), user, group, target)


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, int, str]]:
    """Every path with mode, owner, size, mtime and content digest (or link target)."""
    snap: dict[str, tuple[int, int, int, int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            digest = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = ""
        snap[str(path.relative_to(root))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            digest,
        )
    return snap


def test_every_placed_file_has_its_mode_and_owner(installed: Path) -> None:
    users, groups = ids(installed, "passwd"), ids(installed, "group")
    outside_venv = {
        str(p.relative_to(installed)): entry(p, users, groups)
        for p in installed.rglob("*")
        if not str(p.relative_to(installed)).startswith(f"{VENV}/")
    }
    if not IS_ROOT:  # without root nothing can be chowned: everything is ours
        me = entry(installed, users, groups)
        expected = {
            k: Entry(v.kind, v.mode, me.user, me.group, v.target) for k, v in EXPECTED.items()
        }
    else:
        expected = EXPECTED
    assert outside_venv == expected


def test_the_venv_is_root_owned_and_not_writable_by_others(installed: Path) -> None:
    venv = installed / VENV
    loose = []
    for path in [venv, *venv.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or (IS_ROOT and st.st_uid != 0):
            loose.append(str(path.relative_to(installed)))
    assert loose == []
    users, groups = ids(installed, "passwd"), ids(installed, "group")
    owner = "root" if IS_ROOT else entry(installed, users, groups).user
    assert entry(venv / "bin" / "migw", users, groups) == Entry("f", 0o755, owner, owner)
    assert entry(venv / "share/doc/migw/operations.md", users, groups) == Entry(
        "f", 0o644, owner, owner
    )
    # migw itself is importable from the venv (its runtime dependencies were skipped)
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import gateway.systemd, drivers, hw_mocks"],
        check=True,
        timeout=60,
    )


def test_installed_files_are_the_shipped_ones(installed: Path, source: Path) -> None:
    different = [
        dst
        for dst, src in SAME_AS_SOURCE.items()
        if (installed / dst).read_bytes() != (source / src).read_bytes()
    ]
    assert different == []


def test_user_is_a_system_user_in_the_device_groups(installed: Path) -> None:
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (installed / "etc" / "passwd").read_text().splitlines()
    }
    assert passwd["migw"][5:] == ["/var/lib/migw", "/usr/sbin/nologin"]
    members = {
        line.split(":")[0]: line.split(":")[3]
        for line in (installed / "etc" / "group").read_text().splitlines()
    }
    assert {g: members[g] for g in ("dialout", "gpio", "bluetooth")} == {
        "dialout": "migw",
        "gpio": "migw",
        "bluetooth": "migw",
    }


def test_installed_unit_verifies_against_the_installed_venv(
    installed: Path, tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: install systemd")
    unit = (installed / "etc/systemd/system/migw.service").read_text()
    exec_start = "/opt/migw/bin/migw"
    assert unit.count(exec_start) == 1
    copy = tmp_path / "migw.service"
    copy.write_text(unit.replace(exec_start, str(installed / exec_start.lstrip("/"))))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_second_run_changes_nothing_and_keeps_an_edited_config(
    installed: Path, source: Path
) -> None:
    config = installed / "etc/migw/config.toml"
    config.write_text('[gateway]\nlog_level = "DEBUG"\n')
    before = snapshot(installed)
    out = run("install.sh", source, installed)
    assert snapshot(installed) == before
    assert "installed " not in out
    assert "installing migw" not in out
    assert "kept the existing /etc/migw/config.toml" in out
    assert config.read_text() == '[gateway]\nlog_level = "DEBUG"\n'


def test_uninstall_keeps_data_unless_purged(installed: Path, source: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    state = root / "var/lib/migw/state.db"
    state.write_bytes(b"data")

    run("uninstall.sh", source, root)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert left == [
        "etc",
        "etc/.pwd.lock",
        "etc/dbus-1",
        "etc/dbus-1/system.d",
        "etc/group",
        "etc/gshadow",
        "etc/migw",
        "etc/migw/config.example.toml",
        "etc/migw/config.toml",
        "etc/passwd",
        "etc/shadow",
        "etc/systemd",
        "etc/systemd/system",
        "etc/sysusers.d",
        "opt",
        "var",
        "var/lib",
        "var/lib/migw",
        "var/lib/migw/state.db",
    ]
    assert "migw:" in (root / "etc/passwd").read_text()
    # idempotent
    run("uninstall.sh", source, root)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == left

    run("uninstall.sh", source, root, PURGE="1")
    assert not (root / "etc/migw").exists()
    assert not (root / "var/lib/migw").exists()
    assert "migw" not in {
        line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()
    }
    assert "migw" not in {
        line.split(":")[0] for line in (root / "etc/group").read_text().splitlines()
    }


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(
        [shellcheck, "-s", "sh", str(ROOT / "tools/install.sh"), str(ROOT / "tools/uninstall.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
