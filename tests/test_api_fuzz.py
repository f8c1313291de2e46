"""Random requests against the real API: never a 5xx, and the service stays healthy."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.parse
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_support import Running, running

DEVICE_IDS = ["gpio-hall-relay", "gpio-status-led", "gpio-hall-button", "gpio-nope", ""]
ROUTES = [
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/devices"),
    ("GET", "/api/v1/devices/{id}"),
    ("GET", "/api/v1/devices/{id}/history"),
    ("POST", "/api/v1/devices/{id}/commands"),
    ("POST", "/api/v1/devices/{id}/commands"),
    ("GET", "/api/v1/radios"),
    ("GET", "/api/v1/outbox"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/zigbee/permit-join"),
    ("POST", "/api/v1/zigbee/backup"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/nothing/{id}"),
]
QUERY_KEYS = [
    "transport",
    "model",
    "status",
    "stale",
    "stale_after",
    "metric",
    "since",
    "until",
    "limit",
    "device",
    "type",
    "seconds",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["switch", "command", "seconds", "x"]) | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
commands = st.fixed_dictionaries(
    {"command": st.sampled_from(["on", "off", "toggle", "pulse", "boom", 1, None])},
    optional={"seconds": st.one_of(st.floats(), st.integers(), st.text(max_size=3))},
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    commands.map(lambda v: json.dumps(v).encode()),
    st.just(b'{"switch": true}'),
)
segments = st.sampled_from(DEVICE_IDS) | st.text(min_size=1, max_size=30)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, str]:
    method, route = draw(st.sampled_from(ROUTES))
    if draw(st.sampled_from([False, False, True])):
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    path = route.replace("{id}", urllib.parse.quote(draw(segments), safe=""))
    query = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), st.text(max_size=12), max_size=3))
    if query:
        path += "?" + urllib.parse.urlencode(query)
    auth = draw(st.sampled_from(["good", "good", "good", "none", "bad"]))
    return method, path, draw(bodies), auth


async def test_random_requests_never_get_a_5xx(tmp_path: Path, mock_pins: Any) -> None:
    async with running(tmp_path / "state", mock_pins) as api:
        seen: dict[int, int] = {}
        await asyncio.to_thread(_fuzz, api, seen)
        assert not [s for s in seen if s >= 500], seen
        # it answered plenty of both kinds, so the test explored something
        assert seen.get(200, 0) > 0 and seen.get(401, 0) > 0, seen
        health = api.service.health()
        assert health == {"status": "ok", "reasons": []}
        assert api.server.health().health.value == "ok"


def _fuzz(api: Running, seen: dict[int, int]) -> None:
    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(requests())
    def one(req: tuple[str, str, bytes | None, str]) -> None:
        method, path, body, auth = req
        headers = {"Content-Type": "application/json"}
        if auth == "good":
            headers["Authorization"] = f"Bearer {api.token}"
        elif auth == "bad":
            headers["Authorization"] = "Bearer not-the-token-at-all-0123456789"
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        seen[resp.status] = seen.get(resp.status, 0) + 1
        assert resp.status < 500, (method, path, body, resp.status, data[:300])
        if method != "HEAD" and resp.status >= 400:
            err = json.loads(data)["error"]
            assert isinstance(err["code"], str) and "Traceback" not in err["message"]

    one()
