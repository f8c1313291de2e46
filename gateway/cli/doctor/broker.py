"""Doctor check of the MQTT broker: TCP, TLS handshake, MQTT login.

The login goes through the sync agent's own connection code
(:func:`gateway.sync.broker_check.check_broker`: the same TLS context, credentials, MQTT version and
plaintext policy as the uplink), under a client id of its own so the running service's
session is never taken over. While the service answers, its own uplink is reported instead
(:func:`running_uplink`: a demo's ``--upstream`` is in no config file).
"""

from __future__ import annotations

import dataclasses
import os
import time

from gateway.cli.client import Target
from gateway.cli.doctor.base import Check, Checks, Doctor, Level, Named, needs_config

BROKER_TIMEOUT_S = 5.0


BROKER = Named("mqtt broker")


def running_uplink(d: Doctor) -> Check | None:
    """The running service's own view of its uplink (a demo's ``--upstream`` is in no config
    file); None when no service answers."""
    if d.status is None:
        return None
    sync = (d.status.get("outbox") or {}).get("sync") or {}
    up = sync.get("upstream")
    if not isinstance(up, dict):
        return BROKER(Level.SKIP, "the running service has no uplink (no upstream.url)")
    url = up.get("url", "?")
    if up.get("state") == "connected":
        return BROKER(Level.PASS, f"the running service is connected to {url}")
    error = up.get("last_error") or "no connection yet"
    return BROKER(
        Level.FAIL,
        f"the running service cannot reach {url}: {up.get('state')}: {error}",
        "check that the broker runs and the route to it (`systemctl status mosquitto` on a "
        "local broker); the service retries by itself",
    )


@needs_config(BROKER)
async def check_broker(d: Doctor, target: Target) -> Check:
    from gateway.sync.agent import upstream_settings
    from gateway.sync.broker_check import CheckStage
    from gateway.sync.broker_check import check_broker as login

    running = running_uplink(d)
    if running is not None:
        return running
    cfg = target.config
    settings = upstream_settings(cfg.upstream, cfg.gateway.id)
    if settings is None:
        return BROKER(Level.SKIP, "upstream disabled (no upstream.url)")
    client_id = f"migw-doctor-{os.getpid()}-{int(time.time()) % 100000}"
    result = await login(
        dataclasses.replace(settings, client_id=client_id), timeout_s=BROKER_TIMEOUT_S
    )
    where = result.url
    proto = ""
    if result.tls_version is not None:
        proto = f", TLS ok ({result.tls_version})"
    stage = result.stage
    if stage is CheckStage.SETTINGS:
        return BROKER(
            Level.FAIL,
            f"{where}: {result.detail}",
            "check upstream.url (mqtts:// for TLS, or allow_insecure on a trusted LAN), "
            "upstream.ca_file / cert_file / key_file and password_file paths and permissions",
        )
    if stage is CheckStage.CONNECT:
        return BROKER(
            Level.FAIL,
            f"{where}: {result.detail}",
            "check the host name, port, the network route and firewall, and that the broker "
            "runs (`systemctl status mosquitto`)",
        )
    if stage is CheckStage.TLS:
        return BROKER(
            Level.FAIL,
            f"{where}: {result.detail}",
            "set upstream.ca_file to the CA that signed the broker's certificate; the URL "
            "host must match the certificate; is this the broker's TLS port (8883)?",
        )
    if stage is CheckStage.MQTT:
        return BROKER(
            Level.FAIL,
            f"{where} accepted the connection{proto} but did not answer an MQTT CONNECT",
            "is this the broker's MQTT port (1883 plain, 8883 TLS)? check upstream.protocol "
            "and the broker's log",
        )
    if stage is CheckStage.LOGIN:
        refusal = result.refusal.lower() or f"code {result.reason_code}"
        return BROKER(
            Level.FAIL,
            f"{where} reachable{proto}, but the broker refused the login: {refusal}",
            "check upstream.username and upstream.password(_file), and the broker's ACL "
            "for this client",
        )
    return BROKER(Level.PASS, f"{where} reachable{proto}, MQTT login ok")


#: This module's checks in the order they run, each with its name.
CHECKS: Checks = ((BROKER, check_broker),)
