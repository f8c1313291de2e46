"""Inbound messages of a connection: commands to devices, and Home Assistant's status.

Commands arrive on ``<prefix>/<gateway>/cmd/<device>``; each is parsed, routed to the driver
that owns the device (:class:`~gateway.sync.deps.CommandRouting`) and answered on the result
topic (or the MQTT 5 Response Topic with its Correlation Data). See docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.commands import parse_command
from gateway.model import CommandResult, CommandStatus
from gateway.sync.deps import SyncDeps
from gateway.sync.mqtt import Link, LinkError, Message, response_properties
from gateway.sync.payload import result_payload, split_command_body

_LOGGER = logging.getLogger(__name__)

#: Commands handled at once per connection.
COMMAND_CONCURRENCY = 8


class Inbound:
    def __init__(self, deps: SyncDeps, *, on_ha_online: Callable[[], None]) -> None:
        self._deps = deps
        self._on_ha_online = on_ha_online

    async def receive(self, link: Link, tg: asyncio.TaskGroup, *, ha_here: bool) -> None:
        """Until the connection ends: each command in a task of ``tg`` (at most
        :data:`COMMAND_CONCURRENCY` at once)."""
        t = self._deps.topics
        limit = asyncio.Semaphore(COMMAND_CONCURRENCY)
        async for msg in link.messages():
            topic = msg.topic
            if ha_here and topic == t.ha_status:
                if msg.payload.strip() == b"online":
                    _LOGGER.info("Home Assistant is online: re-publishing discovery")
                    self._on_ha_online()
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
        deps = self._deps
        try:
            deps.counters.commands += 1
            props = msg.properties
            response_topic = getattr(props, "ResponseTopic", None) if props else None
            correlation = getattr(props, "CorrelationData", None) if props else None
            request_id: str | None = None
            payload = msg.payload
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
                    result = await deps.router.execute(device, command)
            if not result.ok:
                deps.counters.command_errors += 1
            out = result_payload(
                device, result.status.value, result.detail, dict(result.state), request_id
            )
            topic = response_topic or deps.topics.result(device)
            try:
                await link.publish(
                    topic,
                    out,
                    qos=1,
                    properties=response_properties(link.v5, correlation),
                    limit_s=deps.timing.connect_timeout_s,
                )
            except ValueError as exc:
                _LOGGER.warning("cannot answer a command on %r: %s", topic, exc)
        except LinkError:
            raise
        except Exception:
            _LOGGER.exception("command to %s failed in the sync agent", device)
            deps.counters.command_errors += 1
        finally:
            limit.release()
