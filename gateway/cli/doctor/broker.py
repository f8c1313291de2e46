"""Doctor check of the MQTT broker: TCP, TLS handshake, MQTT login."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from urllib.parse import urlsplit

from gateway.cli.doctor.base import Check, Doctor, Level
from gateway.config import Config, read_secret

BROKER_TIMEOUT_S = 5.0


def running_uplink(d: Doctor) -> Check | None:
    """The running service's own view of its uplink (a demo's ``--upstream`` is in no config
    file); None when no service answers."""
    if d.status is None:
        return None
    sync = (d.status.get("outbox") or {}).get("sync") or {}
    up = sync.get("upstream")
    if not isinstance(up, dict):
        return Check(
            "mqtt broker", Level.SKIP, "the running service has no uplink (no upstream.url)"
        )
    url = up.get("url", "?")
    if up.get("state") == "connected":
        return Check("mqtt broker", Level.PASS, f"the running service is connected to {url}")
    error = up.get("last_error") or "no connection yet"
    return Check(
        "mqtt broker",
        Level.FAIL,
        f"the running service cannot reach {url}: {up.get('state')}: {error}",
        "check that the broker runs and the route to it (`systemctl status mosquitto` on a "
        "local broker); the service retries by itself",
    )


async def check_broker(d: Doctor) -> Check:
    running = running_uplink(d)
    if running is not None:
        return running
    cfg = d.config
    if cfg is None:
        return Check("mqtt broker", Level.SKIP, "no valid config")
    url = cfg.upstream.url
    if not url:
        return Check("mqtt broker", Level.SKIP, "upstream disabled (no upstream.url)")
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "mqtts"
    port = parts.port or (8883 if tls else 1883)
    where = f"{parts.scheme}://{host}:{port}"
    up = d.status.get("upstream") if d.status else None
    try:
        ctx = _tls_context(cfg) if tls else None
    except (OSError, ssl.SSLError) as exc:
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where}: TLS files unusable: {exc}",
            "check upstream.ca_file / cert_file / key_file paths and permissions",
        )
    try:
        async with asyncio.timeout(BROKER_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where}: no answer in {BROKER_TIMEOUT_S:g} s",
            "check the network route and firewall to the broker",
        )
    except OSError as exc:
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where}: cannot connect: {exc.strerror or exc}",
            "check the host name, port and that the broker runs (`systemctl status mosquitto`)",
        )
    try:
        if ctx is not None:
            async with asyncio.timeout(BROKER_TIMEOUT_S):
                await writer.start_tls(ctx, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        writer.close()
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where}: TLS handshake failed: {exc.verify_message}",
            "set upstream.ca_file to the CA that signed the broker's certificate; the "
            "URL host must match the certificate",
        )
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        writer.close()
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where}: TLS handshake failed: {reason}",
            "is this the broker's TLS port (8883)? check upstream.ca_file, cert_file and key_file",
        )
    proto = ""
    if ctx is not None:
        obj = writer.get_extra_info("ssl_object")
        proto = f", TLS ok ({obj.version()})" if obj is not None else ", TLS ok"
    try:
        rc = await _mqtt_login(reader, writer, cfg)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if rc is None:
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where} accepted the connection{proto} but did not answer an MQTT CONNECT",
            "is this the broker's MQTT port (1883 plain, 8883 TLS)? check the broker's log",
        )
    if rc != 0:
        return Check(
            "mqtt broker",
            Level.FAIL,
            f"{where} reachable{proto}, but the broker refused the login: "
            f"{_CONNACK.get(rc, f'code {rc}')}",
            "check upstream.username and upstream.password(_file), and the broker's ACL "
            "for this client",
        )
    state = f"; the service's uplink is {up}" if up else ""
    if up is not None and str(up).lower() not in ("connected", "online", "up", "disabled"):
        return Check(
            "mqtt broker",
            Level.WARN,
            f"{where} reachable{proto}, MQTT login ok{state}",
            "`journalctl -u migw` shows the uplink's last error",
        )
    return Check("mqtt broker", Level.PASS, f"{where} reachable{proto}, MQTT login ok{state}")


_CONNACK = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def _mqtt_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def mqtt_connect_packet(client_id: str, username: str = "", password: str | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 10 s)."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + (10).to_bytes(2, "big")
    body += _mqtt_string(client_id)
    if username:
        body += _mqtt_string(username)
    if password is not None:
        body += _mqtt_string(password)
    n = len(body)
    length = bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\x10" + bytes(length) + body


async def _mqtt_login(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cfg: Config
) -> int | None:
    """The CONNACK return code of a login with the configured credentials (None: no
    MQTT answer). The password is read here and never shown."""
    up = cfg.upstream
    secret = read_secret(up.password, up.password_file, "upstream.password")
    client_id = f"migw-doctor-{os.getpid()}-{int(time.time()) % 100000}"
    packet = mqtt_connect_packet(
        client_id, up.username, secret.reveal() if secret is not None else None
    )
    try:
        async with asyncio.timeout(BROKER_TIMEOUT_S):
            writer.write(packet)
            await writer.drain()
            connack = await reader.readexactly(4)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
        return None
    if connack[0] != 0x20 or connack[1] != 0x02:
        return None
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.write(b"\xe0\x00")  # DISCONNECT
        await writer.drain()
    return connack[3]


def _tls_context(cfg: Config) -> ssl.SSLContext:
    up = cfg.upstream
    ctx = ssl.create_default_context(cafile=str(up.ca_file) if up.ca_file else None)
    if up.cert_file is not None:
        ctx.load_cert_chain(str(up.cert_file), str(up.key_file) if up.key_file else None)
    return ctx
