"""Sending telemetry on one connection: encode, publish, await the PUBACK, split or
dead-letter.

A :class:`Sender` lives as long as one connection: a window of messages awaiting their
PUBACK (at most :data:`INFLIGHT`, never more than the broker's Receive Maximum), each
awaited in a task of the connection's task group. A message too big for the broker, or
refused with a reason code of 0x80 and up that is not a configuration problem nor a quota,
takes one path, :meth:`Sender.split_or_dead_letter`: a message of several rows is split in
halves, a single row goes to the dead-letter table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from drivers.errors import NeedsHumanError, TransientError
from gateway.store import OutboxRow
from gateway.sync.acks import Acks
from gateway.sync.deps import SyncDeps
from gateway.sync.mqtt import Link, publish_properties
from gateway.sync.payload import Refusal, classify_refusal, encode_batch, is_corrupt

_LOGGER = logging.getLogger(__name__)

#: Messages in flight (never more than the broker's Receive Maximum).
INFLIGHT = 8
#: Bytes reserved for the PUBLISH header, topic and properties of a batch.
PUBLISH_OVERHEAD = 96


class TransientRefusal(TransientError):
    """The broker answered a PUBLISH with a retry-later reason code (quota, busy)."""


async def dead_letter(
    deps: SyncDeps, rows: Sequence[OutboxRow], reason: str, payload: bytes | None = None
) -> None:
    """Move ``rows`` to the dead-letter table (with the payload that carried them)."""
    await deps.outbox.dead_letter(rows, reason, payload)
    deps.figures.removed(rows)


class Sender:
    """One connection's sending side. :meth:`send` is called with one of :attr:`slots`
    held; the slot is released when the message is answered (or was never sent)."""

    def __init__(self, deps: SyncDeps, acks: Acks, link: Link, tg: asyncio.TaskGroup) -> None:
        self._deps = deps
        self._acks = acks
        self._link = link
        #: The connection's task group: the PUBACK waiters run in it.
        self._tg = tg
        #: The window of messages awaiting their PUBACK.
        self.slots = asyncio.Semaphore(min(INFLIGHT, link.receive_maximum or INFLIGHT))
        limit = deps.cfg.max_message_bytes
        self._packet_limit = min(limit, link.max_packet_size) if link.max_packet_size else limit

    async def send(self, rows: Sequence[OutboxRow], backlog: bool) -> None:
        """Publish rows as one message (or several when too large); one slot is held."""
        held = True  # the caller acquired one slot for this message

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.slots.release()

        deps = self._deps
        link = self._link
        try:
            rows = await self._drop_corrupt(rows)
            if not rows:
                release()
                return
            deps.outbox.counters.batch += 1
            enc = encode_batch(
                deps.topics.gateway,
                deps.outbox.counters.batch,
                rows,
                deps.clock_fix(),
                backlog=backlog,
                compress=deps.cfg.compress,
            )
            limit = self._packet_limit
            size = len(enc.payload) + len(deps.topics.telemetry) + PUBLISH_OVERHEAD
            if size > limit:
                release()
                await self.split_or_dead_letter(
                    rows,
                    backlog,
                    f"message of {size} bytes exceeds the maximum packet size ({limit} bytes)",
                    enc.payload,
                )
                return
            fut = link.send(
                deps.topics.telemetry,
                enc.payload,
                qos=1,
                properties=publish_properties(link.v5, enc.content_type),
            )
        except BaseException:
            release()
            raise
        number = self._acks.sent(fut, rows)
        c = deps.counters
        c.batches_sent += 1
        c.readings_sent += len(rows)
        c.last_publish = time.time()
        self._tg.create_task(self._await_ack(fut, rows, number, backlog, enc.payload))

    async def split_or_dead_letter(
        self, rows: Sequence[OutboxRow], backlog: bool, reason: str, payload: bytes
    ) -> None:
        """The one path for a message the broker will not take: halves for several rows
        (each sent on a slot of its own), the dead-letter table for one row. No slot held."""
        if len(rows) > 1:
            self._deps.counters.splits += 1
            half = len(rows) // 2
            for part in (rows[:half], rows[half:]):
                await self.slots.acquire()
                await self.send(part, backlog)
        else:
            await dead_letter(self._deps, rows, reason, payload)

    async def _drop_corrupt(self, rows: Sequence[OutboxRow]) -> Sequence[OutboxRow]:
        bad = [r for r in rows if is_corrupt(r)]
        for r in bad:
            await dead_letter(self._deps, [r], "corrupt outbox row (body is not a JSON object)")
        if not bad:
            return rows
        return [r for r in rows if r not in bad]

    async def _await_ack(
        self,
        fut: asyncio.Future[int],
        rows: Sequence[OutboxRow],
        number: int,
        backlog: bool,
        payload: bytes,
    ) -> None:
        deps = self._deps
        try:
            code = await self._link.wait_ack(fut, deps.timing.ack_timeout_s)
        finally:
            # a cancelled waiter leaves its entry: a clean stop still collects the PUBACK
            self.slots.release()
        self._acks.answered(fut)
        refusal = classify_refusal(code)
        if refusal is None:
            self._acks.accepted(rows, number)
            deps.counters.last_ack = time.time()
            return
        deps.counters.refused += 1
        what = f"the broker refused the message (reason code 0x{code:02X})"
        if refusal is Refusal.CONFIG:
            self._acks.poison.refused_topic()
            raise NeedsHumanError(f"{what}: check the broker's ACL for {deps.topics.telemetry}")
        if refusal is Refusal.TRANSIENT:
            raise TransientRefusal(what)
        _LOGGER.warning("%s for %d row(s) (seq %d-%d)", what, len(rows), rows[0].seq, rows[-1].seq)
        await self.split_or_dead_letter(rows, backlog, what, payload)
