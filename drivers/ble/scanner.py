"""The one owner of the BLE scanner: a Protocol seam shaped like bleak's ``BleakScanner``,
a bleak-backed implementation (passive on BlueZ, active fallback), and
:class:`BleScanner`, which turns detection callbacks into :class:`Advertisement` values for
its subscribers.

:meth:`BleScanner.session` is ONE session: start scanning, serve until the adapter fails,
raise :class:`~drivers.ble.errors.ScannerError` (adapter missing or powered off, D-Bus
errors, "InProgress", a silent adapter). It keeps no supervisor of its own: whoever runs it
supervises it (the gateway's service; :func:`supervise` for standalone use such as
``migw sniff ble``), so there is one supervisor per part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.ble.bluez import AdapterWatch
from drivers.ble.errors import ScannerError
from drivers.ble.types import Advertisement, make_advertisement
from drivers.supervisor import Backoff, Supervisor, SupervisorStatus, Timing

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScannerTiming:
    """The owner's timings (seconds), passed to :class:`BleScanner`; tests shorten them."""

    start_timeout: float = 20.0
    stop_timeout: float = 10.0
    #: No advert at all for this long, after adverts were seen before, means a wedged
    #: adapter: restart scanning (None: off).
    silence_restart: float | None = 600.0
    #: How often a session checks for a lost adapter and for silence.
    watch_interval: float = 5.0


#: 16-bit UUIDs we listen for (passive scanning needs BlueZ or-patterns on them).
WATCHED_UUID16 = (0xFE95, 0x181A, 0x181C, 0x181E, 0xFCD2, 0x181D, 0x181B, 0xFD50)


class DeviceLike(Protocol):
    """What a detection callback gets as its first argument (bleak's ``BLEDevice``)."""

    @property
    def address(self) -> str: ...


class AdvertisementDataLike(Protocol):
    """bleak's ``AdvertisementData``, the fields we read."""

    @property
    def local_name(self) -> str | None: ...

    @property
    def rssi(self) -> int: ...

    @property
    def service_data(self) -> Mapping[str, bytes]: ...

    @property
    def manufacturer_data(self) -> Mapping[int, bytes]: ...


DetectionCallback = Callable[[Any, Any], None]


class Scanner(Protocol):
    """A started/stopped source of detection callbacks (``BleakScanner`` usage)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


#: Builds a scanner that reports each advert to ``callback(device, advertisement_data)``.
ScannerFactory = Callable[[DetectionCallback], Scanner]


# --- bleak ---------------------------------------------------------------------------------

_PASSIVE_UNSUPPORTED = (
    "notsupported",
    "not supported",
    "advertisementmonitor",
    "requires bluez",
    "or_patterns",
    "unknownmethod",
    "experimental",
)


def _passive_unsupported(exc: BaseException) -> bool:
    text = describe_fault(exc).lower()
    return any(marker in text for marker in _PASSIVE_UNSUPPORTED)


def describe_fault(exc: BaseException) -> str:
    """A short, secret-free reason for health and logs."""
    text = str(exc).strip() or type(exc).__name__
    name = type(exc).__name__
    dbus_type = getattr(exc, "type", None)  # dbus_fast.errors.DBusError carries the D-Bus name
    if isinstance(dbus_type, str) and dbus_type not in text:
        text = f"{dbus_type}: {text}"
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError, PermissionError)):
        # bleak's BlueZ backend connecting to the system bus
        return f"D-Bus system bus not reachable (is dbus/bluetoothd running?): {name}: {text}"
    if "inprogress" in text.replace(" ", "").lower():
        return f"adapter busy (InProgress): {text}"
    if "powered" in text.lower() or "poweredoff" in text.replace(" ", "").lower():
        return f"adapter powered off: {text}"
    if "not found" in text.lower() or "no bluetooth adapters" in text.lower():
        return f"adapter missing: {text}"
    return f"{name}: {text}"


class BleakBackend:
    """A :class:`Scanner` over bleak: passive on Linux/BlueZ when asked, else active.

    If the passive scanner cannot start because BlueZ lacks advertisement monitors (older
    BlueZ or no ``--experimental``), it falls back to active scanning and logs why once.
    ``scanner_cls`` is bleak's ``BleakScanner`` unless a test passes a stand-in.
    """

    def __init__(
        self,
        callback: DetectionCallback,
        *,
        adapter: str = "hci0",
        passive: bool = True,
        scanner_cls: Any = None,
        platform: str = sys.platform,
        on_fallback: Callable[[], None] | None = None,
        watch: bool | None = None,
    ) -> None:
        self._callback = callback
        #: Watch BlueZ for the adapter's loss (default: with the real bleak on Linux).
        self._watch_bluez = (
            (scanner_cls is None and platform.startswith("linux")) if watch is None else watch
        )
        self._watch: AdapterWatch | None = None
        #: Set when the adapter or bluetoothd went away while scanning (see lost_reason).
        self.lost = asyncio.Event()
        self._on_fallback = on_fallback
        self._adapter = adapter
        self._passive = passive and platform.startswith("linux")
        self._cls = scanner_cls
        self._scanner: Any = None
        self.mode = "passive" if self._passive else "active"
        self.fallback_reason = ""
        if passive and not self._passive:
            self.fallback_reason = f"passive scanning needs BlueZ (platform {platform})"

    def _make(self, passive: bool) -> Any:
        cls = self._cls
        if cls is None:  # pragma: no cover - the real bleak, exercised on hardware
            from bleak import BleakScanner

            cls = BleakScanner
        bluez: dict[str, Any] = {"adapter": self._adapter}
        if passive:
            from bleak.args.bluez import OrPattern
            from bleak.assigned_numbers import AdvertisementDataType

            bluez["or_patterns"] = [
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, u.to_bytes(2, "little"))
                for u in WATCHED_UUID16
            ]
        return cls(
            detection_callback=self._callback,
            scanning_mode="passive" if passive else "active",
            bluez=bluez,
        )

    @property
    def lost_reason(self) -> str:
        return self._watch.reason if self._watch is not None else ""

    async def start(self) -> None:
        if self._watch_bluez:
            # listen before scanning starts, so a loss in between is not missed
            watch = AdapterWatch(self._adapter)
            await watch.start()
            self._watch = watch
            self.lost = watch.lost
        if self._passive:
            scanner = self._make(True)
            try:
                await scanner.start()
            except Exception as exc:  # bleak raises BleakError, DBusError, OSError ...
                if not _passive_unsupported(exc):
                    raise
                self._passive = False
                self.mode = "active"
                self.fallback_reason = describe_fault(exc)
                if self._on_fallback is not None:
                    self._on_fallback()
                _LOGGER.warning(
                    "passive BLE scanning is not available (%s); falling back to active "
                    "scanning (enable BlueZ experimental features for passive)",
                    self.fallback_reason,
                )
            else:
                self._scanner = scanner
                return
        scanner = self._make(False)
        await scanner.start()
        self._scanner = scanner

    async def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        watch, self._watch = self._watch, None
        try:
            if scanner is not None:
                await scanner.stop()
        finally:
            if watch is not None:
                watch.close()


def bleak_factory(
    adapter: str = "hci0",
    *,
    passive: bool = True,
    scanner_cls: Any = None,
    platform: str = sys.platform,
) -> ScannerFactory:
    """The real scanner factory for the gateway and ``migw sniff ble``.

    Once passive scanning proved unavailable, later scanners (after a restart) go straight
    to active scanning, so the fallback is logged once, not at every restart.
    ``scanner_cls`` and ``platform`` are :class:`BleakBackend`'s (a stand-in for bleak's
    ``BleakScanner`` in tests).
    """
    use_passive = [passive]

    def fell_back() -> None:
        use_passive[0] = False

    def factory(callback: DetectionCallback) -> Scanner:
        return BleakBackend(
            callback,
            adapter=adapter,
            passive=use_passive[0],
            scanner_cls=scanner_cls,
            platform=platform,
            on_fallback=fell_back,
        )

    return factory


# --- the owner -------------------------------------------------------------------------------

Subscriber = Callable[[Advertisement], None]


def to_advertisement(device: Any, data: Any, now: float) -> Advertisement:
    """bleak's (device, advertisement data) -> :class:`Advertisement`.

    bleak hands each callback fresh dicts of ``str`` -> ``bytes`` (lowercase UUIDs) and
    ``int`` -> ``bytes``, so they are taken as they are; the codecs treat every byte as
    untrusted and look payloads up by our own lowercase UUID constants.
    """
    return make_advertisement(
        str(device.address).upper(),
        data.rssi,
        data.service_data,
        data.manufacturer_data,
        data.local_name,
        now,
    )


class BleScanner:
    """Owns one scanner at a time; subscribers get every :class:`Advertisement`.

    :meth:`session` runs one scanner until it fails (see the module docstring); run it
    under a :class:`~drivers.supervisor.Supervisor` (:func:`supervise`).
    """

    def __init__(
        self,
        factory: ScannerFactory,
        *,
        timing: ScannerTiming = ScannerTiming(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self._subscribers: list[Subscriber] = []
        #: The subscribers as they are, a snapshot remade on (un)subscribe: a subscriber
        #: that (un)subscribes during delivery does not change the advert's round.
        self._deliver: tuple[Subscriber, ...] = ()
        self._clock = clock
        self._timing = timing
        self._silence = timing.silence_restart
        self._last_advert = 0.0
        self._scanner: Scanner | None = None
        self.adverts = 0
        self.callback_errors = 0

    # subscribers -----------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        self._deliver = tuple(self._subscribers)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)
            self._deliver = tuple(self._subscribers)

        return unsubscribe

    @property
    def mode(self) -> str:
        return str(getattr(self._scanner, "mode", "")) if self._scanner is not None else ""

    def _on_detection(self, device: Any, data: Any) -> None:
        now = self._clock()
        self._last_advert = now
        self.adverts += 1
        adv = to_advertisement(device, data, now)
        for subscriber in self._deliver:
            try:
                subscriber(adv)
            except Exception:  # one bad subscriber must not stop scanning
                self.callback_errors += 1
                if self.callback_errors == 1:  # once with the traceback, then quietly
                    _LOGGER.exception("BLE advert subscriber failed")
                else:
                    _LOGGER.debug("BLE advert subscriber failed again", exc_info=True)

    # scanning --------------------------------------------------------------------------
    async def session(self, on_running: Callable[[], None] | None = None) -> None:
        """One session: start a scanner, deliver adverts until it fails, then raise
        :class:`ScannerError` (the scanner is stopped first). ``on_running`` is called once
        scanning has started (a supervisor's ``mark_running``)."""
        scanner = self._factory(self._on_detection)
        timing = self._timing
        try:
            async with asyncio.timeout(timing.start_timeout):
                await scanner.start()
        except BaseException as exc:
            # a start that failed or was cancelled half-way may have left scanning on
            await self._stop_scanner(scanner)
            if isinstance(exc, TimeoutError):
                raise ScannerError(
                    f"scanner did not start within {timing.start_timeout:g} s"
                ) from None
            if isinstance(exc, Exception):  # classify every adapter fault
                raise ScannerError(describe_fault(exc)) from exc
            raise
        self._scanner = scanner
        self._last_advert = self._clock()
        if on_running is not None:
            on_running()
        lost: asyncio.Event | None = getattr(scanner, "lost", None)
        try:
            while True:
                if lost is None:
                    await asyncio.sleep(timing.watch_interval)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timing.watch_interval):
                            await lost.wait()
                    if lost.is_set():
                        reason = getattr(scanner, "lost_reason", "") or "adapter lost"
                        raise ScannerError(reason)
                if (
                    self._silence is not None
                    and self.adverts  # an empty neighbourhood is quiet, not wedged
                    and self._clock() - self._last_advert > self._silence
                ):
                    raise ScannerError(f"no adverts for {self._silence:g} s (adapter wedged?)")
        finally:
            self._scanner = None
            await self._stop_scanner(scanner)

    async def _stop_scanner(self, scanner: Any) -> None:
        try:
            async with asyncio.timeout(self._timing.stop_timeout):
                await scanner.stop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing stop must not mask the cause
            _LOGGER.debug("stopping the BLE scanner failed: %s", describe_fault(exc))


def supervise(
    scanner: BleScanner,
    *,
    name: str = "BLE scanner",
    timing: Timing | None = None,
    backoff: Backoff | None = None,
    stable_after: float | None = None,
    on_state: Callable[[SupervisorStatus], None] | None = None,
) -> Supervisor:
    """A :class:`~drivers.supervisor.Supervisor` running ``scanner``'s sessions, for use
    without the gateway (``migw sniff ble``, bench, tests): still one supervisor deep."""
    sup: Supervisor

    async def target() -> None:
        await scanner.session(sup.mark_running)

    sup = Supervisor(
        name, target, timing=timing, backoff=backoff, stable_after=stable_after,
        on_state=on_state, logger=_LOGGER,
    )  # fmt: skip
    return sup
