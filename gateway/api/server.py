"""The ``api`` component of the service: serves :mod:`gateway.api.app` on the configured
address (``0.0.0.0:8380`` on a gateway, loopback in demo mode)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from gateway.api.app import build_app
from gateway.api.errors import SERVER
from gateway.api.events import EventHub
from gateway.api.guard import ConnectionLimits
from gateway.api.httpd import HttpServer
from gateway.api.token import TokenChecker, TokenError
from gateway.driver import DriverHealth, Health
from gateway.errors import NeedsHumanError

if TYPE_CHECKING:
    from gateway.service import Service

_LOGGER = logging.getLogger(__name__)


class ApiBindError(NeedsHumanError):
    """The LAN API cannot listen on its address and port."""


class ApiServer:
    """Built by the service (its composition root); ``port`` is the bound port once running.

    A port that cannot be bound is reported by :meth:`bound` (the service makes that a
    startup error) and, after a reload, retried by the supervisor."""

    name = "api"

    def __init__(self, service: Service) -> None:
        self._service = service
        self._config = service.config.api
        self.checker: TokenChecker | None = None
        self.hub = EventHub()
        self.limits = ConnectionLimits(service.timing.api)
        self.port: int | None = None
        self.listening = asyncio.Event()
        #: Set after the first attempt to bind, with its error when it failed.
        self._first_bind = asyncio.Event()
        self._bind_error: OSError | None = None
        self._health = DriverHealth(
            health=Health.DEGRADED,
            reason="not listening yet",
            info={"listen": f"{self._config.listen}:{self._config.port}"},
        )
        service.on_state_change(self._on_state_change)

    async def bound(self) -> None:
        """Wait for the first attempt to bind the port; raise :class:`ApiBindError` when it
        failed (the port is taken, the address is not ours ...)."""
        await self._first_bind.wait()
        if self._bind_error is not None:
            raise ApiBindError(self._health.reason) from self._bind_error

    def health(self) -> DriverHealth:
        self._health.counters = {
            "ws_sent": self.hub.sent,
            "ws_dropped": self.hub.dropped,
            "connections_refused": self.limits.refused,
            "connections_evicted": self.limits.evicted,
            "header_timeouts": self.limits.header_timeouts,
        }
        return self._health

    def _on_state_change(self) -> None:
        if self.hub.clients:
            self.hub.on_status(self._status())

    def _status(self) -> dict[str, object]:
        h = self._service.health()
        return {"status": h["status"], "reasons": list(h["reasons"])}

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            # the first attempt is over (a bind error, if any, was recorded): the service
            # stops waiting for it; other failures degrade the API and are retried
            self._first_bind.set()

    async def _serve(self) -> None:
        store = self._service.store
        assert store is not None
        if self.checker is None:
            # first start: the token is generated here, into the state dir, mode 0600
            try:
                self.checker = TokenChecker(self._service.state_dir)
            except TokenError as exc:
                self._health.health = Health.DEGRADED
                self._health.reason = str(exc)
                raise
        timing = self._service.timing.api
        app = build_app(self._service, self.hub, self.checker, timing)
        server = HttpServer(app, self.limits, timing, SERVER)
        await server.setup()
        unsubscribe = store.subscribe(self.hub.on_commit)
        try:
            try:
                self.port = await server.listen(self._config.listen, self._config.port)
            except OSError as exc:
                where = f"{self._config.listen}:{self._config.port}"
                self._health.health = Health.DEGRADED
                self._health.reason = f"cannot listen on {where}: {exc.strerror or exc}"
                if not self._first_bind.is_set():
                    self._bind_error = exc
                    self._first_bind.set()
                raise
            where = f"{self._config.listen}:{self.port}"
            self._health.health = Health.OK
            self._health.reason = ""
            self._health.info = {"listen": where}
            self.listening.set()
            self._first_bind.set()
            _LOGGER.info("LAN API listening on http://%s/api/v1/", where)
            self.hub.on_status(self._status())
            await asyncio.Event().wait()
        finally:
            self.listening.clear()
            unsubscribe()
            with contextlib.suppress(Exception):
                await server.cleanup()
