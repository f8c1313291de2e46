"""Every `migw` command of the README, exactly as printed, from a fresh login shell in a
second process beside a running demo (issue 15): see tests/readme_harness.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: A new Debian user's ~/.profile puts ~/.local/bin on the PATH when it exists.
SKEL_PROFILE = Path("/etc/skel/.profile")


def readme_commands() -> list[tuple[str, bool]]:
    """``(command, follows until Ctrl-C)`` for each `migw` line of the README's console
    blocks, with its trailing comment removed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        for raw in block.splitlines():
            line = raw.strip()
            if not line.startswith("migw "):
                continue
            command = re.sub(r"\s+#\s.*$", "", line)
            out.append((command, "Ctrl-C stops" in line))
    return out


def test_the_readme_lists_runnable_commands() -> None:
    commands = [c for c, _ in readme_commands()]
    assert "migw status" in commands and "migw doctor" in commands
    assert not [c for c in commands if "[" in c or "<" in c.replace(" < ", " ")], commands


@pytest.mark.timeout(400)
def test_every_readme_command_works_as_printed_beside_the_demo(tmp_path: Path) -> None:
    for tool in ("unshare", "ip", "bash", "make"):
        found = shutil.which(tool) or Path("/usr/sbin", tool).exists()
        assert found, f"{tool} is needed (util-linux, iproute2, bash, make: tools/system-deps.sh)"
    home = tmp_path / "home"
    home.mkdir()
    if SKEL_PROFILE.exists():
        shutil.copy(SKEL_PROFILE, home / ".profile")
    else:  # the lines of Debian's /etc/skel/.profile that matter here
        (home / ".profile").write_text(
            'if [ -d "$HOME/.local/bin" ] ; then\n    PATH="$HOME/.local/bin:$PATH"\nfi\n'
        )
    commands = readme_commands()
    proc = subprocess.run(
        [
            "unshare",
            "-rn",
            sys.executable,
            str(ROOT / "tests" / "readme_harness.py"),
            str(home),
            json.dumps(commands),
        ],
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["install_cli"]["code"] == 0
    assert f"linked {home}/.local/bin/migw" in report["install_cli"]["stdout"]
    log = report["demo_log"]
    assert "from another terminal: `migw status`" in log, log[-3000:]
    assert f"token in {home}/.cache/migw/demo/api-token" in log

    results: dict[str, dict[str, Any]] = {r["command"]: r for r in report["commands"]}
    assert list(results) == [c for c, _ in commands]
    for (command, following), r in zip(commands, report["commands"], strict=True):
        where = f"{command}: {r['stdout'][-1500:]}\n{r['stderr'][-1500:]}"
        assert "Traceback" not in r["stderr"] and "not found" not in r["stderr"], where
        if following:
            assert r["interrupted"] and r["code"] == 130, where
            assert r["stdout"].strip(), where  # it showed something before Ctrl-C
        else:
            assert r["code"] == 0, where

    assert "service    running (demo), ok" in results["migw status"]["stdout"]
    devices = results["migw devices"]["stdout"]
    for dev in ("ble-a4c138d00000", "gpio-hall-relay", "zb-00158d000fa93402"):
        assert dev in devices.split()
    assert "temperature" in results["migw device ble-a4c138d00000"]["stdout"]
    assert "ble-a4c138d00000" in results["migw tail --device ble-a4c138d00000"]["stdout"]
    assert "gpio-hall-relay: toggle ok" in results["migw send gpio-hall-relay toggle"]["stdout"]
    named = results['migw name gpio-hall-relay "Hall light" --room hall']["stdout"]
    assert named == "gpio-hall-relay is now Hall light in hall\n"
    assert "open for 120 s" in results["migw zigbee permit-join 120"]["stdout"]
    decoded = results["migw decode ble < docs/examples/adverts.jsonl"]["stdout"].splitlines()
    assert [json.loads(x)["format"] for x in decoded] == [
        "mibeacon",
        "hhccjcy10",
        "xiaomi_scale_v1",
        "xiaomi_scale_v2",
    ]
    assert ", 0 failed," in results["migw doctor"]["stdout"]

    # plaintext MQTT to a LAN broker: refused as `config check` says, allowed by the flag
    secure, insecure = report["secure"], report["insecure"]
    reasons = " ".join(secure["service"]["reasons"])
    assert "refusing plaintext MQTT to mqtt://10.0.0.5:1883" in reasons, secure
    assert "refusing plaintext" not in " ".join(insecure["service"]["reasons"]), insecure
