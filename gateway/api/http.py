"""The small HTTP application layer the LAN API's handlers are written against: typed
application keys, the request and response they see, a route table with ``{param}`` paths,
middlewares and the start/stop hooks. :mod:`gateway.api.httpd` serves it over asyncio
streams with h11; :mod:`gateway.api.ws` adds the WebSocket.

Why not aiohttp's server: importing ``aiohttp.web`` cost the service 13.9 MB of its peak
RSS (it pulls aiohttp's client, yarl, multidict, attrs, email and the system CA bundle,
loaded twice); h11 costs 0.5 MB (docs/architecture.md, "Memory"). The CLI, a separate
process, keeps aiohttp's client.

The names follow aiohttp's (``Request.match_info``, ``Response.force_close()``,
``app.on_response_prepare`` ...) so that handlers read as before.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload
from urllib.parse import parse_qsl, unquote

if TYPE_CHECKING:
    from gateway.api.httpd import Exchange

_T = TypeVar("_T")

#: Request bodies read by :meth:`Request.read` at most, unless the application says.
DEFAULT_MAX_BODY = 1024 * 1024


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class AppKey(Generic[_T]):
    """A typed key of :class:`Application` (``app[KEY]`` has the key's type)."""

    __slots__ = ("name",)

    def __init__(self, name: str, t: type[_T] | None = None) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<AppKey {self.name}>"


class Headers(Mapping[str, str]):
    """Case-insensitive header names; the first value of a repeated header."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self._items.setdefault(name.lower(), (name, value))

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items.values())!r})"


class Query:
    """The query string's parameters, in order (``get`` the first, ``getall`` every one)."""

    __slots__ = ("_pairs",)

    def __init__(self, query_string: str) -> None:
        self._pairs = parse_qsl(query_string, keep_blank_values=True)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getall(self, name: str, default: list[str] | None = None) -> list[str]:
        values = [value for key, value in self._pairs if key == name]
        if values:
            return values
        if default is None:
            raise KeyError(name)
        return default

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)


class HttpError(Exception):
    """An HTTP failure outside the handlers' own errors: no route (404), wrong method
    (405, ``Allow``), body too large (413), a malformed body (400)."""

    def __init__(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason_phrase(status))
        self.status = status
        self.reason = reason_phrase(status)
        self.headers = Headers(headers or {})


class StreamResponse:
    """What a handler answers: a status and headers; :class:`Response` has a body, a
    :class:`~gateway.api.ws.WebSocketResponse` takes the connection over."""

    __slots__ = ("_force_close", "headers", "status")

    def __init__(self, *, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.headers = Headers(headers or {})
        self._force_close = False

    def force_close(self) -> None:
        """Close the connection after this answer."""
        self._force_close = True

    @property
    def closes(self) -> bool:
        return self._force_close


class Response(StreamResponse):
    __slots__ = ("body",)

    def __init__(
        self,
        *,
        status: int = 200,
        text: str | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status=status, headers=headers)
        if text is not None:
            self.body = text.encode()
            ctype = content_type or "text/plain"
            self.headers["Content-Type"] = f"{ctype}; charset=utf-8"
        else:
            self.body = body or b""
            if content_type is not None:
                self.headers["Content-Type"] = content_type
            elif body is not None and "Content-Type" not in self.headers:
                self.headers["Content-Type"] = "application/octet-stream"


def json_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The LAN API's error body (docs/api.md, "Errors")."""
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(status=status, text=body, content_type="application/json", headers=headers)


class Request:
    """One request as the handlers see it. The body is read on demand, within the
    application's limit (:class:`HttpError` 413 beyond it)."""

    __slots__ = (
        "_body",
        "_exchange",
        "_query",
        "app",
        "headers",
        "match_info",
        "method",
        "path",
        "raw_path",
    )

    def __init__(
        self,
        app: Application,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Headers,
        exchange: Exchange | None = None,
    ) -> None:
        self.app = app
        self.method = method
        #: As sent (percent-encoded); ``path`` is decoded.
        self.raw_path = raw_path
        self.path = unquote(raw_path)
        self.headers = headers
        self.match_info: dict[str, str] = {}
        self._query: Query | str = query_string
        self._exchange = exchange
        self._body: bytes | None = None

    @property
    def query(self) -> Query:
        if isinstance(self._query, str):
            self._query = Query(self._query)
        return self._query

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else None

    @property
    def exchange(self) -> Exchange:
        """The connection's side of this request (the WebSocket takes it over)."""
        if self._exchange is None:
            raise RuntimeError("a request built without a connection")
        return self._exchange

    async def read(self) -> bytes:
        """The whole body (empty when there is none)."""
        if self._body is None:
            if self._exchange is None:
                self._body = b""
            else:
                self._body = await self._exchange.read_body(self.app.client_max_size)
        return self._body


Handler = Callable[[Request], Awaitable[StreamResponse]]
Middleware = Callable[[Request, Handler], Awaitable[StreamResponse]]
AppHook = Callable[["Application"], Awaitable[None]]
CleanupContext = Callable[["Application"], AsyncIterator[None]]
PrepareHook = Callable[[Request, StreamResponse], Awaitable[None]]


class Router:
    """Routes by method and path; a path's ``{name}`` segment matches one percent-decoded
    segment into ``match_info``. A GET route answers HEAD too."""

    def __init__(self) -> None:
        #: (segments, method -> handler); a segment is a literal or ``{name}``.
        self._routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = []

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        segments = tuple(path.split("/"))
        for known, methods in self._routes:
            if known == segments:
                methods[method] = handler
                return
        self._routes.append((segments, {method: handler}))

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)
        self.add_route("HEAD", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_delete(self, path: str, handler: Handler) -> None:
        self.add_route("DELETE", path, handler)

    def resolve(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and ``match_info`` of a request; :class:`HttpError` 404 or 405."""
        parts = [unquote(p) for p in raw_path.split("/")]
        for segments, methods in self._routes:
            if len(segments) != len(parts):
                continue
            match: dict[str, str] = {}
            for want, got in zip(segments, parts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    if not got:
                        break
                    match[want[1:-1]] = got
                elif want != got:
                    break
            else:
                handler = methods.get(method)
                if handler is None:
                    raise HttpError(405, {"Allow": ",".join(sorted(methods))})
                return handler, match
        raise HttpError(404)


class Application:
    """Typed state (``app[KEY]``), the routes, the middlewares (outermost first) and the
    hooks run when the server starts, stops and prepares a response."""

    def __init__(
        self, *, middlewares: Iterable[Middleware] = (), client_max_size: int = DEFAULT_MAX_BODY
    ) -> None:
        self.router = Router()
        self.middlewares = tuple(middlewares)
        self.client_max_size = client_max_size
        self.on_startup: list[AppHook] = []
        self.on_shutdown: list[AppHook] = []
        self.on_cleanup: list[AppHook] = []
        self.cleanup_ctx: list[CleanupContext] = []
        self.on_response_prepare: list[PrepareHook] = []
        self._state: dict[AppKey[Any], Any] = {}
        self._contexts: list[AsyncIterator[None]] = []

    def __getitem__(self, key: AppKey[_T]) -> _T:
        return cast("_T", self._state[key])

    def __setitem__(self, key: AppKey[_T], value: _T) -> None:
        self._state[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._state

    async def startup(self) -> None:
        for hook in self.on_startup:
            await hook(self)
        for ctx in self.cleanup_ctx:
            it = ctx(self)
            await anext(it)
            self._contexts.append(it)

    async def shutdown(self) -> None:
        for hook in self.on_shutdown:
            await hook(self)

    async def cleanup(self) -> None:
        while self._contexts:
            it = self._contexts.pop()
            async for _ in it:
                pass
        for hook in self.on_cleanup:
            await hook(self)

    async def handle(self, request: Request) -> StreamResponse:
        """Route ``request`` and run it through the middlewares (a routing error is raised
        inside them, as the handler would)."""
        try:
            handler, request.match_info = self.router.resolve(request.method, request.raw_path)
        except HttpError as exc:
            handler = _raiser(exc)
        for middleware in reversed(self.middlewares):
            handler = _wrap(middleware, handler)
        return await handler(request)

    async def prepare(self, request: Request, response: StreamResponse) -> None:
        for hook in self.on_response_prepare:
            await hook(request, response)


def _raiser(exc: HttpError) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        raise exc

    return handler


def _wrap(middleware: Middleware, inner: Handler) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        return await middleware(request, inner)

    return handler
