"""Contract of gateway.sync.mqtt's thin adapter over paho-mqtt (the pinned version) against a
real Mosquitto: PUBACK reason codes reach the caller per message, CONNACK properties and
refusals, incoming messages, a lost connection, and the reusable broker check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

import pytest

from drivers.errors import NeedsHumanError, TransientError
from drivers.supervisor import Fault
from gateway.config import Secret
from gateway.sync.broker_check import CheckStage, check_broker
from gateway.sync.mqtt import (
    BrokerRefusedError,
    BrokerSettings,
    Link,
    LinkError,
    open_link,
)
from gateway.sync.payload import classify_refusal
from tests.broker import Mosquitto, free_port, start_broker


def _settings(
    url: str, protocol: str = "5", username: str = "", password: Secret | None = None
) -> BrokerSettings:
    return BrokerSettings(
        url=url, client_id="contract", protocol=protocol, username=username, password=password
    )


@contextlib.asynccontextmanager
async def _link(url: str, protocol: str = "5") -> AsyncIterator[Link]:
    link = await open_link(_settings(url, protocol), will_topic="t/status", timeout_s=5)
    async with link:
        yield link


def test_the_paho_version_is_the_pinned_one() -> None:
    """The adapter relies on paho 2.x's VERSION2 callbacks, ``connect_timeout``,
    ``socket()`` and the on_socket_* hooks; pyproject pins the range this test covers."""
    major, minor = (int(x) for x in version("paho-mqtt").split(".")[:2])
    assert (major, minor) >= (2, 1) and (major, minor) < (2, 3)


async def test_a_puback_reason_code_reaches_the_sender(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n")
    broker = start_broker(tmp_path / "broker", extra=f"acl_file {acl}\nmax_packet_size 65000")
    try:
        async with _link(broker.url) as link:
            assert link.v5
            assert link.max_packet_size == 65000  # CONNACK properties were read
            allowed = link.send("ok/x", b"1", qos=1)
            refused = link.send("denied/x", b"2", qos=1)  # both in flight at once
            # Mosquitto says 0x10 "no matching subscribers" (a success) when nobody listens
            assert await link.wait_ack(allowed, 5) == 0x10
            assert classify_refusal(0x10) is None
            assert await link.wait_ack(refused, 5) == 0x87  # not authorized, per message
    finally:
        broker.stop()


async def test_messages_arrive_with_topic_payload_and_properties(mosquitto: Mosquitto) -> None:
    from gateway.sync.mqtt import response_properties

    async with _link(mosquitto.url) as link:
        assert await link.subscribe("cmd/#", qos=1) == [1]
        props = response_properties(True, b"corr")
        assert await link.publish("cmd/a", b'{"x":1}', qos=1, properties=props) == 0
        async with asyncio.timeout(5):
            msg = await anext(link.messages())
        assert (msg.topic, msg.payload, msg.qos, msg.retain) == ("cmd/a", b'{"x":1}', 1, False)
        assert msg.properties is not None
        assert msg.properties.CorrelationData == b"corr"  # type: ignore[attr-defined]  # paho sets it at run time


async def test_a_lost_connection_ends_messages_and_fails_waiters(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker")
    try:
        async with _link(broker.url, protocol="3.1.1") as link:
            assert not link.v5
            broker.stop()
            async with asyncio.timeout(10):
                with pytest.raises(LinkError, match="connection lost"):
                    await anext(link.messages())
            assert link.lost.done()
            with pytest.raises(LinkError, match="not connected"):
                link.send("t/x", b"1")
    finally:
        broker.stop()


async def test_a_refused_login_needs_a_human(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("")  # nobody may log in
    broker = start_broker(
        tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwords}"
    )
    try:
        link = await open_link(_settings(broker.url), will_topic="t/status", timeout_s=5)
        with pytest.raises(BrokerRefusedError) as err:
            await link.connect()
        assert isinstance(err.value, NeedsHumanError)
        assert err.value.code == 0x87
        assert f"{broker.url} refused the connection: Not authorized (0x87)" == str(err.value)
        check = await check_broker(_settings(broker.url, username="bob", password=None))
        assert (check.stage, check.fault, check.reason_code) == (
            CheckStage.LOGIN,
            Fault.NEEDS_HUMAN,
            0x87,
        )
        assert check.refusal == "Not authorized"
        assert not check.ok
    finally:
        broker.stop()


async def test_a_stalled_connect_is_bounded_and_transient() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes CONNECT, never answers
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    url = f"mqtt://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        link = await open_link(_settings(url), will_topic="t/status", timeout_s=0.3)
        with pytest.raises(TimeoutError):
            await link.connect()
        check = await check_broker(_settings(url), timeout_s=0.3)
        assert (check.stage, check.fault) == (CheckStage.CONNECT, Fault.TRANSIENT)
        assert check.detail == "cannot connect: no answer in 0.3 s"
    finally:
        server.close()
        await server.wait_closed()


async def test_check_broker_stages(tmp_path: Path, mosquitto: Mosquitto) -> None:
    ok = await check_broker(_settings(mosquitto.url))
    assert (ok.ok, ok.stage, ok.fault, ok.reason_code, ok.tls_version) == (
        True,
        CheckStage.OK,
        None,
        0,
        None,
    )
    closed = f"mqtt://127.0.0.1:{free_port()}"
    refused = await check_broker(_settings(closed))
    assert (refused.stage, refused.fault) == (CheckStage.CONNECT, Fault.TRANSIENT)
    assert refused.detail == "cannot connect: Connection refused"
    remote = await check_broker(_settings("mqtt://192.0.2.10:1883"))
    assert (remote.stage, remote.fault) == (CheckStage.SETTINGS, Fault.NEEDS_HUMAN)
    assert "refusing plaintext MQTT" in remote.detail


async def test_a_mqtt311_refusal_code_is_mapped_onto_mqtt5() -> None:
    """An MQTT 3.1.1 CONNACK return code 5 arrives as paho's 0x87 (not authorized)."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            header = await reader.readexactly(2)
            await reader.readexactly(header[1])
            writer.write(b"\x20\x02\x00\x05")
            await writer.drain()
            await reader.read()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    url = f"mqtt://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        check = await check_broker(_settings(url, protocol="3.1.1"), timeout_s=5)
        assert (check.stage, check.fault, check.reason_code, check.refusal) == (
            CheckStage.LOGIN,
            Fault.NEEDS_HUMAN,
            0x87,
            "Not authorized",
        )
    finally:
        server.close()
        await server.wait_closed()


def test_link_errors_are_transient() -> None:
    assert issubclass(LinkError, TransientError)
