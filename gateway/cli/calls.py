"""How a command reaches the service: the LAN API, else (read-only commands) the saved state
database; the exit codes every command shares, and :func:`pass_target`, which resolves the
target once for a command."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from gateway.cli.base import CliContext, pass_ctx
from gateway.cli.client import ApiClient, ApiFailure, ServiceDown, Target, notice, print_json
from gateway.cli.client import resolve as _resolve
from gateway.errors import ConfigError, StoreError

_T = TypeVar("_T")
_P = ParamSpec("_P")

#: Exit codes of the read-only commands (documented in docs/api.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


class Exit(Exception):
    """Ends a command under :func:`pass_target` with ``code`` (the reason is on stderr)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def target_of(ctx: CliContext) -> Target | None:
    """Where the service is, or None (said on stderr) when the config is invalid."""
    try:
        return _resolve(ctx)
    except ConfigError as exc:
        notice(f"invalid config: {exc}")
        return None


def pass_target(fn: Callable[Concatenate[Target, _P], int]) -> Callable[_P, int]:
    """A command taking the resolved :class:`Target`: exit 2 on an invalid config, and
    :class:`Exit` raised inside ends the command with its code."""

    @functools.wraps(fn)
    def command(ctx: CliContext, /, *args: _P.args, **kwargs: _P.kwargs) -> int:
        target = target_of(ctx)
        if target is None:
            return EXIT_USAGE
        try:
            return fn(target, *args, **kwargs)
        except Exit as exc:
            return exc.code

    return pass_ctx(command)


def run(coro: Awaitable[_T]) -> _T:
    async def main() -> _T:
        return await coro

    return asyncio.run(main())


async def api_or_state(
    target: Target,
    online: Callable[[ApiClient], Awaitable[Any]],
    offline: Callable[[Target], Awaitable[Any]],
) -> tuple[Any, bool]:
    """``(data, live)``: from the API, or from the read-only database when it is down."""
    async with ApiClient(target) as api:
        try:
            return await online(api), True
        except ServiceDown as exc:
            down = exc
    try:
        data = await offline(target)
    except StoreError as exc:
        raise ServiceDown(f"{down}, and the saved state cannot be read: {exc}") from None
    notice(f"{down}; showing the saved state from {target.db_path} (read-only)")
    return data, False


def call_service(
    target: Target, what: str, go: Callable[[ApiClient], Awaitable[Any]]
) -> tuple[int, Any]:
    """``(EXIT_OK, answer)`` of a call that needs the running service, or ``(exit code,
    None)`` with the reason on stderr."""

    async def call() -> Any:
        async with ApiClient(target) as api:
            return await go(api)

    try:
        return EXIT_OK, run(call())
    except ServiceDown as exc:
        notice(f"{exc}; {what} needs the running service")
        return EXIT_NOT_RUNNING, None
    except ApiFailure as exc:
        notice(exc.message if exc.code == "unknown_device" else str(exc))
        return EXIT_FAILED, None


def get_for_table(target: Target, what: str, path: str, as_json: bool) -> tuple[int, Any]:
    """``GET path`` from the running service: ``(exit code, data to render)``, the data
    None when there is nothing more to do (an error, or printed as --json)."""
    code, data = call_service(target, what, lambda api: api.get(path))
    if code == EXIT_OK and as_json:
        print_json(data)
        return code, None
    return code, data


def fail(exc: Exception) -> int:
    notice(str(exc))
    return EXIT_FAILED


def read(
    target: Target,
    online: str | Callable[[ApiClient], Awaitable[Any]],
    offline: Callable[[Target], Awaitable[Any]],
    *,
    unknown: str = "",
) -> tuple[Any, bool]:
    """``(data, live)`` for a read-only command: ``online`` (a path to GET, or calls) from
    the running service, else ``offline`` from the saved state. :class:`Exit` when neither
    could answer; an unknown device is said as ``unknown`` when given."""
    go = (lambda api: api.get(online)) if isinstance(online, str) else online
    try:
        return run(api_or_state(target, go, offline))
    except ServiceDown as exc:
        notice(str(exc))
        raise Exit(EXIT_NOT_RUNNING) from None
    except ApiFailure as exc:
        if unknown and exc.code == "unknown_device":
            notice(unknown)
            raise Exit(EXIT_FAILED) from None
        raise Exit(fail(exc)) from None
    except StoreError as exc:
        raise Exit(fail(exc)) from None


def ask(target: Target, path: str) -> Any | None:
    """``GET path`` from the running service, or None when it cannot answer (for hints
    that are worth a line only when the service is up)."""

    async def get() -> Any:
        async with ApiClient(target) as api:
            return await api.get(path)

    try:
        return run(get())
    except (ServiceDown, ApiFailure):
        return None
