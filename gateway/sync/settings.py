"""Settings of one broker connection: URL, identity, TLS and credentials (never logged).

Everything here that reads files blocks: callers run it through ``asyncio.to_thread``.
Unusable settings raise :class:`drivers.errors.NeedsHumanError` with a message for a person.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from drivers.errors import NeedsHumanError
from gateway.config import BrokerFields, read_secret
from gateway.errors import NeedsHumanError as GatewayNeedsHuman

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerSettings(BrokerFields):
    """Everything needed to open one connection (no secret in repr): a broker section's
    :class:`~gateway.config.BrokerFields` (URL, credentials, TLS files; keyword-only after
    the URL) with the client's identity and protocol."""

    url: str
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive: int = 60

    @classmethod
    def of(
        cls, broker: BrokerFields, client_id: str, *, protocol: str, keepalive: int
    ) -> BrokerSettings:
        """A broker section's fields (URL, credentials, TLS files), each taken as it is,
        with the client's identity and protocol."""
        given = {f.name: getattr(broker, f.name) for f in fields(BrokerFields)}
        return cls(**given, client_id=client_id, protocol=protocol, keepalive=keepalive)

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
