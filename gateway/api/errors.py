"""JSON errors with stable codes; no stack trace ever reaches a client.

Every error body is ``{"error": {"code": "<stable code>", "message": "<human text>"}}``.
Clients branch on ``code``; ``message`` may change wording between releases.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: HTTP status -> default code for errors raised by aiohttp itself (routing, body size).
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An expected error, answered as JSON with ``status`` and a stable ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        #: Close the connection after answering (a client that stalls mid-request).
        self.close = close


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error; log unexpected ones server-side only."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
        if exc.close:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 2xx raised as exceptions pass through
        code = _HTTP_CODES.get(exc.status, "http_error")
        headers = {}
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        message = exc.reason if exc.status != 413 else "request body too large"
        return error_response(exc.status, code, message, headers)
    except Exception:
        _LOGGER.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "internal error (logged on the gateway)")


#: The ``Server`` header of every response: no software versions.
SERVER = "migw"


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering the errors it raises itself (a request it
    cannot parse: bad request line or header, head too long, non-HTTP bytes) as JSON like
    every other error, without echoing the request and without aiohttp's version.

    Installed per connection by :class:`gateway.api.guard.GuardedSite`."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp logs the error (its aiohttp.server logger) and refuses to answer when
        # part of a response was already sent; its text/plain body is replaced
        super().handle_error(request, status, exc, message)
        if status >= 500:
            text = "internal error (logged on the gateway)"
            code = "internal_error"
        else:
            text = "malformed HTTP request" if status == 400 else _phrase(status)
            code = _HTTP_CODES.get(status, "http_error")
        response = error_response(status, code, text, {"Server": SERVER})
        response.force_close()
        return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        content_type="application/json",
    )
