"""A real Mosquitto for tests: broker processes, TLS material, a faulty TCP proxy, a collector.

``mosquitto`` (Debian package) is started on a free loopback port with a generated config in
the test's tmp_path. When the binary is missing the fixtures skip locally and FAIL in CI
(``CI=true``): these tests must run there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

import aiomqtt
import pytest

from gateway.sync.payload import Batch, decode_batch

if TYPE_CHECKING:
    from gateway.config import Config, Secret

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S = 10.0


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), *MOSQUITTO_PATHS):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "mosquitto is not installed (apt-get install mosquitto; `make test` does it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + ": the MQTT tests must run in CI")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {log.read_text(errors='replace')[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                time.sleep(0.05)
                continue
            return
    raise RuntimeError(f"mosquitto did not listen on {port}")


@dataclass
class Mosquitto:
    """One broker process; ``stop``/``start`` keep the port (and, with persistence, the
    sessions of persistent subscribers across a graceful restart)."""

    directory: Path
    extra: str = ""
    tls: TlsFiles | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # do not drop to "mosquitto": it cannot read tmp_path
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra + "\n")

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.write_config()
        log = self.directory / "mosquitto.log"
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.config_path)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_port(self.port, self.proc, log)

    def stop(self) -> None:
        """Graceful stop (SIGTERM): persistent sessions are saved."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_broker(directory: Path, extra: str = "", tls: TlsFiles | None = None) -> Mosquitto:
    mosquitto_binary()
    broker = Mosquitto(directory, extra=extra, tls=tls)
    broker.start()
    return broker


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = start_broker(tmp_path / "broker")
    try:
        yield broker
    finally:
        broker.stop()


# ------------------------------------------------------------------------------------ TLS


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that did not sign the server: must be refused


def make_tls(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(k: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    def write_cert(c: x509.Certificate, path: Path) -> Path:
        path.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        return path

    def builder(
        cn: str, issuer: x509.Name, k: ec.EllipticCurvePrivateKey, *, ca: bool
    ) -> x509.CertificateBuilder:
        """Subject, issuer, key, a random serial, valid from yesterday for 30 days."""
        return (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        cert = (
            builder(cn, name(cn), k, ca=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), False)
            .sign(k, hashes.SHA256())
        )
        return k, cert

    def leaf(
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
        cn: str,
        server: bool,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        b = (
            builder(cn, ca_cert.subject, k, ca=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        return k, b.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = ca("migw test CA")
    s_key, s_cert = leaf(ca_key, ca_cert, "localhost", True)
    c_key, c_cert = leaf(ca_key, ca_cert, "migw-test-gateway", False)
    _, other = ca("some other CA")
    return TlsFiles(
        ca=write_cert(ca_cert, directory / "ca.pem"),
        server_cert=write_cert(s_cert, directory / "server.pem"),
        server_key=write_key(s_key, directory / "server.key"),
        client_cert=write_cert(c_cert, directory / "client.pem"),
        client_key=write_key(c_key, directory / "client.key"),
        other_ca=write_cert(other, directory / "other-ca.pem"),
    )


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    files = make_tls(tmp_path / "tls")
    broker = start_broker(tmp_path / "tls-broker", tls=files)
    try:
        yield broker
    finally:
        broker.stop()


# ------------------------------------------------------------------------------------ proxy


class FaultyProxy:
    """A TCP proxy on loopback that can stall (stop forwarding, keep the sockets) and cut
    (close every connection) on demand. Runs on the test's event loop."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for a, b in list(self._conns):
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._conns.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_w)
        self._conns.add(pair)
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pipe(src, dst, pair), name="proxy-pipe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                if pair not in self._conns:
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            for w in pair:
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._conns.discard(pair)


@contextlib.asynccontextmanager
async def faulty_proxy(target_port: int) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


# ------------------------------------------------------------------------------------ collector


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    content_type: str | None
    correlation: bytes | None


class Collector:
    """A persistent MQTT 5 subscriber that reconnects by itself and keeps what it gets.

    With a fixed client id, ``clean_start`` off and a session expiry, a broker restarted
    gracefully (persistence on) still queues QoS 1 messages for it.
    """

    def __init__(self, broker_port: int, topics: list[str], client_id: str = "collector") -> None:
        self.port = broker_port
        self.topics = topics
        self.client_id = client_id
        self.messages: list[Received] = []
        self.connected = asyncio.Event()
        self.new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run(), name="collector")
        async with asyncio.timeout(10):
            await self.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: unannotated
        props.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=props,
                    timeout=5,
                ) as client:
                    self.client = client
                    for t in self.topics:
                        await client.subscribe(t, qos=1)
                    self.connected.set()
                    async for msg in client.messages:
                        p = msg.properties
                        payload = msg.payload if isinstance(msg.payload, bytes) else b""
                        self.messages.append(
                            Received(
                                msg.topic.value,
                                payload,
                                bool(msg.retain),
                                getattr(p, "ContentType", None) if p else None,
                                getattr(p, "CorrelationData", None) if p else None,
                            )
                        )
                        self.new.set()
            except aiomqtt.MqttError:
                self.client = None
                self.connected.clear()
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def batches(self, topic: str) -> list[Batch]:
        return [decode_batch(m.payload, m.content_type) for m in self.on(topic)]

    def seqs(self, topic: str) -> list[int]:
        out: list[int] = []
        for b in self.batches(topic):
            out += b.seqs()
        return out

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.new.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self.new.wait()


# ------------------------------------------------------------------------------------ gateway


class UpstreamOverrides(TypedDict, total=False):
    """The ``UpstreamSection`` fields a test may override in ``gateway_config``."""

    protocol: Literal["5", "3.1.1"]
    client_id: str
    username: str
    password: Secret | None
    password_file: Path | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    allow_insecure: bool
    topic_prefix: str
    keepalive: int
    batch_max_readings: int
    batch_max_ms: int
    compress: bool
    outbox_max_bytes: int
    outbox_ttl_days: float
    outbox_full: Literal["drop_oldest", "reject_new"]
    drain_rate: int
    max_message_bytes: int
    reconnect_min_s: float
    reconnect_max_s: float
    reconnect_stable_s: float


def gateway_config(
    state_dir: Path,
    url: str,
    *,
    ha: bool = False,
    gateway_id: str = "testgw",
    **upstream: Unpack[UpstreamOverrides],
) -> Config:
    """A Config for the sync tests: API off, fast reconnects, short batching window."""
    from gateway.config import (
        ApiSection,
        Config,
        GatewaySection,
        HomeAssistantSection,
        UpstreamSection,
    )

    up = UpstreamSection(
        url=url, reconnect_min_s=0.05, reconnect_max_s=0.5, batch_max_ms=50, keepalive=5
    )
    return Config(
        gateway=GatewaySection(id=gateway_id, state_dir=state_dir),
        api=ApiSection(enabled=False),
        upstream=dataclasses.replace(up, **upstream),
        homeassistant=HomeAssistantSection(enabled=ha),
    )
