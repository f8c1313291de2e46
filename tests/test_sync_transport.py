"""Transport settings against a real Mosquitto: TLS with client certificates, plaintext
refused off loopback, password from a file (never logged), MQTT 3.1.1 with zlib."""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from drivers.supervisor import State
from gateway.config import Config
from gateway.service import Service
from gateway.sync import SyncAgent
from gateway.sync.payload import decode_batch
from tests.broker import (
    Collector,
    Mosquitto,
    TlsFiles,
    gateway_config,
    start_broker,
)
from tests.synth import SynthDriver

TELEMETRY = "migw/testgw/telemetry"


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


async def _wait(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _tls_files(broker: Mosquitto) -> TlsFiles:
    assert broker.tls is not None
    return broker.tls


def _tls_config(tmp_path: Path, broker: Mosquitto, ca: Path) -> Config:
    """A gateway trusting ``ca`` and presenting the broker's client certificate."""
    tls = _tls_files(broker)
    return gateway_config(
        tmp_path / "state",
        broker.url,
        ca_file=ca,
        cert_file=tls.client_cert,
        key_file=tls.client_key,
    )


async def test_tls_with_client_certificate(tmp_path: Path, tls_mosquitto: Mosquitto) -> None:
    tls = _tls_files(tls_mosquitto)
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    synth = SynthDriver(devices=2, rate=200)
    cfg = _tls_config(tmp_path, tls_mosquitto, tls.ca)
    got: list[bytes] = []
    async with aiomqtt.Client(
        "127.0.0.1",
        tls_mosquitto.port,
        identifier="tls-sub",
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=ctx,
    ) as sub:
        await sub.subscribe(TELEMETRY, qos=1)
        async with Service(cfg, drivers=[synth]) as svc:
            agent = _agent(svc)
            async with asyncio.timeout(20):
                async for msg in sub.messages:
                    assert isinstance(msg.payload, bytes)
                    got.append(msg.payload)
                    if sum(len(decode_batch(p).seqs()) for p in got) >= 100:
                        break
            assert agent.stats()["upstream"]["url"] == f"mqtts://127.0.0.1:{tls_mosquitto.port}"
            assert agent.health().health.value == "ok"
    seqs = [s for p in got for s in decode_batch(p).seqs()]
    assert seqs[:100] == list(range(1, 101))


async def test_tls_refuses_a_server_signed_by_another_ca(
    tmp_path: Path, tls_mosquitto: Mosquitto
) -> None:
    tls = _tls_files(tls_mosquitto)
    cfg = _tls_config(tmp_path, tls_mosquitto, tls.other_ca)
    synth = SynthDriver(devices=1, rate=100)
    async with Service(cfg, drivers=[synth]) as svc:
        agent = _agent(svc)
        await _wait(lambda: agent.stats()["upstream"]["last_error"])
        await _wait(lambda: agent.stats()["outbox"]["rows"] > 10)
        assert "CERTIFICATE_VERIFY_FAILED" in agent.health().reason
        assert agent.stats()["upstream"]["connected"] is False
    gc.collect()  # a socket of a failed handshake left unclosed would warn here (an error)


async def test_plaintext_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    cfg = gateway_config(tmp_path / "state", "mqtt://192.0.2.10:1883")
    async with Service(cfg, drivers=[]) as svc:
        agent = _agent(svc)
        await _wait(lambda: agent.stats()["upstream"]["state"] == "failed")
        assert "refusing plaintext MQTT to mqtt://192.0.2.10:1883" in agent.health().reason
        # the link is a part of its own under the service's one supervisor, which holds the
        # state the agent reports
        link = svc.supervisors["sync-upstream"]
        assert link.state is State.FAILED
        assert "refusing plaintext MQTT" in link.status.reason
        assert svc.supervisors["sync"].state is State.RUNNING


def test_client_key_without_tls_url_is_refused() -> None:
    from drivers.errors import NeedsHumanError
    from gateway.sync.mqtt import BrokerSettings, check_transport

    s = BrokerSettings("mqtt://10.0.0.2:1883", "x", allow_insecure=True)
    check_transport(s)  # allowed: the operator said so
    with pytest.raises(NeedsHumanError, match="use mqtts://"):
        check_transport(BrokerSettings("mqtt://127.0.0.1", "x", ca_file=Path("/ca.pem")))


async def test_password_from_file_is_used_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-Pa55word"
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    proc = await asyncio.create_subprocess_exec("mosquitto_passwd", "-b", str(passwd), "gw", secret)
    assert await proc.wait() == 0
    broker = start_broker(
        tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}"
    )
    broker.config_path.write_text(
        broker.config_path.read_text().replace("allow_anonymous true\n", "")
    )
    broker.restart()
    try:
        pw_file = tmp_path / "pw"
        pw_file.write_text(secret + "\n")
        caplog.set_level(logging.DEBUG)
        good = gateway_config(tmp_path / "state", broker.url, username="gw", password_file=pw_file)
        async with Service(good, drivers=[SynthDriver(rate=100)]) as svc:
            agent = _agent(svc)
            await _wait(lambda: agent.stats()["rows_acked"] > 20)
        pw_file.write_text("wrong\n")
        async with Service(good, drivers=[]) as svc:
            agent = _agent(svc)
            await _wait(lambda: agent.stats()["upstream"]["state"] == "failed")
            assert "refused the connection" in agent.health().reason
        assert secret not in caplog.text
        assert secret not in repr(good)
    finally:
        broker.stop()


async def test_mqtt311_with_zlib(tmp_path: Path, mosquitto: Mosquitto) -> None:
    synth = SynthDriver(devices=3, rate=400)
    cfg = gateway_config(tmp_path / "state", mosquitto.url, protocol="3.1.1", compress=True)
    async with (
        Collector(mosquitto.port, [TELEMETRY, "migw/testgw/status"]) as col,
        Service(cfg, drivers=[synth]) as svc,
    ):
        await col.wait_for(lambda: len(col.seqs(TELEMETRY)) >= 200)
        zipped = [m for m in col.on(TELEMETRY) if m.payload[:1] == b"\x78"]
        assert zipped  # batches over COMPRESS_MIN_BYTES go out compressed
        assert all(m.content_type is None for m in col.on(TELEMETRY))  # 3.1.1: no properties
        assert col.on("migw/testgw/status")[-1].payload == b"online"
        seqs = col.seqs(TELEMETRY)
        assert seqs == list(range(1, len(seqs) + 1))
        assert _agent(svc).stats()["upstream"]["max_packet_size"] is None


async def test_mqtt5_announces_zlib_with_the_content_type(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    synth = SynthDriver(devices=3, rate=400)
    cfg = gateway_config(tmp_path / "state", mosquitto.url, compress=True)
    async with (
        Collector(mosquitto.port, [TELEMETRY]) as col,
        Service(cfg, drivers=[synth]) as svc,
    ):
        await col.wait_for(lambda: len(col.seqs(TELEMETRY)) >= 200)
        types = {m.content_type for m in col.on(TELEMETRY)}
        assert "application/zlib" in types
        assert types <= {"application/zlib", "application/json"}
        for m in col.on(TELEMETRY):
            assert (m.payload[:1] == b"\x78") is (m.content_type == "application/zlib")
        assert _agent(svc).stats()["readings_sent"] >= 200
