"""Is there a Z-Stack stick answering on the port? The probe the session and `migw doctor` share.

:func:`wake` runs the bootloader skip and pings; :func:`read_version` asks SYS_VERSION;
:func:`ping_stick` opens a port, does both and closes it again (doctor's check).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from drivers.errors import DriverError
from drivers.zigbee.api import ZnpApi
from drivers.zigbee.timing import ZigbeeTiming
from drivers.zigbee.transport import ByteLink, open_serial
from drivers.zigbee.znp import commands as c

#: SYS_VERSION product ids (zigbee-herdsman's ZnpVersion; zigpy-znp tells them apart the same).
PRODUCT_ZSTACK_12 = 0
PRODUCT_ZSTACK_3X0 = 1
PRODUCT_ZSTACK_30X = 2
PRODUCTS = {
    PRODUCT_ZSTACK_12: "Z-Stack 1.2",
    PRODUCT_ZSTACK_3X0: "Z-Stack 3.x.0",
    PRODUCT_ZSTACK_30X: "Z-Stack 3.0.x",
}

OpenLink = Callable[..., Awaitable[ByteLink]]


@dataclass(frozen=True, slots=True)
class StickVersion:
    product: int
    code_revision: int | None = None

    @property
    def firmware(self) -> str:
        name = PRODUCTS.get(self.product, f"Z-Stack product {self.product}")
        return f"{name} {self.code_revision}" if self.code_revision else name


async def skip_bootloader(link: ByteLink, timing: ZigbeeTiming) -> None:
    """CC2652 boards: the RTS/DTR toggle resets the chip or skips its serial bootloader."""
    link.set_control_lines(dtr=False, rts=False)
    await asyncio.sleep(timing.bootloader_toggle_s)
    link.set_control_lines(rts=True)
    await asyncio.sleep(timing.bootloader_toggle_s)
    link.set_control_lines(rts=False)
    await asyncio.sleep(timing.bootloader_toggle_s)


async def wake(
    api: ZnpApi, link: ByteLink, *, skip: bool, timing: ZigbeeTiming, attempts: int
) -> bool:
    """Bootloader skip (if ``skip``), then SYS_PING up to ``attempts`` times; True on an answer.

    After the first unanswered ping of a skip, the CC253x bootloader's "run the application"
    byte 0xEF is written (zigbee-herdsman does the same).
    """
    if skip:
        await skip_bootloader(link, timing)
    for attempt in range(attempts):
        try:
            await api.request(c.SYS_PING, wait_s=timing.ping_timeout)
        except TimeoutError:
            if skip and attempt == 0:
                api.write_raw(b"\xef")
                await asyncio.sleep(timing.bootloader_wait_s)
            continue
        return True
    return False


async def read_version(api: ZnpApi, wait_s: float | None = None) -> StickVersion:
    ver = await api.request(c.SYS_VERSION, wait_s=wait_s)
    rev = ver.fields.get("CodeRevision")
    return StickVersion(int(ver["ProductId"]), int(rev) if isinstance(rev, int) else None)


async def ping_stick(
    port: str,
    *,
    baudrate: int = 115200,
    rtscts: bool = False,
    skip: bool = True,
    timing: ZigbeeTiming | None = None,
    attempts: int = 2,
    open_link: OpenLink = open_serial,
) -> StickVersion | None:
    """Open ``port``, wake the stick and read its version; None when it does not answer.

    Opening errors are raised as the driver's errors (a missing port is transient, a
    permission problem needs a human). A stick that pings but has no SYS_VERSION answer
    gives ``StickVersion(-1)``.
    """
    timing = timing or ZigbeeTiming()
    api = ZnpApi("probe", dataclasses.replace(timing, sreq_timeout=timing.ping_timeout))
    link = await open_link(
        port,
        baudrate=baudrate,
        rtscts=rtscts,
        on_bytes=api.data_received,
        on_lost=api.connection_lost,
    )
    api.attach(link)
    try:
        if not await wake(api, link, skip=skip, timing=timing, attempts=attempts):
            return None
        try:
            return await read_version(api, timing.ping_timeout)
        except (TimeoutError, DriverError):
            return StickVersion(-1)
    finally:
        await api.aclose()
