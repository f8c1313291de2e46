"""``check_broker``: can we log in to this broker? The doctor's probe, on the sync code path.

It opens a :class:`~gateway.sync.mqtt.Link` exactly as the sync agent does (same TLS context,
credentials, plaintext policy and CONNACK handling), reads the CONNACK and disconnects
cleanly, and reports how far it got and how the fault is classified. ``migw doctor`` uses it
instead of an MQTT encoder and a TLS context of its own.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass

from drivers.errors import NeedsHumanError
from drivers.supervisor import Fault, classify, describe
from gateway.sync.mqtt import (
    BrokerRefusedError,
    Connack,
    ConnectRefusedError,
    LinkError,
    open_link,
)
from gateway.sync.settings import BrokerSettings


class CheckStage(enum.StrEnum):
    """How far :func:`check_broker` got."""

    SETTINGS = "settings"  # plaintext policy, TLS files, password file
    CONNECT = "connect"  # name, route, TCP port (or no answer at all)
    TLS = "tls"  # the TLS handshake (certificate, protocol)
    MQTT = "mqtt"  # no CONNACK: not an MQTT port, or the broker closed the connection
    LOGIN = "login"  # the broker refused the login (CONNACK reason code)
    OK = "ok"


@dataclass(frozen=True, slots=True)
class BrokerCheck:
    """The outcome of :func:`check_broker`; ``detail`` never holds a secret."""

    url: str
    stage: CheckStage
    detail: str = ""
    fault: Fault | None = None  # None when ok
    reason_code: int | None = None  # the CONNACK's, when one came
    tls_version: str | None = None  # e.g. "TLSv1.3" once the handshake passed
    connack: Connack | None = None
    #: The CONNACK refusal's name as paho spells it ("Not authorized"), when refused.
    refusal: str = ""

    @property
    def ok(self) -> bool:
        return self.stage is CheckStage.OK


async def check_broker(
    s: BrokerSettings, *, timeout_s: float = 10.0, will_topic: str = "migw/doctor/status"
) -> BrokerCheck:
    """Log in to the broker with the configured TLS and credentials, read the CONNACK and
    disconnect cleanly: the same code path as the sync agent's connection. Never raises for
    a settings, network, TLS or broker problem; the result says which stage failed and how
    the fault is classified (transient / needs-a-human / protocol). For ``migw doctor``."""
    url = s.display()
    try:
        link = await open_link(s, will_topic=will_topic, timeout_s=timeout_s)
    except NeedsHumanError as exc:
        return BrokerCheck(url, CheckStage.SETTINGS, str(exc), Fault.NEEDS_HUMAN)
    try:
        await link.connect()
    except (BrokerRefusedError, ConnectRefusedError) as exc:
        version = link.tls_version
        return BrokerCheck(
            url, CheckStage.LOGIN, str(exc), classify(exc), exc.code, version, refusal=exc.reason
        )
    except ssl.SSLError as exc:
        detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return BrokerCheck(url, CheckStage.TLS, f"TLS handshake failed: {detail}", classify(exc))
    except LinkError as exc:
        return BrokerCheck(url, CheckStage.MQTT, str(exc), classify(exc), None, link.tls_version)
    except (OSError, TimeoutError) as exc:
        detail = getattr(exc, "strerror", None) or describe(exc)
        if isinstance(exc, TimeoutError):
            detail = f"no answer in {timeout_s:g} s"
        return BrokerCheck(url, CheckStage.CONNECT, f"cannot connect: {detail}", classify(exc))
    version = link.tls_version
    await link.disconnect()
    return BrokerCheck(url, CheckStage.OK, "login ok", None, 0, version, link.connack)
