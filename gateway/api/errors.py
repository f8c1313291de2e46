"""JSON errors with stable codes; no stack trace ever reaches a client.

Every error body is ``{"error": {"code": "<stable code>", "message": "<human text>"}}``.
Clients branch on ``code``; ``message`` may change wording between releases.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gateway.api import http
from gateway.api.http import Handler

_LOGGER = logging.getLogger(__name__)

__all__ = ["SERVER", "ApiError", "Handler", "error_middleware", "error_response", "json_response"]

#: HTTP status -> default code for the server's own errors (routing, body size).
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


error_response = http.json_error


async def error_middleware(request: http.Request, handler: Handler) -> http.StreamResponse:
    """Turn every failure into a JSON error; log unexpected ones server-side only."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
        if exc.close:
            response.force_close()
        return response
    except http.HttpError as exc:
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


def json_response(data: Any, status: int = 200) -> http.Response:
    return http.Response(
        status=status,
        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")),
        content_type="application/json",
    )
