"""The sync agent: drains the store's outbox to MQTT in batches, loses nothing.

A component of the service (``Service.sync``), built from its explicit dependencies
``(config, store, clock, router)``. It builds what its parts share once
(:class:`~gateway.sync.deps.SyncDeps`) and only composes the parts of ``gateway/sync/``:

* :mod:`~gateway.sync.session` — one :class:`~gateway.sync.session.LinkSession` per broker
  (:attr:`SyncAgent.links`), each a part the service supervises on its own (one supervisor
  deep): ``sync-upstream`` (status, commands, the telemetry pump, and Home Assistant when it
  shares the broker) and ``sync-ha`` (a separate Home Assistant broker, when configured);
  :meth:`SyncAgent.run` itself keeps the outbox (upkeep, acknowledgements);
* :mod:`~gateway.sync.pump` — live and backlog scheduling; :mod:`~gateway.sync.send` —
  send, PUBACKs, split or dead-letter; :mod:`~gateway.sync.acks` — messages in flight, and
  ``sync-acks`` deleting acknowledged rows in small transactions;
* :mod:`~gateway.sync.poison` — the pure state machine that finds a message a broker drops
  the connection for;
* :mod:`~gateway.sync.inbound` — commands to devices; :mod:`~gateway.sync.publisher` — Home
  Assistant discovery/state/availability; :mod:`~gateway.sync.upkeep` — ``sync-maintain``:
  outbox bounds (bytes, TTL), re-stamping, depth; :mod:`~gateway.sync.figures` — the
  counters behind ``health()`` and ``stats()``; :mod:`~gateway.sync.mqtt` — the connection.

Outbox rows are deleted only after the PUBACK of the message that carried them; a crash at
any moment loses nothing and resends at most the batches that were in flight.

Without a broker (no ``[upstream] url``, no separate Home Assistant broker) the agent only
keeps the outbox within its bounds: the links' modules (session, pump, send, acks, poison,
inbound, publisher, the MQTT client) are imported when a link is built, not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from drivers.supervisor import State, SupervisorStatus
from gateway.clock import Clock
from gateway.config import BrokerFields, Config, HomeAssistantSection, UpstreamSection
from gateway.driver import DriverHealth, Health
from gateway.store import Commit, Store
from gateway.sync.deps import CommandRouting, SyncDeps
from gateway.sync.figures import LinkState
from gateway.sync.outbox import Outbox, run_to_end
from gateway.sync.payload import Topics
from gateway.sync.timing import SyncTiming
from gateway.sync.upkeep import Upkeep

if TYPE_CHECKING:
    from gateway.sync.publisher import HaPublisher
    from gateway.sync.pump import Pump
    from gateway.sync.session import LinkSession
    from gateway.sync.settings import BrokerSettings

_LOGGER = logging.getLogger(__name__)


def _settings(cfg: BrokerFields, client_id: str, up: UpstreamSection) -> BrokerSettings:
    """A broker section's URL, credentials and TLS files; protocol and keepalive are the
    upstream's (the Home Assistant section has none of its own)."""
    from gateway.sync.settings import BrokerSettings

    return BrokerSettings.of(cfg, client_id, protocol=up.protocol, keepalive=up.keepalive)


def upstream_settings(cfg: UpstreamSection, gateway_id: str) -> BrokerSettings | None:
    if not cfg.url:
        return None
    return _settings(cfg, cfg.client_id or f"migw-{gateway_id}", cfg)


def ha_settings(
    cfg: HomeAssistantSection, up: UpstreamSection, gateway_id: str
) -> BrokerSettings | None:
    """Settings of a separate Home Assistant broker; None when HA shares the upstream one."""
    if not cfg.enabled or not cfg.url:
        return None
    return _settings(cfg, f"{up.client_id or f'migw-{gateway_id}'}-ha", up)


class SyncAgent:
    """The ``sync`` component. See the module docstring and docs/mqtt.md."""

    name = "sync"

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        router: CommandRouting,
        *,
        timing: SyncTiming | None = None,
    ) -> None:
        cfg = config.upstream
        self._ha_cfg = config.homeassistant
        self.timing = timing or SyncTiming()
        self.topics = Topics(
            cfg.topic_prefix, config.gateway.id, config.homeassistant.discovery_prefix
        )
        #: What every part shares (built once).
        self._deps = deps = SyncDeps(
            cfg, self.topics, store, Outbox(store, self.timing.outbox), clock, router, self.timing
        )
        self.counters = deps.counters
        up = upstream_settings(cfg, config.gateway.id)
        ha_sep = ha_settings(config.homeassistant, cfg, config.gateway.id)
        self.upstream = LinkState(up) if up is not None else None
        self.ha_link = LinkState(ha_sep) if ha_sep is not None else None
        #: Home Assistant rides on the upstream connection.
        self._ha_shared = config.homeassistant.enabled and ha_sep is None and up is not None
        self._upkeep = Upkeep(deps)
        #: The upstream link's telemetry pump (with its book of PUBACKs), when there is one.
        self.pump: Pump | None = None
        self._publisher: HaPublisher | None = None
        self._up_session: LinkSession | None = None
        self._ha_session: LinkSession | None = None
        #: Set once run() has loaded the outbox: the links wait for it.
        self._loaded = asyncio.Event()
        if self.upstream is not None or self.ha_link is not None:
            ha_wanted = config.homeassistant.enabled and (self._ha_shared or ha_sep is not None)
            self._build_links(config.homeassistant if ha_wanted else None)

    def _build_links(self, ha_cfg: HomeAssistantSection | None) -> None:
        """The broker links and the parts only they use (imported here, not with the
        agent: a gateway without a broker never loads them). ``ha_cfg``: Home Assistant
        is published (on the upstream link, or on its own)."""
        from gateway.sync.inbound import Inbound
        from gateway.sync.pump import Pump
        from gateway.sync.session import LinkSession

        deps = self._deps
        if self.upstream is not None:
            self.pump = Pump(deps)
        if ha_cfg is not None:
            from gateway.sync.publisher import HaPublisher

            self._publisher = HaPublisher(deps, ha_cfg)
        on_ha_online = self._publisher.republish if self._publisher else _nothing
        inbound = Inbound(deps, on_ha_online=on_ha_online)
        if self.upstream is not None:
            self._up_session = LinkSession(
                "sync-upstream",
                self.upstream,
                deps,
                inbound=inbound,
                pump=self.pump,
                publisher=self._publisher if self._ha_shared else None,
                ready=self._loaded,
            )
        if self.ha_link is not None:
            self._ha_session = LinkSession(
                "sync-ha",
                self.ha_link,
                deps,
                inbound=inbound,
                pump=None,
                publisher=self._publisher,
                ready=self._loaded,
            )

    # ------------------------------------------------------------------ component

    @property
    def store(self) -> Store:
        return self._deps.store

    @property
    def links(self) -> list[LinkSession]:
        """The broker links: parts of their own, each run by one supervisor of the
        service's (:meth:`LinkSession.run` is one session), stopped before this agent."""
        return [s for s in (self._up_session, self._ha_session) if s is not None]

    async def run(self) -> None:
        """The outbox's side (upkeep, acknowledgements); the links are run apart."""
        store = self._deps.store
        await self._deps.outbox.load()
        await self._upkeep.recount()
        self._loaded.set()
        unsubscribe = store.subscribe(self._on_commit)
        pump = self.pump
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._upkeep.run(), name="sync-maintain")
                if pump is not None:
                    tg.create_task(pump.acks.loop(), name="sync-acks")
        finally:
            unsubscribe()
            if pump is not None:
                with contextlib.suppress(Exception):  # the store may be closed already
                    await run_to_end(pump.acks.flush(), "sync: flushing acks", self.counters.late)

    @staticmethod
    def _status(session: LinkSession | None) -> SupervisorStatus | None:
        return session.status if session is not None else None

    def late_failures(self) -> int:
        return self.counters.late_failures + self._deps.outbox.late_failures

    @property
    def pumping(self) -> bool:
        """The upstream connection is up and new rows are streamed as they are committed."""
        return self.pump is not None and self.pump.live

    @property
    def in_flight(self) -> int:
        """Telemetry messages of the current connection awaiting their PUBACK."""
        return self.pump.in_flight if self.pump is not None else 0

    def health(self) -> DriverHealth:
        reasons: list[str] = []
        for label, link, sup in (
            ("upstream", self.upstream, self._status(self._up_session)),
            ("home assistant broker", self.ha_link, self._status(self._ha_session)),
        ):
            if link is None or link.connected:
                continue
            why = link.last_error or (sup.reason if sup is not None else "") or "connecting"
            reasons.append(f"{label} {link.settings.display()} disconnected: {why}")
        figures, oc = self._deps.figures, self._deps.outbox.counters
        counters = {
            "outbox_rows": figures.rows,
            "outbox_bytes": figures.bytes,
            "dropped": oc.dropped,
            "expired": oc.expired,
            "dead_letters": oc.dead_letters,
            "batches_sent": self.counters.batches_sent,
            "readings_sent": self.counters.readings_sent,
            "late_failures": self.late_failures(),
        }
        info = {"upstream": self.upstream.settings.display() if self.upstream else "disabled"}
        if self.ha_link is not None:
            info["homeassistant"] = self.ha_link.settings.display()
        return DriverHealth(
            health=Health.DEGRADED if reasons else Health.OK,
            reason="; ".join(reasons),
            counters=counters,
            info=info,
        )

    def stats(self) -> dict[str, Any]:
        """A plain, JSON-ready snapshot for the LAN API and CLI (docs/mqtt.md, "stats")."""
        now = time.time()
        oc = self._deps.outbox.counters
        f = self._deps.figures
        cfg = self._deps.cfg
        oldest_age = None
        if f.oldest_ts is not None:
            oldest_age = max(0.0, now - f.oldest_ts)

        def link_stats(
            link: LinkState | None, sup: SupervisorStatus | None
        ) -> dict[str, Any] | None:
            if link is None:
                return None
            if link.connected:
                state = "connected"
            elif sup is not None and sup.state is State.FAILED:
                state = "failed"
            elif sup is not None and sup.state is State.BACKOFF:
                state = "backoff"
            else:
                state = "connecting"
            return {
                "url": link.settings.display(),
                "state": state,
                "connected": link.connected,
                "connected_since": link.connected_since,
                "connects": link.connects,
                "last_error": link.last_error or (sup.reason if sup else ""),
                "max_packet_size": link.max_packet_size,
            }

        return {
            "enabled": self.upstream is not None,
            "state": (
                link_stats(self.upstream, self._status(self._up_session)) or {"state": "disabled"}
            )["state"],
            "upstream": link_stats(self.upstream, self._status(self._up_session)),
            "homeassistant": {
                "enabled": self._ha_cfg.enabled,
                "broker": "upstream"
                if self._ha_shared
                else link_stats(self.ha_link, self._status(self._ha_session)),
            },
            "outbox": {
                "rows": f.rows,
                "bytes": f.bytes,
                "events": f.events,
                "oldest_seq": f.oldest_seq,
                "oldest_age_s": oldest_age,
                "backlog_rows": f.backlog_left,
                "max_bytes": cfg.outbox_max_bytes,
                "ttl_days": cfg.outbox_ttl_days,
                "full_strategy": cfg.outbox_full,
            },
            "dropped": oc.dropped,
            "expired": oc.expired,
            "dead_letters": oc.dead_letters,
            "batches_sent": self.counters.batches_sent,
            "readings_sent": self.counters.readings_sent,
            "rows_acked": self.counters.rows_acked,
            "refused": self.counters.refused,
            "splits": self.counters.splits,
            "last_publish": self.counters.last_publish,
            "last_ack": self.counters.last_ack,
            "commands": self.counters.commands,
            "command_errors": self.counters.command_errors,
            "late_failures": self.late_failures(),
        }

    # ------------------------------------------------------------------ commit listener

    def _on_commit(self, commit: Commit) -> None:
        """Called by the store writer after each commit: cheap, never raises."""
        f = self._deps.figures
        readings, events = commit.readings, commit.events
        n = len(readings) + len(events)
        f.rows += n
        f.bytes += commit.outbox_bytes
        f.events += len(events)
        if any(not r.stamp.synced for r in readings) or any(not e.stamp.synced for e in events):
            self._upkeep.unsynced_seen = True
        if f.oldest_seq is None and n:
            first = readings[0] if readings else events[0]
            f.oldest_seq, f.oldest_ts = first.seq, first.stamp.wall
        if self.pump is not None:
            self.pump.note_commit(readings, events)
        if f.bytes > self._deps.cfg.outbox_max_bytes:
            self._upkeep.wake()
        if self._publisher is not None:
            self._publisher.note(readings, events)

    # ------------------------------------------------------------------ queries

    async def dead_letters(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest dead-letter entries (for the API and CLI)."""
        return await self._deps.outbox.dead_letters(limit)


def _nothing() -> None:
    pass
