"""What an MQTT connection says and hears, apart from the connection itself: the errors and
the CONNACK refusals they classify, incoming messages, the CONNACK's properties, and the
PUBLISH properties the sync agent sends.

Errors are raised on the roots of :mod:`drivers.errors`: :class:`LinkError` (transient: the
connection failed or was lost), :class:`BrokerRefusedError` (needs a human: a CONNACK
refusal no retry fixes). paho is imported where it is used (a start without an uplink never
loads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.errors import NeedsHumanError, TransientError

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

#: CONNACK refusals no retry fixes (MQTT 5 reason codes; paho maps MQTT 3.1.1 return codes
#: 1, 2, 4, 5 onto 0x84, 0x85, 0x86, 0x87).
CONNECT_NEEDS_HUMAN = frozenset({1, 2, 4, 5, 0x84, 0x85, 0x86, 0x87, 0x8C})
#: The CONNACK properties kept in :attr:`Connack.extra`.
_CONNACK_PROPERTIES = ("MaximumPacketSize", "ReceiveMaximum", "MaximumQoS")


class LinkError(TransientError):
    """The connection could not be made, was lost, or cannot carry a request now."""


class _Refused(Exception):
    """The broker answered CONNECT with a refusal: its reason code and paho's name of it."""

    def __init__(self, url: str, code: int, name: str) -> None:
        super().__init__(f"{url} refused the connection: {name} (0x{code:02X})")
        self.code = code
        self.reason = name


class ConnectRefusedError(_Refused, LinkError):
    """A CONNACK refusal that may pass (server unavailable, busy)."""


class BrokerRefusedError(_Refused, NeedsHumanError):
    """A refused login no retry fixes (credentials, ACL, client id)."""


def code_of(rc: ReasonCode | int) -> int:
    """A paho reason code (or MQTT 3.1.1 return code) as its number."""
    from paho.mqtt.reasoncodes import ReasonCode

    return int(rc.value) if isinstance(rc, ReasonCode) else int(rc)


def name_of(rc: ReasonCode | int) -> str:
    """paho's name of a reason code ("Not authorized"), or ``code N``."""
    from paho.mqtt.reasoncodes import ReasonCode

    return rc.getName() if isinstance(rc, ReasonCode) else f"code {int(rc)}"


def connect_refusal(url: str, rc: ReasonCode | int) -> ConnectRefusedError | BrokerRefusedError:
    """The error for a CONNACK refusal, classified by its reason code."""
    code = code_of(rc)
    if code in CONNECT_NEEDS_HUMAN:
        return BrokerRefusedError(url, code, name_of(rc))
    return ConnectRefusedError(url, code, name_of(rc))


def check_rc(rc: int, what: str) -> None:
    """Raise :class:`LinkError` (``what: paho's error``) unless paho's call succeeded."""
    import paho.mqtt.client as paho

    if rc != paho.MQTT_ERR_SUCCESS:
        raise LinkError(f"{what}: {paho.error_string(rc)}")


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming PUBLISH."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


@dataclass(slots=True)
class Connack:
    """What the broker said in its CONNACK (MQTT 5 properties; empty for 3.1.1)."""

    max_packet_size: int | None = None
    receive_maximum: int | None = None
    maximum_qos: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, properties: Properties) -> Connack:
        got = {n: getattr(properties, n) for n in _CONNACK_PROPERTIES if hasattr(properties, n)}
        size, receive = got.get("MaximumPacketSize"), got.get("ReceiveMaximum")
        return cls(
            max_packet_size=int(size) if size else None,
            receive_maximum=int(receive) if receive else None,
            maximum_qos=int(got["MaximumQoS"]) if "MaximumQoS" in got else None,
            extra=got,
        )


def _publish_properties(content_type: str) -> Properties:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = content_type
    if content_type == "application/json":
        props.PayloadFormatIndicator = 1
    return props


def publish_properties(v5: bool, content_type: str | None) -> Properties | None:
    """A telemetry batch's properties (MQTT 5): its content type."""
    if not v5 or content_type is None:
        return None
    return _publish_properties(content_type)


def response_properties(v5: bool, correlation: bytes | None) -> Properties | None:
    """A command result's properties (MQTT 5): JSON, and the request's correlation data."""
    if not v5:
        return None
    props = _publish_properties("application/json")
    if correlation is not None:
        props.CorrelationData = correlation
    return props
