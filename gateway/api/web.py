"""The web dashboard: static files shipped in the package (``gateway/api/static``), served
read-only by the LAN API. The page needs no token; every data call it makes does (the token
is kept in the browser and sent as the Authorization header, and to the WebSocket as a
``Sec-WebSocket-Protocol`` entry since browsers cannot set headers there). No inline script
and a strict Content-Security-Policy. See docs/api.md, "Web dashboard"."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Final

from aiohttp import web

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


def is_public(path: str) -> bool:
    """The page and its files need no token (they hold no data)."""
    return path == "/" or path.startswith("/static/")


def ws_token(request: web.Request) -> str | None:
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

    def response(self, request: web.Request, name: str, cache: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound(text="no such file")
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
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)


def add_routes(app: web.Application) -> None:
    files = StaticFiles()
    index = files.files["index.html"][0].decode()
    for name in ("app.js", "app.css"):
        index = index.replace(f"/static/{name}", f"/static/{name}?v={files.version(name)}")
    files.files["index.html"] = (
        index.encode(),
        _TYPES[".html"],
        '"' + hashlib.sha256(index.encode()).hexdigest()[:16] + '"',
    )

    async def page(request: web.Request) -> web.Response:
        return files.response(request, "index.html", "no-cache")

    async def static(request: web.Request) -> web.Response:
        return files.response(
            request, request.match_info["name"], f"public, max-age={STATIC_MAX_AGE_S}, immutable"
        )

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static)
