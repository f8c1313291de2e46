"""One broker connection's session: connect, serve, goodbye.

:class:`LinkSession` keeps no supervisor of its own: :meth:`LinkSession.run` is one session
and the service runs it under its one :class:`~drivers.supervisor.Supervisor` for the link
(``sync-upstream``, ``sync-ha``; backoff from ``upstream.reconnect_*``:
:attr:`LinkSession.supervisor_timing`), which it hands over with :meth:`LinkSession.attach`.
One session: connect (Last Will ``offline``, retained), publish ``online``, subscribe to the
commands (and Home Assistant's status), then serve — inbound commands, the telemetry pump
(upstream only), the Home Assistant publisher (where Home Assistant is) — until the
connection ends. Then, bounded and best effort, also on errors: collect in-flight PUBACKs,
publish ``offline`` and disconnect cleanly (the broker only sends the Last Will after an
unclean loss).

Whether the session is being stopped is that supervisor's :attr:`stopping` flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from drivers.errors import NeedsHumanError
from drivers.supervisor import Supervisor, SupervisorStatus, Timing, describe, leaves
from gateway.sync.deps import SyncDeps
from gateway.sync.figures import LinkState
from gateway.sync.inbound import Inbound
from gateway.sync.mqtt import Link, LinkError, open_link
from gateway.sync.outbox import run_to_end
from gateway.sync.pump import Pump
from gateway.sync.send import TransientRefusal

if TYPE_CHECKING:
    from gateway.sync.publisher import HaPublisher  # only with Home Assistant

_LOGGER = logging.getLogger(__name__)


class LinkSession:
    """A broker connection; :meth:`run` is one session (``name``: its supervisor's)."""

    def __init__(
        self,
        name: str,
        state: LinkState,
        deps: SyncDeps,
        *,
        inbound: Inbound,
        pump: Pump | None,
        publisher: HaPublisher | None,
        ready: asyncio.Event,
    ) -> None:
        self.name = name
        self.state = state
        self._deps = deps
        #: What this link serves: commands always, telemetry (upstream), Home Assistant.
        self._inbound = inbound
        self._pump = pump
        self._publisher = publisher
        #: Set once the agent has loaded the outbox.
        self._ready = ready
        self._late = deps.counters.late
        cfg = deps.cfg
        #: The backoff of the supervisor that runs this link's sessions.
        self.supervisor_timing = Timing(
            cfg.reconnect_min_s,
            cfg.reconnect_max_s,
            cfg.reconnect_stable_s,
            deps.timing.stop_timeout_s,
        )
        self._sup: Supervisor | None = None

    def attach(self, supervisor: Supervisor) -> None:
        """The supervisor running :meth:`run`: its ``stopping`` flag, its status."""
        self._sup = supervisor

    @property
    def stopping(self) -> bool:
        return self._sup is not None and self._sup.stopping

    @property
    def status(self) -> SupervisorStatus | None:
        """The supervisor's status (state, reason), None before one is attached."""
        return self._sup.status if self._sup is not None else None

    async def run(self) -> None:
        """One session; raises why it ended (the supervisor classifies it). Waits first
        until the agent has loaded the outbox."""
        await self._ready.wait()
        try:
            await self._connect_and_serve()
        except Exception as exc:  # recorded and re-raised: the supervisor classifies it
            if not self.stopping:
                self.state.last_error = describe(exc)
            raise

    async def _connect_and_serve(self) -> None:
        state = self.state
        s = state.settings
        timing = self._deps.timing
        link = await open_link(
            s, will_topic=self._deps.topics.status, timeout_s=timing.connect_timeout_s
        )
        await link.connect()
        try:
            state.connected = True
            state.connected_since = time.time()
            state.connects += 1
            state.last_error = ""
            state.max_packet_size = link.max_packet_size
            if self._sup is not None:
                self._sup.mark_running()
            _LOGGER.info("connected to %s (MQTT %s)", s.display(), s.protocol)
            try:
                await self._serve(link)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                # only a connection that broke with messages in flight is a strike: a
                # refusal, a quota or a missing PUBACK says nothing about the message
                if self._pump is not None and not self.stopping and connection_broke(link, exc):
                    await run_to_end(self._pump.connection_lost(), "sync: strike", self._late)
                raise
            finally:
                state.connected = False
                await run_to_end(self._goodbye(link), "sync: goodbye", self._late)
                link.drop_pending()
                # the clean DISCONNECT, bounded: a stalled link must not hold up a stop
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(timing.goodbye_s):
                        await run_to_end(link.disconnect(), "sync: disconnect", self._late)
        finally:
            link.close()
            if self._pump is not None:
                # the goodbye returns at once when the link is lost: never struck later
                self._pump.acks.end_connection()

    async def _serve(self, link: Link) -> None:
        t = self._deps.topics
        ha_here = self._publisher is not None
        await link.publish(t.status, b"online", qos=1, retain=True)
        await link.subscribe(t.commands, qos=1)
        if ha_here:
            await link.subscribe(t.ha_status, qos=1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._inbound.receive(link, tg, ha_here=ha_here), name="sync-receive")
            if self._pump is not None:
                tg.create_task(self._pump.run(link), name="sync-pump")
            if self._publisher is not None:
                tg.create_task(self._publisher.run(link), name="sync-ha-state")

    async def _goodbye(self, link: Link) -> None:
        """Wait briefly for in-flight PUBACKs, then ``offline`` (retained)."""
        if link.lost.done():
            return
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await self._pump.acks.drain_inflight()
        with contextlib.suppress(Exception):
            fut = link.send(self._deps.topics.status, b"offline", qos=1, retain=True)
            await link.wait_ack(fut, self._deps.timing.goodbye_s)


def connection_broke(link: Link, exc: BaseException) -> bool:
    """Whether a session ended because the connection itself was lost (a strike against
    the oldest message in flight), not because of a refusal (ACL, bad topic: needs a
    human; quota: transient), a PUBACK or publish timeout, or another error."""
    if not link.lost.done():
        return False
    found = leaves(exc)
    if any(isinstance(e, NeedsHumanError | TransientRefusal | TimeoutError) for e in found):
        return False
    return any(isinstance(e, LinkError) for e in found)
