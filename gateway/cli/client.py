"""How the CLI reaches the running service: the LAN API with the token from the state dir,
and, for read-only commands when the service is down, the state database opened read-only.

The service is found from the config (default /etc/migw/config.toml, or ``--config``), or
from ``--state-dir`` and ``--api-port`` for a demo started with the same options.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import click

if TYPE_CHECKING:
    from rich.console import Console

from gateway import config as config_mod
from gateway.api.token import TOKEN_FILE, TokenError, read_token
from gateway.cli.base import CliContext
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.store import StateReader, open_readonly

#: Seconds to wait for the service to accept a connection / to answer a request.
CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 30.0
DB_NAME = "state.db"  # gateway.service.DB_NAME, without importing the service


class ServiceDown(GatewayError):
    """Nothing answers at the API address: the service is not running (or elsewhere)."""


class ApiFailure(GatewayError):
    """The API answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    config: Config
    base_url: str
    state_dir: Path
    #: Seconds a request may take (longer for one that waits on a device).
    request_timeout: float = REQUEST_TIMEOUT_S

    @property
    def db_path(self) -> Path:
        return self.state_dir / DB_NAME


def _host(listen: str) -> str:
    if listen in ("", "0.0.0.0"):  # noqa: S104 - mapping the wildcard to loopback
        return "127.0.0.1"
    if listen == "::":
        return "[::1]"
    return f"[{listen}]" if ":" in listen else listen


def resolve(ctx: CliContext) -> Target:
    """Where the service is, from --config/--state-dir/--api-port. ConfigError if invalid.

    Without any config file or --state-dir, a demo (``migw run --demo``, state in the user's
    cache) is found when the production state dir holds no service state.
    """
    cfg = ctx.load_config()
    state_dir = Path(cfg.gateway.state_dir)
    if (
        ctx.config_path is None
        and ctx.state_dir is None
        and not config_mod.DEFAULT_CONFIG_PATH.exists()
        and not has_state(state_dir)
    ):
        from gateway.demo import default_state_dir

        demo_dir = default_state_dir()
        if has_state(demo_dir):
            state_dir = demo_dir
    url = f"http://{_host(cfg.api.listen)}:{cfg.api.port}"
    return Target(cfg, url, state_dir)


def cli_command() -> str:
    """How to run this ``migw`` from a fresh shell: ``migw`` when that is the one on the
    PATH, else its full path (a virtualenv's ``.venv/bin/migw``)."""
    here = Path(sys.executable).parent / "migw"
    found = shutil.which("migw")
    if found is not None and (not here.exists() or Path(found).resolve() == here.resolve()):
        return "migw"
    return str(here) if here.exists() else "migw"


def has_state(state_dir: Path) -> bool:
    try:
        return (state_dir / TOKEN_FILE).exists() or (state_dir / DB_NAME).exists()
    except OSError:
        return False


class ApiClient:
    """``async with ApiClient(target) as api: await api.get("/api/v1/devices")``."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_problem = ""

    async def __aenter__(self) -> ApiClient:
        try:
            self._token = read_token(self.target.state_dir)
            if self._token is None:
                self._token_problem = (
                    f"no API token in {self.target.state_dir}: is this the running service's "
                    "state directory? The service writes its token there at start and logs "
                    "where; give that directory with `migw --state-dir DIR ...`"
                )
        except TokenError as exc:
            self._token_problem = str(exc)
        timeout = aiohttp.ClientTimeout(
            total=self.target.request_timeout, connect=CONNECT_TIMEOUT_S
        )
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _down(self, exc: BaseException) -> ServiceDown:
        return ServiceDown(
            f"the service is not running (no answer at {self.target.base_url}: {exc})"
        )

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        assert self._session is not None
        data = None if body is None else json.dumps(body)
        headers = self._headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, self.target.base_url + path, data=data, headers=headers
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise self._down(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceDown(
                f"the service at {self.target.base_url} did not answer properly: "
                f"{type(exc).__name__} {exc}"
            ) from None
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        if status >= 400:
            err = payload.get("error", {}) if isinstance(payload, dict) else {}
            code = str(err.get("code", "http_error"))
            message = str(err.get("message", text[:200]))
            if status == 401:
                message = "the API refused the token: " + (
                    self._token_problem
                    or f"the token in {self.target.state_dir} is not the running service's: "
                    "is this its state directory (`migw --state-dir DIR ...`)? After "
                    "`migw token --rotate`, use the new token"
                )
            raise ApiFailure(status, code, message)
        return payload

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, body)

    async def websocket(self, path: str) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        try:
            return await self._session.ws_connect(
                self.target.base_url + path, headers=self._headers(), heartbeat=30.0
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise ApiFailure(
                    401, "unauthorized", "the API refused the token: " + self._token_problem
                ) from None
            raise ApiFailure(exc.status, "handshake_failed", exc.message) from None
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            raise self._down(exc) from None


@contextlib.asynccontextmanager
async def open_state(target: Target) -> AsyncIterator[StateReader]:
    """The state database read-only (the service is down), closed on leaving. StoreError when
    absent."""
    reader = await open_readonly(target.db_path)
    try:
        yield reader
    finally:
        await reader.close()


# ------------------------------------------------------------------------------ output


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr); wide enough for tables when piped."""
    from rich.console import Console  # imported on use: the service never needs rich

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    width = None if tty else 160
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) >= 20:
        width = int(columns)
    return Console(
        stderr=stderr,
        width=width,
        no_color=not tty,
        highlight=False,
        soft_wrap=not tty,
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False))


def notice(message: str) -> None:
    """A note for the human on stderr (never mixed into --json stdout)."""
    click.echo(f"migw: {message}", err=True)


def human_age(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "never"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s // 60:.0f}m ago"
    if s < 86400:
        return f"{s // 3600:.0f}h{(s % 3600) // 60:02.0f}m ago"
    return f"{s // 86400:.0f}d{(s % 86400) // 3600:.0f}h ago"


def human_duration(seconds: float | None) -> str:
    return "-" if seconds is None else human_age(seconds).removesuffix(" ago")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - loop always returns


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def fmt_value(value: Any, unit: str | None = None, metric: str = "") -> str:
    if isinstance(value, bool):
        text = ("on" if value else "off") if metric == "switch" else str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return f"{text} {unit}" if unit else text
