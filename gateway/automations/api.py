"""LAN API routes of the automations: list, traces, enable (docs/automations.md, docs/api.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.api import http
from gateway.api.errors import ApiError, json_response

if TYPE_CHECKING:
    from gateway.automations import Automations
    from gateway.service import Service

PREFIX = "/api/v1/automations"


def add_routes(
    router: http.Router,
    service_of: Callable[[http.Request], Service],
    read_json: Callable[[http.Request], object],
) -> None:
    def component(request: http.Request) -> Automations:
        svc = service_of(request)
        comp = next((c for c in svc.components if c.name == "automations"), None)
        if comp is None:
            raise ApiError(404, "no_automations", "no automations or presence configured")
        return comp  # type: ignore[return-value]

    def known(request: http.Request, comp: Automations) -> str:
        aid = request.match_info["automation_id"]
        if aid not in {a.id for a in comp.service.config.automations}:
            raise ApiError(404, "unknown_automation", f"no automation {aid[:64]!r}")
        return aid

    async def listing(request: http.Request) -> http.Response:
        return json_response({"automations": component(request).listing()})

    async def traces(request: http.Request) -> http.Response:
        comp = component(request)
        aid = known(request, comp)
        raw = request.query.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise ApiError(400, "invalid_query", "limit must be between 1 and 1000")
        return json_response({"traces": [t.to_dict() for t in comp.traces(aid, int(raw))]})

    async def enable(request: http.Request) -> http.Response:
        comp = component(request)
        aid = known(request, comp)
        body = await read_json(request)  # type: ignore[misc]
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise ApiError(422, "invalid_body", 'expected {"enabled": true|false}')
        try:
            comp.set_enabled(aid, body["enabled"])
        except KeyError:
            raise ApiError(503, "not_running", "the automations are not running yet") from None
        return json_response({"id": aid, "enabled": body["enabled"]})

    router.add_get(PREFIX, listing)
    router.add_get(f"{PREFIX}/{{automation_id}}/traces", traces)
    router.add_post(f"{PREFIX}/{{automation_id}}/enable", enable)
