"""The web dashboard: static files shipped in the package (``gateway/api/static``), served
read-only by the LAN API. The page needs no token; every data call it makes does (the token
is kept in the browser and sent as the Authorization header, and to the WebSocket as a
``Sec-WebSocket-Protocol`` entry since browsers cannot set headers there). No inline script
and a strict Content-Security-Policy. See docs/api.md, "Web dashboard"."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from importlib import resources
from typing import Final

from gateway.api import http
from gateway.api.errors import ApiError, json_response
from gateway.api.request import SERVICE, read_json
from gateway.api.token import read_token

#: The subprotocol the dashboard's WebSocket speaks; it offers the token as a second one.
WS_PROTOCOL: Final = "migw"
WS_TOKEN_PREFIX: Final = "migw.bearer."  # noqa: S105 - a prefix, not a secret

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
#: Static files may be cached this long (their URLs carry a content hash).
STATIC_MAX_AGE_S: Final = 86400


#: A login link's code is good for this long, and once.
LOGIN_CODE_TTL_S: Final = 300.0
LOGIN_CODES_MAX: Final = 16
LOGIN_PATH: Final = "/api/v1/login"


def is_public(path: str) -> bool:
    """The page and its files need no token (they hold no data); nor does redeeming a
    one-time login code (the code is the credential)."""
    return path in ("/", LOGIN_PATH) or path.startswith("/static/")


class LoginCodes:
    """One-time codes for login links (``migw token --link``): a phone opens
    ``http://<pi>:8380/#code=<code>`` and the page trades the code for the token once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._codes: dict[str, float] = {}
        self._clock = clock

    def issue(self) -> str:
        now = self._clock()
        self._codes = {c: t for c, t in self._codes.items() if t > now}
        while len(self._codes) >= LOGIN_CODES_MAX:
            self._codes.pop(next(iter(self._codes)))
        code = secrets.token_urlsafe(18)
        self._codes[code] = now + LOGIN_CODE_TTL_S
        return code

    def redeem(self, code: str) -> bool:
        expires = self._codes.pop(code, None)
        return expires is not None and expires > self._clock()


def ws_token(request: http.Request) -> str | None:
    """The token a browser offered as a WebSocket subprotocol (``migw.bearer.<token>``)."""
    for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = offered.strip()
        if proto.startswith(WS_TOKEN_PREFIX):
            return proto.removeprefix(WS_TOKEN_PREFIX)
    return None


class StaticFiles:
    """The package's static files, read once at start (read-only, never from the request's
    path: only names listed here are served)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        root = resources.files("gateway.api") / "static"
        for entry in root.iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if not entry.is_file() or suffix not in _TYPES:
                continue
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            self.files[entry.name] = (body, _TYPES[suffix], etag)

    def version(self, name: str) -> str:
        return self.files[name][2].strip('"')

    def response(self, request: http.Request, name: str, cache: str) -> http.Response:
        found = self.files.get(name)
        if found is None:
            raise http.HttpError(404)
        body, ctype, etag = found
        headers = {
            "Content-Type": ctype,
            "Cache-Control": cache,
            "ETag": etag,
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        }
        if request.headers.get("If-None-Match") == etag:
            return http.Response(status=304, headers=headers)
        return http.Response(body=body, headers=headers)


def add_routes(app: http.Application) -> None:
    files = StaticFiles()
    index = files.files["index.html"][0].decode()
    for name in ("app.js", "app.css"):
        index = index.replace(f"/static/{name}", f"/static/{name}?v={files.version(name)}")
    files.files["index.html"] = (
        index.encode(),
        _TYPES[".html"],
        '"' + hashlib.sha256(index.encode()).hexdigest()[:16] + '"',
    )

    async def page(request: http.Request) -> http.Response:
        return files.response(request, "index.html", "no-cache")

    async def static(request: http.Request) -> http.Response:
        return files.response(
            request, request.match_info["name"], f"public, max-age={STATIC_MAX_AGE_S}, immutable"
        )

    codes = LoginCodes()

    async def issue_code(request: http.Request) -> http.Response:
        return json_response({"code": codes.issue(), "expires_in_s": LOGIN_CODE_TTL_S, "uses": 1})

    async def login(request: http.Request) -> http.Response:
        body = await read_json(request)
        code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str) or not codes.redeem(code):
            raise ApiError(401, "invalid_code", "this login link is used up or expired")
        token = await asyncio.to_thread(read_token, request.app[SERVICE].state_dir)
        if token is None:
            raise ApiError(409, "no_token", "the service has no API token")
        return json_response({"token": token})

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_post("/api/v1/login-codes", issue_code)
    app.router.add_post(LOGIN_PATH, login)
