"""What reaches the service's log of a client's request: since the API has its own server
(gateway/api/httpd.py on h11 and wsproto, which log nothing themselves), gateway/logs.py has
no third-party server logger to silence; this keeps the promise it used to keep for aiohttp's
(docs/api.md: the token is never in a log, an error never echoes the request)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.api_support import running

MARKER = "raw-request-marker-7f3a"


async def _exchange(port: int, raw: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw.encode())
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


async def test_no_request_text_or_token_reaches_the_log(
    tmp_path: Path, mock_pins: Any, caplog: Any
) -> None:
    caplog.set_level(1)  # every record, TRACE and DEBUG included
    async with running(tmp_path / "state", mock_pins) as api:
        auth = f"Authorization: Bearer {api.token}\r\n"
        requests = {
            # a malformed head (a header line without a colon)
            "400": f"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n{auth}bad {MARKER}\r\n\r\n",
            # a wrong token, and the token in the query where it does not belong
            "401": f"GET /api/v1/status?t={MARKER} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {MARKER}\r\nConnection: close\r\n\r\n",
            # a body that is not JSON, with the right token
            "400 ": "POST /api/v1/devices/gpio-hall-relay/commands HTTP/1.1\r\nHost: x\r\n"
            f"{auth}Content-Length: {len(MARKER)}\r\nConnection: close\r\n\r\n{MARKER}",
            # an unknown route
            "404": f"GET /api/v1/{MARKER} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n",
            # the WebSocket with the token offered as a subprotocol (the dashboard's way)
            "101": "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Protocol: migw, migw.bearer.{api.token}\r\n\r\n",
        }
        for status, raw in requests.items():
            answer = await _exchange(api.port, raw)
            assert answer.split(b" ", 2)[1] == status.strip().encode(), answer
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "malformed request head" in logged  # the API does log: without the request
    assert api.token not in logged
    assert MARKER not in logged
