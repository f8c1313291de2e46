"""One MQTT connection: a thin asyncio adapter over paho-mqtt.

:class:`Link` drives a ``paho.mqtt.client.Client`` from the asyncio loop through paho's
public API only (callbacks, ``loop_read``/``loop_write``/``loop_misc``, ``socket()``; the
external-loop pattern paho documents, in :mod:`gateway.sync.mqtt_io`). It exists because
aiomqtt's ``publish`` waits for the PUBACK but drops its MQTT 5 reason code and keeps one
call per message in flight: :meth:`Link.send` returns a future resolved with the PUBACK
reason code, so the sync agent keeps a window of batches in flight and tells "the broker
refused this message" (0x87 not authorized, 0x97 quota exceeded, ...) from "delivered". The
paho behaviour relied on is pinned in pyproject.toml and checked by tests/test_sync_mqtt.py
against a real Mosquitto.

Errors (:class:`LinkError`, :class:`BrokerRefusedError`, ...), messages, the CONNACK's
properties and the PUBLISH properties are :mod:`gateway.sync.mqtt_codes`';
:class:`~drivers.errors.NeedsHumanError` is raised for unusable settings
(:mod:`gateway.sync.settings`). :func:`gateway.sync.broker_check.check_broker` is the
reusable "can we log in to this broker" probe (the doctor's), on this code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.sync.mqtt_codes import (
    BrokerRefusedError,
    Connack,
    ConnectRefusedError,
    LinkError,
    Message,
    check_rc,
    code_of,
    connect_refusal,
    name_of,
    publish_properties,
    response_properties,
)
from gateway.sync.mqtt_io import PahoIO, paho_client
from gateway.sync.settings import (
    BrokerSettings,
    check_transport,
    is_loopback,
    password_of,
    tls_context,
)

if TYPE_CHECKING:
    # paho is imported where a connection is made (4 MB and 50 ms of a start without an
    # uplink): Link, and the helpers only a Link's users call
    import paho.mqtt.client as paho
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "BrokerRefusedError",
    "BrokerSettings",
    "Connack",
    "ConnectRefusedError",
    "Link",
    "LinkError",
    "Message",
    "check_transport",
    "is_loopback",
    "open_link",
    "publish_properties",
    "response_properties",
]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")


class Link:
    """One MQTT connection: paho's client driven by the running asyncio loop.

    ``async with link:`` connects (CONNECT, CONNACK within ``timeout_s``) and disconnects
    cleanly (bounded) at the end; :meth:`close` drops the socket whatever the state.
    """

    def __init__(
        self,
        s: BrokerSettings,
        *,
        will_topic: str,
        password: str | None,
        tls_context: ssl.SSLContext | None,
        timeout_s: float,
        logger: logging.Logger | None = None,
    ) -> None:
        self.settings = s
        self.v5 = s.v5
        self.timeout_s = timeout_s
        self.connack = Connack()
        self._loop = asyncio.get_running_loop()
        client = paho_client(s, password, tls_context, timeout_s)
        client.enable_logger(logger or logging.getLogger("gateway.sync.paho"))
        client.will_set(will_topic, b"offline", qos=1, retain=True)
        self._client = client
        self._connected: asyncio.Future[None] = self._loop.create_future()
        #: Resolved when the connection ends: a result after our DISCONNECT, an exception
        #: (:class:`LinkError`) after a loss.
        self.lost: asyncio.Future[None] = self._loop.create_future()
        #: The socket's reads, writes and housekeeping on this loop.
        self._io = PahoIO(client, self.lost)
        # paho calls back from the connect thread too: every callback hops onto the loop
        # (call_soon_threadsafe keeps their order)
        client.on_connect = self._io.hop(self._on_connect)
        client.on_disconnect = self._io.hop(self._on_disconnect)
        client.on_publish = self._io.hop(self._on_publish)
        client.on_subscribe = self._io.hop(self._on_subscribe)
        client.on_message = self._io.hop(self._on_message)
        self._acks: dict[int, asyncio.Future[int]] = {}
        self._subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._closing = False

    # ------------------------------------------------------------------ public

    @property
    def max_packet_size(self) -> int | None:
        return self.connack.max_packet_size

    @property
    def receive_maximum(self) -> int | None:
        return self.connack.receive_maximum

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version once the handshake passed (None: plaintext)."""
        return self._io.tls_version

    async def __aenter__(self) -> Link:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """TCP (+TLS) and CONNECT in a worker thread (paho's connect blocks), the CONNACK
        on the loop; within ``timeout_s`` overall. On any failure the socket is closed."""
        s = self.settings
        try:
            async with asyncio.timeout(self.timeout_s):
                connecting = asyncio.ensure_future(
                    asyncio.to_thread(self._client.connect, s.host, s.port, s.keepalive)
                )
                try:
                    rc = await asyncio.shield(connecting)
                except asyncio.CancelledError:
                    # the thread runs on (bounded by connect_timeout): close what it opens,
                    # and take its outcome (a failed handshake is nobody's error any more)
                    connecting.add_done_callback(self._connect_abandoned)
                    raise
                check_rc(rc, s.display())
                await asyncio.shield(self._connected)
        except BaseException:
            self.close()
            raise

    def _connect_abandoned(self, connecting: asyncio.Future[Any]) -> None:
        if not connecting.cancelled() and connecting.exception() is not None:
            _LOGGER.debug("abandoned connect to %s failed", self.settings.display())
        self._loop.call_soon(self.close)

    def send(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> asyncio.Future[int]:
        """Queue a PUBLISH now (so calls go out in call order); the future gets the PUBACK
        reason code (0 for QoS 0 once queued). Raises :class:`LinkError` when not
        connected, ValueError for a topic or payload paho refuses."""
        if self.lost.done() or not self._connected.done():
            raise LinkError("not connected")
        info = self._client.publish(topic, payload, qos, retain, properties)
        check_rc(info.rc, "could not publish")
        fut: asyncio.Future[int] = self._loop.create_future()
        if qos == 0:
            fut.set_result(0)
        else:
            self._acks[info.mid] = fut
        return fut

    async def wait_ack(self, fut: asyncio.Future[int], limit_s: float) -> int:
        """The reason code, or :class:`LinkError` when the connection drops first, or
        TimeoutError."""
        return await self._answer(fut, limit_s, "PUBACK")

    async def _answer(self, fut: asyncio.Future[_T], limit_s: float, what: str) -> _T:
        waiting: set[asyncio.Future[Any]] = {fut, self.lost}
        done, _ = await asyncio.wait(waiting, timeout=limit_s, return_when="FIRST_COMPLETED")
        if fut in done:
            return fut.result()
        if self.lost in done:
            raise LinkError(f"connection lost before {what} ({self._lost_reason()})")
        raise TimeoutError(f"no {what} in {limit_s:g} s")

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        limit_s: float | None = None,
    ) -> int:
        """:meth:`send` and :meth:`wait_ack` (``limit_s`` defaults to ``timeout_s``)."""
        fut = self.send(topic, payload, qos=qos, retain=retain, properties=properties)
        return await self.wait_ack(fut, self.timeout_s if limit_s is None else limit_s)

    async def subscribe(self, topic: str, *, qos: int = 1) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; its reason codes (0x80 and up: refused)."""
        if self.lost.done():
            raise LinkError("not connected")
        rc, mid = self._client.subscribe(topic, qos)
        check_rc(rc, "could not subscribe")
        if mid is None:
            raise LinkError("could not subscribe: no message id")
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        self._subacks[mid] = fut
        try:
            return await self._answer(fut, self.timeout_s, "SUBACK")
        finally:
            self._subacks.pop(mid, None)

    async def messages(self) -> AsyncIterator[Message]:
        """Incoming messages until the connection ends (then :class:`LinkError`)."""
        while True:
            if not self._messages.empty():
                yield self._messages.get_nowait()
                continue
            getter: asyncio.Future[Message] = asyncio.ensure_future(self._messages.get())
            waiting: set[asyncio.Future[Any]] = {getter, self.lost}
            try:
                await asyncio.wait(waiting, return_when="FIRST_COMPLETED")
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                yield getter.result()
            elif self.lost.done():
                raise LinkError(f"connection lost ({self._lost_reason()})")

    async def disconnect(self) -> None:
        """A clean DISCONNECT (the broker then drops the Last Will), bounded by
        ``timeout_s``; the socket is closed in any case."""
        try:
            if self._io.open and not self.lost.done():
                self._closing = True
                self._client.disconnect()
                with contextlib.suppress(TimeoutError, LinkError):
                    async with asyncio.timeout(self.timeout_s):
                        await asyncio.wait({self.lost})
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket whatever state the connection is in; settle every waiter."""
        if self._io.close():
            # this client is done: paho's own cleanup (at garbage collection) calls nobody
            client = self._client
            client.on_connect = client.on_disconnect = client.on_publish = None
            client.on_subscribe = client.on_message = None
        self._settle_lost(None)
        if not self._connected.done():
            self._connected.set_exception(LinkError("connection closed"))
            self._connected.exception()  # retrieved
        self.drop_pending()

    def drop_pending(self) -> None:
        """Cancel the waiters of PUBACKs and SUBACKs still outstanding."""
        pending: list[asyncio.Future[Any]] = [*self._acks.values(), *self._subacks.values()]
        for fut in pending:
            if not fut.done():
                fut.cancel()
        self._acks.clear()
        self._subacks.clear()

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        _flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if properties is not None:
            self.connack = Connack.of(properties)
        if self._connected.done():
            return
        if int(reason_code.value) == 0:
            self._connected.set_result(None)
        else:
            self._connected.set_exception(connect_refusal(self.settings.display(), reason_code))

    def _on_disconnect(
        self,
        _flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None = None,
    ) -> None:
        code = code_of(reason_code)
        if not self._connected.done():
            self._connected.set_exception(
                LinkError(f"{self.settings.display()}: connection closed before CONNACK")
            )
        if code == 0 and self._closing:
            self._settle_lost(None)
        else:
            self._settle_lost(LinkError(f"unexpected disconnection: {name_of(reason_code)}"))

    def _settle_lost(self, exc: LinkError | None) -> None:
        if self.lost.done():
            return
        if exc is None:
            self.lost.set_result(None)
        else:
            self.lost.set_exception(exc)
            self.lost.exception()  # retrieved: readers ask through _lost_reason()

    def _lost_reason(self) -> str:
        if not self.lost.done() or self.lost.cancelled():
            return "closed"
        exc = self.lost.exception()
        return str(exc) if exc is not None else "closed"

    def _on_publish(
        self,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties,
    ) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(code_of(reason_code))

    def _on_subscribe(
        self,
        mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties,
    ) -> None:
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result([code_of(rc) for rc in reason_codes])

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        self._messages.put_nowait(
            Message(
                msg.topic,
                bytes(msg.payload),
                msg.qos,
                bool(msg.retain),
                getattr(msg, "properties", None),
            )
        )


async def open_link(
    s: BrokerSettings,
    *,
    will_topic: str,
    timeout_s: float,
) -> Link:
    """A not-yet-connected :class:`Link` (use ``async with``). Blocking file reads run in a
    thread. Configuration problems raise :class:`drivers.errors.NeedsHumanError`."""
    check_transport(s)
    ctx = await asyncio.to_thread(tls_context, s)
    password = await asyncio.to_thread(password_of, s)
    return Link(
        s,
        will_topic=will_topic,
        password=password,
        tls_context=ctx,
        timeout_s=timeout_s,
        logger=logging.getLogger("gateway.sync.paho"),
    )
