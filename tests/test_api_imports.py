"""The service serves its LAN API without aiohttp (issue 18: importing aiohttp.web cost
13.9 MB of the service's peak RSS); only the CLI, a separate process, uses aiohttp's client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: A service with its API on a loopback port, asked over HTTP and WebSocket: what did the
#: process import? (A fresh interpreter: pytest and the tests import aiohttp themselves.)
SERVICE_WITH_API = """
import asyncio, json, sys, tempfile
from pathlib import Path
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin
from tests.api_support import running

UPGRADE = (
    b"Connection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Version: 13\\r\\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n"
)

async def ask(port, head):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    answer = await reader.readuntil(b"\\r\\n\\r\\n")
    writer.close()
    return answer.split(b" ", 2)[1].decode()

async def main():
    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    with tempfile.TemporaryDirectory() as tmp:
        async with running(Path(tmp) / "state", Device.pin_factory) as api:
            auth = f"Authorization: Bearer {api.token}\\r\\n".encode()
            devices = b"GET /api/v1/devices HTTP/1.1\\r\\nHost: x\\r\\n" + auth + b"\\r\\n"
            events = b"GET /api/v1/events HTTP/1.1\\r\\nHost: x\\r\\n" + auth + UPGRADE
            statuses = [await ask(api.port, devices), await ask(api.port, events)]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("aiohttp", "yarl", "multidict"))
    print(json.dumps({"statuses": statuses, "loaded": loaded}))

asyncio.run(main())
"""


def _last_json_line(code: str) -> Any:
    """What ``code`` prints last, as JSON, run in a fresh interpreter."""
    out = subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, text=True, timeout=60)
    return json.loads(out.splitlines()[-1])


def test_the_service_serves_its_api_without_importing_aiohttp() -> None:
    result = _last_json_line(SERVICE_WITH_API)
    assert result["statuses"] == ["200", "101"], result  # it did serve both
    assert result["loaded"] == [], result


def test_migw_run_does_not_import_aiohttp() -> None:
    code = (
        "import json, sys\n"
        "from gateway.cli import main\n"
        "import gateway.service, gateway.api.server, gateway.api.app, gateway.api.ws\n"
        "main(['run', '--help'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('aiohttp'))))\n"
    )
    assert _last_json_line(code) == []
