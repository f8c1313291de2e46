"""The sync agent: drains the store's outbox to MQTT in batches, loses nothing.

One component of the service (``service.components``, name ``"sync"``). Its tasks:

* ``sync-upstream``: a :class:`~drivers.supervisor.Supervisor` (capped exponential backoff
  with full jitter, reset after a stable period) around one connection session: status
  ``online``, the telemetry pump, commands, and Home Assistant when it shares the broker;
* ``sync-ha``: the same for a separate Home Assistant broker, when configured;
* ``sync-maintain``: outbox bounds (bytes, TTL), re-stamping, depth figures;
* ``sync-acks``: deletes acknowledged rows in small transactions.

Outbox rows are deleted only after the PUBACK of the message that carried them; a crash at
any moment loses nothing and resends at most the batches that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.errors import NeedsHumanError, TransientError
from drivers.supervisor import State, Supervisor, Timing, describe, leaves
from gateway.commands import parse_command
from gateway.config import HomeAssistantSection, UpstreamSection
from gateway.driver import DriverHealth, Health
from gateway.metrics import base_name
from gateway.model import CommandResult, CommandStatus, Event, Reading, Value
from gateway.store import OutboxRow, Store, event_size, reading_size
from gateway.sync import ha
from gateway.sync.mqtt import (
    BrokerSettings,
    Link,
    LinkError,
    Message,
    open_link,
    publish_properties,
    response_properties,
)
from gateway.sync.outbox import PRIORITY_METRICS, Outbox, run_to_end
from gateway.sync.payload import (
    ClockFix,
    Refusal,
    Topics,
    classify_refusal,
    encode_batch,
    is_corrupt,
    result_payload,
    split_command_body,
)

if TYPE_CHECKING:
    from gateway.service import Service

_LOGGER = logging.getLogger(__name__)

# Timing constants: module level so tests can shorten them.
#: Seconds to wait for CONNACK / SUBACK / a status PUBACK.
CONNECT_TIMEOUT_S = 10.0
#: Seconds to wait for the PUBACK of a telemetry batch before the connection is recycled.
ACK_TIMEOUT_S = 30.0
#: Batches in flight (never more than the broker's Receive Maximum).
INFLIGHT = 8
#: Backlog batches read per outbox query while draining.
BACKLOG_FETCH_BATCHES = 4
#: Acknowledged rows are deleted every this many seconds (or sooner when many).
ACK_FLUSH_S = 0.1
ACK_FLUSH_MESSAGES = 50
#: Maintenance tick; TTL checks and exact depth recounts are rarer.
MAINTAIN_S = 1.0
TTL_CHECK_S = 60.0
RECOUNT_S = 300.0
#: Home Assistant state publishing tick, device availability refresh.
HA_TICK_S = 0.5
HA_AVAILABILITY_S = 30.0
HA_FIRST_REFRESH_S = 1.0
#: Seconds a clean stop waits for in-flight PUBACKs and for the ``offline`` status.
GOODBYE_S = 1.0
#: Bytes reserved for the PUBLISH header, topic and properties of a batch.
PUBLISH_OVERHEAD = 96
#: Connection losses with the same batch oldest in flight before it is split / dead-lettered.
POISON_STRIKES = 3
#: Commands handled at once per connection.
COMMAND_CONCURRENCY = 8


class TransientRefusal(TransientError):
    """The broker answered a PUBLISH with a retry-later reason code."""


@dataclass(slots=True)
class LinkState:
    """Live figures of one broker connection."""

    settings: BrokerSettings
    connected: bool = False
    connected_since: float | None = None
    connects: int = 0
    last_error: str = ""
    max_packet_size: int | None = None


@dataclass(slots=True)
class SyncCounters:
    batches_sent: int = 0
    readings_sent: int = 0
    rows_acked: int = 0
    refused: int = 0
    splits: int = 0
    commands: int = 0
    command_errors: int = 0
    discovery_published: int = 0
    #: Shielded work (store writes, goodbye) that failed after its caller was cancelled.
    late_failures: int = 0
    last_publish: float | None = None
    last_ack: float | None = None


@dataclass(slots=True)
class _HaCache:
    """Latest state per device for the retained Home Assistant state topics."""

    values: dict[str, dict[str, Value]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    announced: dict[str, set[str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: Event entities announced per device (re-announced with new action types).
    event_entities: ha.EventCatalog = field(default_factory=ha.EventCatalog)
    availability: dict[str, bytes] = field(default_factory=dict)


def upstream_settings(cfg: UpstreamSection, gateway_id: str) -> BrokerSettings | None:
    if not cfg.url:
        return None
    return BrokerSettings(
        url=cfg.url,
        client_id=cfg.client_id or f"migw-{gateway_id}",
        protocol=cfg.protocol,
        username=cfg.username,
        password=cfg.password,
        password_file=cfg.password_file,
        ca_file=cfg.ca_file,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        allow_insecure=cfg.allow_insecure,
        keepalive=cfg.keepalive,
    )


def ha_settings(
    cfg: HomeAssistantSection, up: UpstreamSection, gateway_id: str
) -> BrokerSettings | None:
    """Settings of a separate Home Assistant broker; None when HA shares the upstream one."""
    if not cfg.enabled or not cfg.url:
        return None
    return BrokerSettings(
        url=cfg.url,
        client_id=f"{up.client_id or f'migw-{gateway_id}'}-ha",
        protocol=up.protocol,
        username=cfg.username,
        password=cfg.password,
        password_file=cfg.password_file,
        ca_file=cfg.ca_file,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        allow_insecure=cfg.allow_insecure,
        keepalive=up.keepalive,
    )


class SyncAgent:
    """The ``sync`` component. See the module docstring and docs/mqtt.md."""

    name = "sync"

    def __init__(self, service: Service) -> None:
        cfg = service.config
        self._svc = service
        self._cfg = cfg.upstream
        self._ha_cfg = cfg.homeassistant
        self.gateway_id = cfg.gateway.id
        self.topics = Topics(
            cfg.upstream.topic_prefix, cfg.gateway.id, cfg.homeassistant.discovery_prefix
        )
        up = upstream_settings(cfg.upstream, cfg.gateway.id)
        ha_sep = ha_settings(cfg.homeassistant, cfg.upstream, cfg.gateway.id)
        self.upstream = LinkState(up) if up is not None else None
        self.ha_link = LinkState(ha_sep) if ha_sep is not None else None
        #: Home Assistant rides on the upstream connection.
        self._ha_shared = cfg.homeassistant.enabled and ha_sep is None and up is not None
        self._sup_up: Supervisor | None = None
        self._sup_ha: Supervisor | None = None
        self._outbox: Outbox | None = None
        self.counters = SyncCounters()
        # outbox figures (exact after a recount, tracked in between)
        self._rows = 0
        self._bytes = 0
        self._events = 0
        self._oldest_seq: int | None = None
        self._oldest_ts: float | None = None
        #: Acknowledged messages not yet deleted: (first seq, last seq, rows, bytes).
        self._acked: list[tuple[int, int, int, int]] = []
        self._ack_lock = asyncio.Lock()
        self._ack_wake = asyncio.Event()
        self._maintain_wake = asyncio.Event()
        # live stream
        self._wake = asyncio.Event()
        self._live_boundary = 1 << 62
        self._live_pending = 0
        self._live_first: float | None = None
        self._live_urgent = False
        self._unsynced_seen = True
        self._backlog_left = 0
        # home assistant
        self._ha = _HaCache()
        self._ha_wake = asyncio.Event()
        self._ha_republish = asyncio.Event()
        self._running = False
        self._flight: dict[asyncio.Future[int], Sequence[OutboxRow]] = {}
        #: (first seq of the oldest batch in flight at a connection loss, losses in a row)
        self._suspect: tuple[int, int] | None = None
        #: Rows per message while a suspected poison batch is being narrowed down.
        self._cautious: int | None = None
        self._cautious_seq = 0
        #: Telemetry messages sent (all sessions), and the number of the message of this
        #: session that carried the suspect row (None: not sent yet on this connection).
        self._sent = 0
        self._suspect_sent: int | None = None
        #: The broker refused the telemetry topic (ACL, bad topic) and has acknowledged no
        #: telemetry since: a connection loss then says nothing about a message (Mosquitto
        #: 2.0.11 drops the connection right after a PUBACK 0x87, sometimes before it is
        #: read).
        self._topic_refused = False

    # ------------------------------------------------------------------ component

    @property
    def store(self) -> Store:
        store = self._svc.store
        if store is None:
            raise RuntimeError("the store is closed")
        return store

    async def run(self) -> None:
        store = self.store
        outbox = Outbox(store)
        await outbox.load()
        self._outbox = outbox
        await self._recount()
        unsubscribe = store.subscribe(self._on_commit)
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._maintain(), name="sync-maintain")
                tg.create_task(self._ack_loop(), name="sync-acks")
                timing = Timing(
                    self._cfg.reconnect_min_s,
                    self._cfg.reconnect_max_s,
                    self._cfg.reconnect_stable_s,
                )
                if self.upstream is not None:
                    self._sup_up = Supervisor(
                        "sync-upstream", self._upstream_session, timing=timing, logger=_LOGGER
                    )
                    tg.create_task(self._sup_up.run(), name="sync-upstream")
                if self.ha_link is not None:
                    self._sup_ha = Supervisor(
                        "sync-ha", self._ha_session, timing=timing, logger=_LOGGER
                    )
                    tg.create_task(self._sup_ha.run(), name="sync-ha")
        finally:
            self._running = False
            unsubscribe()
            if self._svc.store is not None:
                with contextlib.suppress(Exception):
                    await run_to_end(self._flush_acks(), "sync: flushing acks", self._late)

    def _late(self) -> None:
        self.counters.late_failures += 1

    def late_failures(self) -> int:
        return self.counters.late_failures + (self._outbox.late_failures if self._outbox else 0)

    def health(self) -> DriverHealth:
        reasons: list[str] = []
        for label, link, sup in (
            ("upstream", self.upstream, self._sup_up),
            ("home assistant broker", self.ha_link, self._sup_ha),
        ):
            if link is None or link.connected:
                continue
            why = link.last_error or (sup.status.reason if sup is not None else "") or "connecting"
            reasons.append(f"{label} {link.settings.display()} disconnected: {why}")
        counters = {
            "outbox_rows": self._rows,
            "outbox_bytes": self._bytes,
            "dropped": self._outbox.counters.dropped if self._outbox else 0,
            "expired": self._outbox.counters.expired if self._outbox else 0,
            "dead_letters": self._outbox.counters.dead_letters if self._outbox else 0,
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
        oc = self._outbox.counters if self._outbox else None
        oldest_age = None
        if self._oldest_ts is not None:
            oldest_age = max(0.0, now - self._oldest_ts)

        def link_stats(link: LinkState | None, sup: Supervisor | None) -> dict[str, Any] | None:
            if link is None:
                return None
            if link.connected:
                state = "connected"
            elif sup is not None and sup.status.state is State.FAILED:
                state = "failed"
            elif sup is not None and sup.status.state is State.BACKOFF:
                state = "backoff"
            else:
                state = "connecting"
            return {
                "url": link.settings.display(),
                "state": state,
                "connected": link.connected,
                "connected_since": link.connected_since,
                "connects": link.connects,
                "last_error": link.last_error or (sup.status.reason if sup else ""),
                "max_packet_size": link.max_packet_size,
            }

        return {
            "enabled": self.upstream is not None,
            "state": (link_stats(self.upstream, self._sup_up) or {"state": "disabled"})["state"],
            "upstream": link_stats(self.upstream, self._sup_up),
            "homeassistant": {
                "enabled": self._ha_cfg.enabled,
                "broker": "upstream" if self._ha_shared else link_stats(self.ha_link, self._sup_ha),
            },
            "outbox": {
                "rows": self._rows,
                "bytes": self._bytes,
                "events": self._events,
                "oldest_seq": self._oldest_seq,
                "oldest_age_s": oldest_age,
                "backlog_rows": self._backlog_left,
                "max_bytes": self._cfg.outbox_max_bytes,
                "ttl_days": self._cfg.outbox_ttl_days,
                "full_strategy": self._cfg.outbox_full,
            },
            "dropped": oc.dropped if oc else 0,
            "expired": oc.expired if oc else 0,
            "dead_letters": oc.dead_letters if oc else 0,
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

    def _on_commit(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        """Called by the store writer after each commit: cheap, never raises."""
        boundary = self._live_boundary
        live = 0
        nbytes = 0
        urgent = False
        for r in readings:
            nbytes += reading_size(r)
            if r.seq > boundary:
                live += 1
                if base_name(r.metric) in PRIORITY_METRICS:
                    urgent = True
            if not r.stamp.synced:
                self._unsynced_seen = True
        for e in events:
            nbytes += event_size(e)
            if e.seq > boundary:
                live += 1
                urgent = True
            if not e.stamp.synced:
                self._unsynced_seen = True
        n = len(readings) + len(events)
        self._rows += n
        self._bytes += nbytes
        self._events += len(events)
        if self._oldest_seq is None and n:
            first = readings[0] if readings else events[0]
            self._oldest_seq, self._oldest_ts = first.seq, first.stamp.wall
        if live:
            if self._live_pending == 0:
                self._live_first = time.monotonic()
            self._live_pending += live
            self._live_urgent = self._live_urgent or urgent
            if (
                urgent
                or self._live_pending == live
                or self._live_pending >= self._cfg.batch_max_readings
            ):
                self._wake.set()
        if self._bytes > self._cfg.outbox_max_bytes:
            self._maintain_wake.set()
        if self._ha_cfg.enabled and (self._ha_shared or self.ha_link is not None):
            self._ha_note(readings, events)

    def _ha_note(self, readings: Sequence[Reading], events: Sequence[Event]) -> None:
        cache = self._ha
        for r in readings:
            cache.values.setdefault(r.device_id, {})[r.metric] = r.value
            cache.dirty.add(r.device_id)
        for e in events:
            if len(cache.events) < 1000:
                cache.events.append(e)
        if readings or events:
            self._ha_wake.set()

    # ------------------------------------------------------------------ maintenance

    async def _recount(self) -> None:
        assert self._outbox is not None
        d = await self._outbox.depth()
        self._rows, self._bytes, self._events = d.depth, d.bytes, d.events
        self._oldest_seq, self._oldest_ts = d.oldest_seq, d.oldest_ts

    def _clock_fix(self) -> ClockFix:
        clock = self._svc.clock
        if clock.synchronized():
            return ClockFix(clock.boot_id, clock.wall() - clock.mono())
        return ClockFix(clock.boot_id, None)

    async def _maintain(self) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        cfg = self._cfg
        last_ttl = -1e9
        last_recount = time.monotonic()
        while True:
            fix = self._clock_fix()
            if fix.offset is not None and self._unsynced_seen:
                self._unsynced_seen = False
                await outbox.restamp(fix.boot, fix.offset)
            now = time.monotonic()
            if fix.offset is not None and now - last_ttl >= TTL_CHECK_S:
                last_ttl = now
                cutoff = self._svc.clock.wall() - cfg.outbox_ttl_days * 86400
                rows, _ = await outbox.expire(cutoff)
                if rows:
                    await self._recount()
            if self._bytes > cfg.outbox_max_bytes:
                await outbox.enforce_bytes(cfg.outbox_max_bytes, cfg.outbox_full)
                await self._recount()
                last_recount = now
            elif now - last_recount >= RECOUNT_S:
                last_recount = now
                await self._recount()
            else:
                self._oldest_seq, self._oldest_ts = await outbox.oldest()
                if self._oldest_seq is None:
                    self._rows = self._bytes = self._events = 0
            self._maintain_wake.clear()
            await _wait_event(self._maintain_wake, MAINTAIN_S)

    async def _ack_loop(self) -> None:
        while True:
            await _wait_event(self._ack_wake, ACK_FLUSH_S)
            self._ack_wake.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        async with self._ack_lock:
            if not self._acked or self._outbox is None:
                return
            batch, self._acked = self._acked, []
            deleted = await self._outbox.ack([(first, last) for first, last, _, _ in batch])
            self.counters.rows_acked += deleted
            if deleted == sum(n for _, _, n, _ in batch):
                self._rows = max(0, self._rows - deleted)
                self._bytes = max(0, self._bytes - sum(z for _, _, _, z in batch))
            # else: rows were dropped meanwhile; the next recount fixes the figures

    # ------------------------------------------------------------------ sessions

    def _stopping(self) -> bool:
        """A stop was requested (the supervisors' flag, never ``Task.cancelling()``)."""
        return any(sup is not None and sup.stopping for sup in (self._sup_up, self._sup_ha))

    async def _upstream_session(self) -> None:
        assert self.upstream is not None
        await self._session(self.upstream, self._sup_up, telemetry=True, ha_here=self._ha_shared)

    async def _ha_session(self) -> None:
        assert self.ha_link is not None
        await self._session(self.ha_link, self._sup_ha, telemetry=False, ha_here=True)

    async def _session(
        self, state: LinkState, sup: Supervisor | None, *, telemetry: bool, ha_here: bool
    ) -> None:
        try:
            await self._connect_and_serve(state, sup, telemetry=telemetry, ha_here=ha_here)
        except Exception as exc:  # recorded and re-raised: the supervisor classifies it
            if sup is None or not sup.stopping:
                self._record(state, exc)
            raise

    def _record(self, state: LinkState, error: BaseException) -> None:
        """Record why a session ended (for health and stats)."""
        state.last_error = describe(error)

    async def _connect_and_serve(
        self, state: LinkState, sup: Supervisor | None, *, telemetry: bool, ha_here: bool
    ) -> None:
        s = state.settings
        link = await open_link(s, will_topic=self.topics.status, timeout_s=CONNECT_TIMEOUT_S)
        try:
            await link.__aenter__()
        except BaseException:
            link.close()
            raise
        try:
            state.connected = True
            state.connected_since = time.time()
            state.connects += 1
            state.last_error = ""
            state.max_packet_size = link.max_packet_size
            if sup is not None:
                sup.mark_running()
            _LOGGER.info("connected to %s (MQTT %s)", s.display(), s.protocol)
            try:
                await self._serve(link, telemetry=telemetry, ha_here=ha_here)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                # only a connection that broke with messages in flight is a strike: a
                # refusal, a quota or a missing PUBACK says nothing about the message
                if (
                    telemetry
                    and not self._stopping()
                    and not self._topic_refused
                    and _connection_broke(link, exc)
                ):
                    await run_to_end(self._strike(), "sync: strike", self._late)
                raise
            finally:
                state.connected = False
                # ``offline`` before the clean DISCONNECT (the broker only sends the Last
                # Will after an unclean loss); bounded, best effort, also on errors
                await run_to_end(
                    self._goodbye(link, telemetry=telemetry), "sync: goodbye", self._late
                )
                link.drop_pending()
                # the clean DISCONNECT, bounded: a stalled link must not hold up a stop
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(GOODBYE_S):
                        await run_to_end(
                            link.__aexit__(None, None, None), "sync: disconnect", self._late
                        )
        finally:
            link.close()
            if telemetry:
                # this connection's batches are no longer in flight (the goodbye returns
                # at once when the link is lost): never struck by a later session
                self._flight = {}

    async def _strike(self) -> None:
        """The connection broke with batches in flight: count a strike against the oldest.

        Some brokers drop the connection instead of refusing a message they will not take
        (Mosquitto's ``message_size_limit``).
        Each loss halves the next messages around the oldest batch in flight until it goes
        through; a single row that is the oldest in flight at POISON_STRIKES losses in a row
        goes to the dead-letter table. A message sent after the suspect (or carrying it)
        that is acknowledged clears the suspicion. Called only for a real connection loss
        (:func:`_connection_broke`), never for a refusal, a quota or a PUBACK timeout.
        """
        oldest = next(iter(self._flight.values()), None)
        if oldest is None or self._outbox is None:
            return
        first = oldest[0].seq
        if len(oldest) > 1:
            # narrow it down at once: halving costs nothing if it was only the network
            self._cautious = max(1, len(oldest) // 2)
            self._cautious_seq = first
            self.counters.splits += 1
            _LOGGER.debug(
                "connection lost with seq %d in flight: %d row(s) per message",
                first,
                self._cautious,
            )
            return
        if self._suspect is not None and self._suspect[0] == first:
            self._suspect = (first, self._suspect[1] + 1)
        else:
            self._suspect = (first, 1)
        if self._suspect[1] < POISON_STRIKES:
            return
        self._suspect = None
        self._cautious = None
        await self._outbox.dead_letter(
            oldest,
            f"the connection broke {POISON_STRIKES} times while this message was the oldest"
            " in flight (the broker refuses it: message size limit?)",
        )
        self._rows -= 1
        self._bytes -= oldest[0].size

    async def _goodbye(self, link: Link, *, telemetry: bool) -> None:
        """Wait briefly for in-flight PUBACKs, then ``offline`` (retained)."""
        if link.lost.done():
            return
        if telemetry:
            with contextlib.suppress(Exception):
                await self._drain_inflight()
        with contextlib.suppress(Exception):
            fut = link.send(self.topics.status, b"offline", qos=1, retain=True)
            await link.wait_ack(fut, GOODBYE_S)

    async def _drain_inflight(self) -> None:
        """Collect the PUBACKs of batches still in flight (their waiters may be gone)."""
        flight, self._flight = self._flight, {}
        if not flight:
            return
        done, _ = await asyncio.wait(flight, timeout=GOODBYE_S)
        for fut in done:
            if fut.cancelled() or fut.exception() is not None:
                continue
            if classify_refusal(fut.result()) is None:
                self._acked.append(_ack_entry(flight[fut]))

    async def _serve(self, link: Link, *, telemetry: bool, ha_here: bool) -> None:
        t = self.topics
        await link.publish(t.status, b"online", qos=1, retain=True)
        await link.subscribe(t.commands, qos=1)
        if ha_here:
            await link.subscribe(t.ha_status, qos=1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._receive(link, tg, ha_here=ha_here), name="sync-receive")
            if telemetry:
                tg.create_task(self._pump(link), name="sync-pump")
            if ha_here:
                tg.create_task(self._ha_loop(link), name="sync-ha-state")

    # ------------------------------------------------------------------ telemetry pump

    def _packet_limit(self, link: Link) -> int:
        limit = self._cfg.max_message_bytes
        if link.max_packet_size:
            limit = min(limit, link.max_packet_size)
        return limit

    async def _pump(self, link: Link) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        cfg = self._cfg
        n_cfg = cfg.batch_max_readings
        t_max = cfg.batch_max_ms / 1000
        window = min(INFLIGHT, link.receive_maximum or INFLIGHT)
        slots = asyncio.Semaphore(window)
        # rows acknowledged before this connection are deleted before anything is fetched
        await self._flush_acks()
        boundary = self.store.last_seq
        self._live_boundary = boundary
        self._live_pending = 0
        self._live_first = None
        self._live_urgent = False
        live_cursor = boundary
        backlog_cursor = 0
        backlog_done = False
        self._backlog_left = self._rows
        next_backlog = time.monotonic()
        prefetch: asyncio.Task[list[OutboxRow]] | None = None
        self._flight = {}
        self._suspect_sent = None
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    now = time.monotonic()
                    n_max = min(n_cfg, self._cautious or n_cfg)
                    if self._live_pending and (
                        self._live_urgent
                        or self._live_pending >= n_max
                        or now - (self._live_first or now) >= t_max
                    ):
                        await slots.acquire()
                        rows = await outbox.fetch(live_cursor, n_max)
                        if rows:
                            live_cursor = rows[-1].seq
                        self._live_pending = max(0, self._live_pending - len(rows))
                        if not rows or self._live_pending == 0:
                            self._live_pending = 0
                            self._live_urgent = False
                            self._live_first = None
                        else:
                            self._live_first = now
                        if rows:
                            await self._send(link, rows, False, slots, tg)
                        else:
                            slots.release()
                        continue
                    if not backlog_done and now >= next_backlog:
                        # a few batches per query: fewer transactions while draining
                        per_query = max(1, min(BACKLOG_FETCH_BATCHES, int(cfg.drain_rate // n_max)))
                        limit = n_max * per_query
                        await slots.acquire()
                        if prefetch is not None:
                            rows, prefetch = await prefetch, None
                        else:
                            rows = await outbox.fetch(backlog_cursor, limit, upto=boundary)
                        if not rows:
                            slots.release()
                            backlog_done = True
                            self._backlog_left = 0
                            continue
                        backlog_cursor = rows[-1].seq
                        if len(rows) >= limit:
                            # read the next chunk while this one is encoded and sent
                            prefetch = tg.create_task(
                                outbox.fetch(backlog_cursor, limit, upto=boundary),
                                name="sync-prefetch",
                            )
                        self._backlog_left = max(0, self._backlog_left - len(rows))
                        for i in range(0, len(rows), n_max):
                            if i:
                                await slots.acquire()
                            await self._send(link, rows[i : i + n_max], True, slots, tg)
                        next_backlog = max(now, next_backlog) + len(rows) / cfg.drain_rate
                        continue
                    waits: list[float] = []
                    if self._live_pending:
                        waits.append((self._live_first or now) + t_max - now)
                    if not backlog_done:
                        waits.append(next_backlog - now)
                    self._wake.clear()
                    await _wait_event(self._wake, max(0.0, min(waits)) if waits else None)
        finally:
            self._live_boundary = 1 << 62

    async def _send(
        self,
        link: Link,
        rows: Sequence[OutboxRow],
        backlog: bool,
        slots: asyncio.Semaphore,
        tg: asyncio.TaskGroup,
    ) -> None:
        """Publish rows as one batch (or several when too large); one slot is held."""
        assert self._outbox is not None
        held = True  # the caller acquired one slot for this message

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        try:
            rows = await self._drop_corrupt(rows)
            if not rows:
                release()
                return
            self._outbox.counters.batch += 1
            enc = encode_batch(
                self.gateway_id,
                self._outbox.counters.batch,
                rows,
                self._clock_fix(),
                backlog=backlog,
                compress=self._cfg.compress,
            )
            limit = self._packet_limit(link)
            size = len(enc.payload) + len(self.topics.telemetry) + PUBLISH_OVERHEAD
            if size > limit:
                release()
                if len(rows) > 1:
                    self.counters.splits += 1
                    half = len(rows) // 2
                    await slots.acquire()
                    await self._send(link, rows[:half], backlog, slots, tg)
                    await slots.acquire()
                    await self._send(link, rows[half:], backlog, slots, tg)
                else:
                    await self._outbox.dead_letter(
                        rows,
                        f"message of {size} bytes exceeds the maximum packet size ({limit} bytes)",
                        enc.payload,
                    )
                    self._rows -= 1
                    self._bytes -= rows[0].size
                return
            fut = link.send(
                self.topics.telemetry,
                enc.payload,
                qos=1,
                properties=publish_properties(link.v5, enc.content_type),
            )
        except BaseException:
            release()
            raise
        self._flight[fut] = rows
        self._sent += 1
        sent = self._sent
        if self._suspect is not None and rows[0].seq <= self._suspect[0] <= rows[-1].seq:
            self._suspect_sent = sent
        self.counters.batches_sent += 1
        self.counters.readings_sent += len(rows)
        self.counters.last_publish = time.time()
        tg.create_task(self._await_ack(link, fut, rows, backlog, slots, tg, enc.payload, sent))

    async def _drop_corrupt(self, rows: Sequence[OutboxRow]) -> Sequence[OutboxRow]:
        assert self._outbox is not None
        bad = [r for r in rows if is_corrupt(r)]
        for r in bad:
            await self._outbox.dead_letter([r], "corrupt outbox row (body is not a JSON object)")
            self._rows -= 1
            self._bytes -= r.size
        if not bad:
            return rows
        return [r for r in rows if r not in bad]

    async def _await_ack(
        self,
        link: Link,
        fut: asyncio.Future[int],
        rows: Sequence[OutboxRow],
        backlog: bool,
        slots: asyncio.Semaphore,
        tg: asyncio.TaskGroup,
        payload: bytes,
        sent: int,
    ) -> None:
        assert self._outbox is not None
        try:
            code = await link.wait_ack(fut, ACK_TIMEOUT_S)
        finally:
            # a cancelled waiter leaves its entry: a clean stop still collects the PUBACK
            slots.release()
        self._flight.pop(fut, None)
        refusal = classify_refusal(code)
        if refusal is None:
            self._acked.append(_ack_entry(rows))
            self._topic_refused = False
            if self._cautious is not None and rows[0].seq <= self._cautious_seq <= rows[-1].seq:
                self._cautious = None  # the suspect went through: back to full batches
            if self._suspect_sent is not None and sent >= self._suspect_sent:
                # the broker took a message sent after the suspect: it was not the cause
                self._suspect = None
                self._suspect_sent = None
            self.counters.last_ack = time.time()
            if len(self._acked) >= ACK_FLUSH_MESSAGES:
                self._ack_wake.set()
            return
        self.counters.refused += 1
        what = f"the broker refused the message (reason code 0x{code:02X})"
        if refusal is Refusal.CONFIG:
            self._topic_refused = True
            raise NeedsHumanError(f"{what}: check the broker's ACL for {self.topics.telemetry}")
        if refusal is Refusal.TRANSIENT:
            raise TransientRefusal(what)
        _LOGGER.warning("%s for %d row(s) (seq %d-%d)", what, len(rows), rows[0].seq, rows[-1].seq)
        if len(rows) > 1:
            self.counters.splits += 1
            half = len(rows) // 2
            await slots.acquire()
            await self._send(link, rows[:half], backlog, slots, tg)
            await slots.acquire()
            await self._send(link, rows[half:], backlog, slots, tg)
        else:
            await self._outbox.dead_letter(rows, what, payload)
            self._rows -= 1
            self._bytes -= rows[0].size

    # ------------------------------------------------------------------ incoming

    async def _receive(self, link: Link, tg: asyncio.TaskGroup, *, ha_here: bool) -> None:
        t = self.topics
        limit = asyncio.Semaphore(COMMAND_CONCURRENCY)
        async for msg in link.messages():
            topic = msg.topic
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            if ha_here and topic == t.ha_status:
                if payload.strip() == b"online":
                    _LOGGER.info("Home Assistant is online: re-publishing discovery")
                    self._ha_republish.set()
                    self._ha_wake.set()
                continue
            device = t.parse_command_topic(topic)
            if device is None:
                _LOGGER.debug("ignored message on %s", topic)
                continue
            await limit.acquire()
            tg.create_task(self._command(link, msg, device, limit), name=f"sync-cmd-{device}")

    async def _command(
        self, link: Link, msg: Message, device: str, limit: asyncio.Semaphore
    ) -> None:
        try:
            self.counters.commands += 1
            props = msg.properties
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            correlation = getattr(props, "CorrelationData", None) if props else None
            request_id: str | None = None
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            if not payload.strip():
                # an empty message clears a retained command: nothing to do, nothing to answer
                _LOGGER.debug("empty message on the command topic of %s ignored", device)
                return
            if msg.retain:
                result = CommandResult(CommandStatus.INVALID, "retained commands are ignored")
            else:
                try:
                    body, request_id = split_command_body(payload)
                    command = parse_command(body)
                except ValueError as exc:
                    result = CommandResult(CommandStatus.INVALID, str(exc))
                else:
                    result = await self._svc.command(device, command)
            if not result.ok:
                self.counters.command_errors += 1
            out = result_payload(
                device, result.status.value, result.detail, dict(result.state), request_id
            )
            topic = response_topic or self.topics.result(device)
            try:
                await link.publish(
                    topic,
                    out,
                    qos=1,
                    properties=response_properties(link.v5, correlation),
                    limit_s=CONNECT_TIMEOUT_S,
                )
            except ValueError as exc:
                _LOGGER.warning("cannot answer a command on %r: %s", topic, exc)
        except LinkError:
            raise
        except Exception:
            _LOGGER.exception("command to %s failed in the sync agent", device)
            self.counters.command_errors += 1
        finally:
            limit.release()

    # ------------------------------------------------------------------ home assistant

    async def _ha_loop(self, link: Link) -> None:
        await self._ha_publish_all(link)
        # a first refresh soon after connecting picks up devices registered meanwhile
        last_avail = time.monotonic() - HA_AVAILABILITY_S + HA_FIRST_REFRESH_S
        while True:
            await _wait_event(self._ha_wake, HA_TICK_S)
            self._ha_wake.clear()
            if self._ha_republish.is_set():
                self._ha_republish.clear()
                await self._ha_publish_all(link)
                continue
            await self._ha_publish_changes(link)
            if time.monotonic() - last_avail >= HA_AVAILABILITY_S:
                last_avail = time.monotonic()
                await self._ha_availability(link)

    def _commandable(self, device_id: str) -> bool:
        return any(d.owns(device_id) for d in self._svc.drivers)

    async def _ha_publish_all(self, link: Link) -> None:
        t = self.topics
        cache = self._ha
        gw = ha.gateway_entity(t)
        await link.publish(gw.topic, gw.payload(), qos=1, retain=True)
        cache.announced.clear()
        cache.event_entities.forget()
        for dev in await self.store.devices():
            stored = await self.store.state(dev.id)
            values = {m: v[0] for m, v in stored.items()}
            values.update(cache.values.get(dev.id, {}))
            cache.values[dev.id] = values
            await self._ha_announce(link, dev.id, set(values))
            avail = ha.availability_payload(dev.status)
            cache.availability[dev.id] = avail
            await link.publish(t.availability(dev.id), avail, qos=1, retain=True)
            if values:
                await link.publish(t.state(dev.id), ha.state_payload(values), qos=1, retain=True)
        cache.dirty.clear()

    async def _ha_announce(
        self, link: Link, device_id: str, metrics: set[str], event: Event | None = None
    ) -> bool:
        """Announce what is new of a device; False when it is no device (an automation's
        events have no entity to go to)."""
        cache = self._ha
        known = cache.announced.get(device_id)
        new = metrics - (known or set())
        if not new and event is None and known is not None:
            return True
        dev = await self.store.device(device_id)
        if dev is None:
            return False
        entities = ha.device_entities(
            self.topics,
            dev,
            new,
            commandable=self._commandable(device_id),
            values=cache.values.get(device_id),
            min_version=self._ha_cfg.min_version,
        )
        entities += cache.event_entities.device(self.topics, dev)
        if event is not None:
            entities += cache.event_entities.event(
                self.topics, dev, event.event, event.action, event.button
            )
        for ent in entities:
            await link.publish(ent.topic, ent.payload(), qos=1, retain=True)
            self.counters.discovery_published += 1
        if not entities and known is not None:
            return True
        seen = cache.announced.setdefault(device_id, set())
        seen |= new
        if device_id not in cache.availability:
            cache.availability[device_id] = b"online"
            await link.publish(self.topics.availability(device_id), b"online", qos=1, retain=True)
        return True

    async def _ha_publish_changes(self, link: Link) -> None:
        cache = self._ha
        t = self.topics
        events, cache.events = cache.events, []
        for ev in events:
            if await self._ha_announce(link, ev.device_id, set(), ev):
                topic, payload = ha.event_message(t, ev)
                await link.publish(topic, payload, qos=1)
        dirty, cache.dirty = cache.dirty, set()
        for device_id in sorted(dirty):
            values = cache.values.get(device_id, {})
            await self._ha_announce(link, device_id, set(values))
            await link.publish(t.state(device_id), ha.state_payload(values), qos=1, retain=True)

    async def _ha_availability(self, link: Link) -> None:
        """Availability changes, and discovery of devices not announced yet (a button that
        has sent nothing since the start)."""
        cache = self._ha
        for dev in await self.store.devices():
            if dev.id not in cache.announced:
                stored = await self.store.state(dev.id)
                values = cache.values.setdefault(dev.id, {})
                for metric, v in stored.items():
                    values.setdefault(metric, v[0])
                await self._ha_announce(link, dev.id, set(values))
            avail = ha.availability_payload(dev.status)
            if cache.availability.get(dev.id) != avail:
                cache.availability[dev.id] = avail
                await link.publish(self.topics.availability(dev.id), avail, qos=1, retain=True)

    # ------------------------------------------------------------------ queries

    async def dead_letters(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest dead-letter entries (for the API and CLI)."""
        if self._outbox is None:
            return []
        return await self._outbox.dead_letters(limit)


def _ack_entry(rows: Sequence[OutboxRow]) -> tuple[int, int, int, int]:
    return rows[0].seq, rows[-1].seq, len(rows), sum(r.size for r in rows)


def _connection_broke(link: Link, exc: BaseException) -> bool:
    """Whether a session ended because the connection itself was lost (a strike against
    the oldest message in flight), not because of a refusal (ACL, bad topic: needs a
    human; quota: transient), a PUBACK or publish timeout, or another error."""
    if not link.lost.done():
        return False
    found = leaves(exc)
    if any(isinstance(e, NeedsHumanError | TransientRefusal | TimeoutError) for e in found):
        return False
    return any(isinstance(e, LinkError) for e in found)


async def _wait_event(event: asyncio.Event, timeout_s: float | None) -> None:
    """Until ``event`` is set or ``timeout_s`` passes."""
    if timeout_s is None:
        await event.wait()
    else:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()
