"""Serial transport to the Z-Stack stick (pyserial through pyserial-asyncio-fast).

The :class:`ByteLink` protocol is the hardware seam: the API layer writes bytes to it and is
called back with what arrives. Tests and the demo use the real thing on a pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from typing import Any, Protocol

from drivers.errors import NeedsHumanError, TransientError

_LOGGER = logging.getLogger(__name__)

#: RTS/DTR toggle gap of the CC2652 bootloader-skip sequence (zigpy-znp uses 150 ms).
BOOTLOADER_TOGGLE_S = 0.15


#: errno values of "not allowed to open the port" (a human fixes the groups; retrying won't).
_DENIED = frozenset({errno.EACCES, errno.EPERM})

#: Seconds to wait for the port to close (pyserial closes it in an executor).
CLOSE_TIMEOUT = 2.0


class ByteLink(Protocol):
    def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...

    def set_control_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None: ...


class _Proto(asyncio.Protocol):
    def __init__(
        self, on_bytes: Callable[[bytes], None], on_lost: Callable[[Exception | None], None]
    ) -> None:
        self._on_bytes = on_bytes
        self._on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        self._on_bytes(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


class SerialLink:
    def __init__(self) -> None:
        self._transport: Any = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def lost(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    async def aclose(self) -> None:
        """Close the port and wait until pyserial has really closed it."""
        self._transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self._closed)

    def set_control_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        ser = getattr(self._transport, "serial", None)
        if ser is None:
            return
        try:
            if dtr is not None:
                ser.dtr = dtr
            if rts is not None:
                ser.rts = rts
        except (OSError, ValueError) as exc:  # a pty or adapter without modem lines
            _LOGGER.debug("cannot set modem control lines: %s", exc)


async def open_serial(
    port: str,
    *,
    baudrate: int,
    rtscts: bool,
    on_bytes: Callable[[bytes], None],
    on_lost: Callable[[Exception | None], None],
) -> ByteLink:
    """Open ``port``; a missing port is transient (unplugged), a permission error is not."""
    import serial
    import serial_asyncio_fast

    loop = asyncio.get_running_loop()
    link = SerialLink()

    def lost(exc: Exception | None) -> None:
        link.lost()
        on_lost(exc)

    try:
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            loop,
            lambda: _Proto(on_bytes, lost),
            port,
            baudrate=baudrate,
            rtscts=rtscts,
            xonxoff=False,
            exclusive=True,
        )
    except (OSError, serial.SerialException) as exc:
        # pyserial reports a locked device as SerialException(errno, ...), not PermissionError
        if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in _DENIED:
            raise NeedsHumanError(
                f"permission denied on {port}: add the service user to the dialout group"
            ) from exc
        raise TransientError(f"cannot open {port}: {exc}") from exc
    link._transport = transport
    return link
