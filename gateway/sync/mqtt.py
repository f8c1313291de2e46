"""One MQTT connection (aiomqtt 2.x over paho): connection settings, PUBACK reason codes.

aiomqtt's ``publish`` waits for the PUBACK but drops its MQTT 5 reason code and keeps one
call per message in flight. :class:`Link` adds :meth:`Link.send`, which returns a future
resolved with the PUBACK reason code, so the sync agent can keep a window of batches in
flight and tell "the broker refused this message" from "delivered".
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.errors import NeedsHumanError
from gateway.config import Secret, read_secret
from gateway.errors import NeedsHumanError as GatewayNeedsHuman

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Everything needed to open one connection (no secret in repr)."""

    url: str
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    username: str = ""
    password: Secret | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_insecure: bool = False
    keepalive: int = 60

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS.get(parts.scheme, 1883)

    @property
    def v5(self) -> bool:
        return self.protocol == "5"

    def display(self) -> str:
        """The URL for logs, API and CLI (never with credentials)."""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(s: BrokerSettings) -> None:
    """Refuse plaintext MQTT to a non-loopback host unless ``allow_insecure``."""
    if s.tls:
        return
    if (s.cert_file or s.ca_file) and not s.allow_insecure:
        raise NeedsHumanError(
            f"{s.display()}: ca_file/cert_file are set but the URL is plaintext mqtt://;"
            " use mqtts://"
        )
    if not is_loopback(s.host) and not s.allow_insecure:
        raise NeedsHumanError(
            f"refusing plaintext MQTT to {s.display()}: use mqtts:// (TLS) or set"
            " allow_insecure = true"
        )


def tls_context(s: BrokerSettings) -> ssl.SSLContext | None:
    """Blocking (reads certificate files): call through ``asyncio.to_thread``."""
    if not s.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if s.cert_file is not None:
            ctx.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise NeedsHumanError(f"TLS files for {s.display()} cannot be used: {exc}") from None
    return ctx


def password_of(s: BrokerSettings) -> str | None:
    """Blocking when read from a file. Errors name the file, never the secret."""
    try:
        secret = read_secret(s.password, s.password_file, "MQTT password")
    except GatewayNeedsHuman as exc:
        raise NeedsHumanError(str(exc)) from None
    return secret.reveal() if secret is not None else None


class Link(aiomqtt.Client):
    """An aiomqtt client that also reports PUBACK reason codes and CONNACK properties."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.v5 = kwargs.get("protocol") is aiomqtt.ProtocolVersion.V5
        self._acks: dict[int, asyncio.Future[int]] = {}
        #: CONNACK properties (MQTT 5): MaximumPacketSize, ReceiveMaximum, ...
        self.connack: dict[str, Any] = {}

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Properties | None = None,
    ) -> None:
        if properties is not None:
            self.connack = {
                name: getattr(properties, name)
                for name in ("MaximumPacketSize", "ReceiveMaximum", "MaximumQoS")
                if hasattr(properties, name)
            }
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Properties,
    ) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(int(getattr(reason_code, "value", 0)))
        super()._on_publish(client, userdata, mid, reason_code, properties)

    @property
    def max_packet_size(self) -> int | None:
        value = self.connack.get("MaximumPacketSize")
        return int(value) if value else None

    @property
    def receive_maximum(self) -> int | None:
        value = self.connack.get("ReceiveMaximum")
        return int(value) if value else None

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
        reason code (0 for QoS 0 once written). Raises MqttError when not connected."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if qos == 0:
            fut.set_result(0)
        else:
            self._acks[info.mid] = fut
        return fut

    async def wait_ack(self, fut: asyncio.Future[int], limit_s: float) -> int:
        """The reason code, or MqttError when the connection drops first, or TimeoutError."""
        lost = self._disconnected
        waiting: set[asyncio.Future[Any]] = {fut, lost}
        done, _ = await asyncio.wait(waiting, timeout=limit_s, return_when="FIRST_COMPLETED")
        if fut in done:
            return fut.result()
        if lost in done:
            exc = lost.exception()  # also marks it retrieved
            raise aiomqtt.MqttError(f"connection lost before PUBACK ({exc or 'closed'})")
        raise TimeoutError(f"no PUBACK in {limit_s:g} s")

    @property
    def lost(self) -> asyncio.Future[None]:
        return self._disconnected

    def force_close(self) -> None:
        """Close the socket whatever state the connection is in (after a cancelled connect
        or disconnect aiomqtt may leave it registered on the loop)."""
        if self._connected.done() and self._connected.cancelled():
            self._connected = asyncio.get_running_loop().create_future()
        try:
            self._client._sock_close()
        except Exception:
            _LOGGER.debug("closing the MQTT socket failed", exc_info=True)
        misc = self._misc_task
        if misc is not None and not misc.done():
            misc.cancel()
        if not self._disconnected.done():
            self._disconnected.set_result(None)
        if self._lock.locked():
            self._lock.release()

    def drop_pending(self) -> None:
        for fut in self._acks.values():
            if not fut.done():
                fut.cancel()
        self._acks.clear()


def publish_properties(v5: bool, content_type: str | None) -> Properties | None:
    if not v5 or content_type is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = content_type
    if content_type == "application/json":
        props.PayloadFormatIndicator = 1
    return props


def response_properties(v5: bool, correlation: bytes | None) -> Properties | None:
    if not v5:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    if correlation is not None:
        props.CorrelationData = correlation
    return props


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
    protocol = aiomqtt.ProtocolVersion.V5 if s.v5 else aiomqtt.ProtocolVersion.V311
    return Link(
        s.host,
        s.port,
        identifier=s.client_id,
        protocol=protocol,
        username=s.username or None,
        password=password,
        will=aiomqtt.Will(will_topic, b"offline", qos=1, retain=True),
        keepalive=s.keepalive,
        timeout=timeout_s,
        tls_context=ctx,
        clean_session=None if s.v5 else True,
        logger=logging.getLogger("gateway.sync.paho"),
    )
