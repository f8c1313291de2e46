"""Run the README's `migw` commands as a newcomer would, beside a running `make demo`.

Started by tests/test_cli_readme.py inside a fresh network namespace (its own loopback, so
the demo's fixed port 8380 is free), with HOME a new user's home: ``make install-cli``
(what ``make demo`` does first) links ``migw`` into ``~/.local/bin``, the demo is
``.venv/bin/migw run --demo`` (what ``make demo`` runs), and each command runs in a second
process, a fresh login shell (``bash -lc``) in the repository. Prints one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Commands that follow something until Ctrl-C: interrupted once they have shown output.
FOLLOWING_S = 30.0
COMMAND_TIMEOUT_S = 90.0


def login_env(home: Path) -> dict[str, str]:
    """What a new login shell starts from: no virtualenv, no inherited PATH tweaks."""
    return {
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "PATH": "/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",  # line by line, as on a terminal
    }


def wait_health(demo: subprocess.Popen[str], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                return
        except OSError:
            if demo.poll() is not None:
                out = demo.stdout.read() if demo.stdout else ""
                raise SystemExit(f"the demo exited ({demo.returncode}):\n{out[-3000:]}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_shell(command: str, env: dict[str, str], *, following: bool) -> dict[str, Any]:
    proc = subprocess.Popen(
        ["bash", "-lc", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    interrupted = False
    first = ""
    try:
        if following:
            # Ctrl-C once it has shown a line (or after FOLLOWING_S)
            stdout = proc.stdout
            assert stdout is not None
            got: queue.Queue[str] = queue.Queue()
            threading.Thread(target=lambda: got.put(stdout.readline()), daemon=True).start()
            with contextlib.suppress(queue.Empty):
                first = got.get(timeout=FOLLOWING_S)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
                interrupted = True
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT_S)
        out = first + out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return {"command": command, "code": None, "stdout": out, "stderr": err + "\nTIMEOUT"}
    return {
        "command": command,
        "code": proc.returncode,
        "interrupted": interrupted,
        "stdout": out,
        "stderr": err,
    }


def start_demo(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    line = " ".join([".venv/bin/migw", "run", "--demo", *args])
    return subprocess.Popen(
        ["bash", "-lc", f"exec {line}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def status_json(env: dict[str, str]) -> Any:
    got = run_shell("migw status --json", env, following=False)
    return json.loads(got["stdout"]) if got["stdout"].strip().startswith("{") else got


def main() -> None:
    home = Path(sys.argv[1])
    commands: list[tuple[str, bool]] = json.loads(sys.argv[2])
    ip = shutil.which("ip") or "/usr/sbin/ip"
    subprocess.run([ip, "link", "set", "lo", "up"], check=True)
    env = login_env(home)
    report: dict[str, Any] = {}
    # what `make demo` does before it starts the service (the stamp is up to date here)
    install = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "install-cli"],
        cwd=ROOT,
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    report["install_cli"] = {"code": install.returncode, "stdout": install.stdout}
    demo = start_demo(env)
    try:
        wait_health(demo, 8380, 120)
        time.sleep(3)  # the simulated sensors' first adverts
        report["commands"] = [run_shell(c, env, following=f) for c, f in commands]
    finally:
        report["demo_log"] = stop(demo)[:20000]
    # --allow-insecure: a LAN broker over plaintext, refused without it as `config check` says
    upstream = ["--no-zigbee", "--ble-devices", "0", "--upstream", "mqtt://10.0.0.5:1883"]
    for flag in ((), ("--allow-insecure",)):
        demo = start_demo(env, *upstream, *flag)
        try:
            wait_health(demo, 8380, 120)
            time.sleep(1.5)
            report["insecure" if flag else "secure"] = status_json(env)
        finally:
            stop(demo)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
