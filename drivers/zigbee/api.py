"""Request/response layer over one MT link.

* one synchronous request (SREQ) at a time: an asyncio lock;
* the listener for a response or callback is registered before the request is written;
* every wait has a timeout (:class:`~drivers.zigbee.timing.ZigbeeTiming`, shortened by tests);
* an incomplete frame that stalls is expired after ``frame_stall_s`` (twice that at most when
  other frames keep coming: one timer, checked then re-armed); the framer resyncs;
* callbacks run on the loop, their exceptions are logged and counted, never reach the
  byte stream.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers import TRACE
from drivers.errors import ParseError, ProtocolError, TransientError
from drivers.zigbee.timing import ZigbeeTiming
from drivers.zigbee.transport import ByteLink
from drivers.zigbee.znp import codecs as cd
from drivers.zigbee.znp import commands as c
from drivers.zigbee.znp import frames
from drivers.zigbee.znp import types as t
from drivers.zigbee.znp.commands import CommandDef, Kind, Message

_LOGGER = logging.getLogger(__name__)


class CommandNotRecognized(ProtocolError):
    """The stick answered an SREQ with RPC_ERROR (unknown subsystem/command/length)."""


class LinkLost(TransientError):
    """The serial port went away (unplugged) or closed."""


Matcher = Mapping[str, cd.FieldValue] | Callable[[Message], bool] | None


def _matches(msg: Message, match: Matcher) -> bool:
    if match is None:
        return True
    if callable(match):
        return bool(match(msg))
    return all(msg.fields.get(k) == v for k, v in match.items())


@dataclass(slots=True)
class _Waiter:
    command: CommandDef
    kind: Kind
    match: Matcher
    future: asyncio.Future[Message]


class ZnpApi:
    """One MT link: feed it bytes (``data_received``), ask it requests."""

    def __init__(
        self,
        name: str = "znp",
        timing: ZigbeeTiming | None = None,
        counters: collections.Counter[str] | None = None,
    ) -> None:
        self.name = name
        #: ``sreq_timeout``, ``callback_timeout`` and ``frame_stall_s`` are used here.
        self.timing = timing or ZigbeeTiming()
        self.framer = frames.Framer()
        self._stall: asyncio.TimerHandle | None = None
        #: The stream offset of the incomplete frame waiting when ``_stall`` was armed.
        self._stall_at: int | None = None
        #: frames_in, frames_out, decode_errors, unknown_frames, callback_errors, timeouts
        #: (pass one Counter to several links to add them up).
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        self._link: ByteLink | None = None
        self._lock = asyncio.Lock()
        self._waiters: list[_Waiter] = []
        self._subscribers: list[Callable[[Message], None]] = []
        #: A request on key material is outstanding: TRACE shows no bytes.
        self._secret = False
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- link --------------------------------------------------------------------------

    def attach(self, link: ByteLink) -> None:
        self._link = link

    @property
    def link(self) -> ByteLink | None:
        return self._link

    def data_received(self, data: bytes) -> None:
        if _LOGGER.isEnabledFor(TRACE):
            shown = f"<{len(data)} bytes redacted>" if self._secret else data.hex()
            _LOGGER.log(TRACE, "%s <- %s", self.name, shown)
        self._frames_received(self.framer.feed(data))

    def _frames_received(self, received: list[frames.Frame]) -> None:
        for frame in received:
            self.counters["frames_in"] += 1
            self._frame_received(frame)
        if self._stall is None and self.framer.waiting_at is not None:
            self._watch_stall()

    def _watch_stall(self) -> None:
        """One timer at a time (not one per read: a stream cut into reads ends most of them
        inside a frame): it notes which incomplete frame waits and looks again later."""
        self._stall_at = self.framer.waiting_at
        self._stall = asyncio.get_running_loop().call_later(
            self.timing.frame_stall_s, self._stall_check
        )

    def _stall_check(self) -> None:
        self._stall = None
        waiting_at = self.framer.waiting_at
        if waiting_at is None:
            self._stall_at = None
        elif waiting_at != self._stall_at:
            self._watch_stall()  # frames came meanwhile: the one waiting now gets its time
        else:
            # the same incomplete frame got no more bytes in time: malformed, resync past it
            _LOGGER.debug("%s: incomplete MT frame stalled, resyncing", self.name)
            self._frames_received(self.framer.expire())

    def _stop_stall_timer(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
        self._stall = self._stall_at = None

    def connection_lost(self, exc: Exception | None) -> None:
        err = LinkLost(f"serial link lost: {exc}" if exc else "serial link closed")
        if not self._closed.done():
            self._closed.set_exception(err)
            self._closed.exception()  # retrieved: no "never retrieved" warning
        for w in self._waiters:
            if not w.future.done():
                w.future.set_exception(err)
                w.future.exception()
        self._waiters.clear()
        self._link = None
        self._stop_stall_timer()

    async def wait_closed(self) -> None:
        """Returns never; raises :class:`LinkLost` when the port goes away."""
        await asyncio.shield(self._closed)

    async def aclose(self) -> None:
        self._stop_stall_timer()
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()

    # --- dispatch ------------------------------------------------------------------------

    def _frame_received(self, frame: frames.Frame) -> None:
        try:
            msg = c.decode(frame)
        except ParseError as exc:
            if c.lookup(frame) is None:
                self.counters["unknown_frames"] += 1
                _LOGGER.debug("unknown MT frame %s %s", frame.header, frame.data.hex())
            else:
                self.counters["decode_errors"] += 1
                _LOGGER.debug("undecodable MT frame %s: %s", frame.header, exc)
            return
        for w in list(self._waiters):
            if w.future.done():
                continue
            if msg.command is c.RPC_ERROR and w.kind is Kind.RESPONSE:
                req_header = (w.command.header(Kind.REQUEST)[1] << 8) | w.command.header(
                    Kind.REQUEST
                )[0]
                if msg.fields["RequestHeader"] == req_header:
                    w.future.set_exception(
                        CommandNotRecognized(f"{w.command.name}: {msg.fields['ErrorCode'].name}")
                    )
                    w.future.exception()
                    continue
            if msg.command is w.command and msg.kind is w.kind and _matches(msg, w.match):
                w.future.set_result(msg)
        if msg.kind is Kind.CALLBACK:
            for sub in list(self._subscribers):
                try:
                    sub(msg)
                except Exception:  # a subscriber's bug must not stop the link
                    self.counters["callback_errors"] += 1
                    # the first with its traceback; a bug that fires on every frame must
                    # not flood the log (the counter keeps the tally)
                    if self.counters["callback_errors"] == 1:
                        _LOGGER.exception(
                            "%s callback for %s failed (later failures are logged at DEBUG)",
                            self.name,
                            msg.command.name,
                        )
                    else:
                        _LOGGER.debug("%s callback for %s failed", self.name, msg.command.name)

    def subscribe(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # --- requests ------------------------------------------------------------------------

    def _write(self, frame: frames.Frame) -> None:
        if self._link is None:
            raise LinkLost("serial link is not open")
        raw = frames.encode(frame)
        if _LOGGER.isEnabledFor(TRACE):
            shown = f"<{len(raw)} bytes redacted>" if self._secret else raw.hex()
            _LOGGER.log(TRACE, "%s -> %s", self.name, shown)
        self._link.write(raw)
        self.counters["frames_out"] += 1

    def write_raw(self, data: bytes) -> None:
        if self._link is None:
            raise LinkLost("serial link is not open")
        self._link.write(data)

    def listen(
        self, command: CommandDef, match: Matcher = None, kind: Kind | None = None
    ) -> _Waiter:
        """Register interest in a frame now; await it later with :meth:`wait`."""
        k = kind or (Kind.RESPONSE if command.type is t.CommandType.SREQ else Kind.CALLBACK)
        w = _Waiter(command, k, match, asyncio.get_running_loop().create_future())
        self._waiters.append(w)
        return w

    async def wait(self, waiter: _Waiter, wait_s: float) -> Message:
        try:
            async with asyncio.timeout(wait_s):
                return await waiter.future
        except TimeoutError:
            self.counters["timeouts"] += 1
            raise TimeoutError(
                f"{self.name}: no {waiter.command.name} {waiter.kind} within {wait_s} s"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def cancel(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        waiter.future.cancel()

    async def request(
        self, command: CommandDef, wait_s: float | None = None, **fields: cd.FieldValue
    ) -> Message:
        """Send an SREQ and return its SRSP (one at a time)."""
        frame = command.req(**fields)
        async with self._lock:
            waiter = self.listen(command, None, Kind.RESPONSE)
            self._secret = c.touches_secret(command, fields)
            try:
                self._write(frame)
                if wait_s is None:
                    wait_s = self.timing.sreq_timeout
                return await self.wait(waiter, wait_s)
            finally:
                self.cancel(waiter)
                self._secret = False

    async def request_then(
        self,
        command: CommandDef,
        callback: CommandDef,
        match: Matcher,
        *,
        wait_s: float | None = None,
        callback_wait_s: float | None = None,
        **fields: cd.FieldValue,
    ) -> tuple[Message, Message | None]:
        """SREQ, then the callback it triggers. The callback is not awaited on a failed SRSP."""
        cb = self.listen(callback, match)
        try:
            rsp = await self.request(command, wait_s, **fields)
            status = rsp.fields.get("Status", t.Status.SUCCESS)
            if status != t.Status.SUCCESS:
                self.cancel(cb)
                return rsp, None
            return rsp, await self.wait(
                cb, self.timing.callback_timeout if callback_wait_s is None else callback_wait_s
            )
        finally:
            self.cancel(cb)

    def send_areq(self, command: CommandDef, **fields: cd.FieldValue) -> None:
        self._write(command.req(**fields))
