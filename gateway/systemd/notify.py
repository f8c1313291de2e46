"""The ``sd_notify`` protocol: one datagram per message to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (``@name`` is an abstract socket), and the watchdog interval systemd asks
for (``WATCHDOG_USEC``). Standard library only; a no-op without ``NOTIFY_SOCKET``."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

#: The package's logger, as before it was split (log filters name "gateway.systemd").
_LOGGER = logging.getLogger(__package__)


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used on a Pi


class Notifier:
    """Sends ``sd_notify`` messages; silent no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, address: str | None) -> None:
        self._address = _socket_address(address) if address else None
        if address and self._address is None:
            _LOGGER.warning("NOTIFY_SOCKET %r is not supported; not notifying systemd", address)
        self._sock: socket.socket | None = None
        self._warned = False
        #: Messages that could not be sent (systemd gone, socket full).
        self.failures = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message."""
        if self._address is None:
            return False
        data = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self._address)
        except OSError as exc:
            self.failures += 1
            if not self._warned:
                self._warned = True
                _LOGGER.warning("cannot notify systemd (%s): %s", self._address.lstrip("\0"), exc)
            else:
                _LOGGER.debug("cannot notify systemd: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None when there is no watchdog
    for this process (unset, zero, malformed, or meant for another ``WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2_000_000
