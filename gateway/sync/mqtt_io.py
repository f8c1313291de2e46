"""A paho-mqtt client's socket driven by the running asyncio loop.

paho documents this "external loop" pattern: the application watches the socket paho
opens (``on_socket_open`` / ``on_socket_close``, ``on_socket_register_write`` /
``on_socket_unregister_write``), calls ``loop_read`` / ``loop_write`` when it is readable /
writable and ``loop_misc`` about once a second (keep-alive PINGs, retries). Only paho's
public API is used; :class:`PahoIO` does that for one client, and :meth:`PahoIO.hop` turns
any paho callback into a call on the loop. :func:`paho_client` makes the client for a
connection's settings; :class:`HandshakeClosingSocket` closes a TLS socket whose handshake
failed (paho leaves it open).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.sync.settings import BrokerSettings

if TYPE_CHECKING:
    import paho.mqtt.client as paho

#: Seconds between paho's keep-alive / retry housekeeping calls.
MISC_INTERVAL_S = 1.0


class HandshakeClosingSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that closes itself when its handshake fails (paho-mqtt 2.x's
    ``connect`` raises from ``do_handshake`` and leaves the socket to the garbage
    collector: a ResourceWarning, and a file descriptor held until then)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def paho_client(
    s: BrokerSettings, password: str | None, tls: ssl.SSLContext | None, timeout_s: float
) -> paho.Client:
    """A paho client for these settings (VERSION2 callbacks; MQTT 5 or 3.1.1 with a clean
    session; credentials and TLS when given). Not connected."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=s.client_id,
        protocol=paho.MQTTv5 if s.v5 else paho.MQTTv311,
        clean_session=None if s.v5 else True,
    )
    client.connect_timeout = timeout_s
    if s.username:
        client.username_pw_set(s.username, password)
    if tls is not None:
        # paho wraps the TCP socket with this context and does not close it when the
        # handshake fails: SSLContext.sslsocket_class (a documented hook) makes the socket
        # close itself then
        tls.sslsocket_class = HandshakeClosingSocket
        client.tls_set_context(tls)
    return client


class PahoIO:
    """Reads, writes and housekeeping of one paho client on the running loop, until
    ``lost`` (the connection's end) is resolved or :meth:`close` is called."""

    def __init__(self, client: paho.Client, lost: asyncio.Future[None]) -> None:
        self._client = client
        self._lost = lost
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._sock: socket.socket | None = None
        self._misc: asyncio.Task[None] | None = None
        client.on_socket_open = self.hop(self._watch)
        client.on_socket_close = self.hop(self._unwatch)
        client.on_socket_register_write = self.hop(self._want_write)
        client.on_socket_unregister_write = self.hop(self._no_write)

    @property
    def open(self) -> bool:
        """A socket is watched (opened, and not closed since)."""
        return self._sock is not None

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version once the handshake passed (None: plaintext)."""
        sock = self._client.socket()
        return sock.version() if isinstance(sock, ssl.SSLSocket) else None

    def hop(self, fn: Callable[..., None]) -> Callable[..., None]:
        """A paho callback ``(client, userdata, *args)`` that runs ``fn(*args)`` on the loop:
        at once when paho calls from the loop's thread (inside ``loop_read``/``loop_write``:
        paho calls ``on_socket_close`` before it closes the socket, so the reader goes before
        the file descriptor number can be reused), else through ``call_soon_threadsafe``
        (the connect thread; the order of the calls is kept)."""

        def callback(_client: paho.Client, _userdata: Any, *args: Any) -> None:
            if threading.get_ident() == self._thread:
                fn(*args)
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(fn, *args)

        return callback

    def close(self) -> bool:
        """Stop watching and close the socket whatever state it is in (also one opened by a
        connect thread nobody waits for any more). Whether there was one."""
        sock: Any = self._sock
        self._sock = None
        if sock is None:
            sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            with contextlib.suppress(OSError):
                sock.close()
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None
        if sock is None:
            return False
        client = self._client
        client.on_socket_open = client.on_socket_close = None
        client.on_socket_register_write = client.on_socket_unregister_write = None
        return True

    def _watch(self, sock: socket.socket) -> None:
        if sock.fileno() == -1 or self._lost.done():
            return
        self._sock = sock
        self._loop.add_reader(sock, self._read)
        if self._misc is None:
            self._misc = self._loop.create_task(self._housekeeping(), name="mqtt-misc")

    def _unwatch(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if sock is self._sock:
            self._sock = None

    def _want_write(self, sock: socket.socket) -> None:
        if sock.fileno() != -1 and not self._lost.done():
            self._loop.add_writer(sock, self._client.loop_write)

    def _no_write(self, sock: socket.socket) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    def _read(self) -> None:
        import paho.mqtt.client as paho

        self._client.loop_read()
        # TLS: records already decrypted into the SSL object do not wake the reader again
        sock = self._sock
        while isinstance(sock, ssl.SSLSocket) and sock.fileno() != -1 and sock.pending():
            if self._client.loop_read() != paho.MQTT_ERR_SUCCESS:
                break

    async def _housekeeping(self) -> None:
        """paho's keep-alive PINGs and retries; ends when the connection does."""
        import paho.mqtt.client as paho

        while self._client.loop_misc() == paho.MQTT_ERR_SUCCESS:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MISC_INTERVAL_S):
                    await asyncio.shield(self._lost)
