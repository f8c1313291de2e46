"""BLE sensors (Xiaomi MiBeacon, ATC/pvvx, BTHome) through the drivers.ble scanner owner.

Devices appear from their first supported advert as ``ble-<mac hex>``; readings and button
events go to the sink; repeats are dropped and counted; replays of encrypted BTHome and
MiBeacon v4/v5 frames are rejected. Non-sleepy devices silent for
``ble.unavailable_after_s`` become unavailable; sleepy ones (door, motion, flood ...
sensors that send on change) never do.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers.ble.decoder import decode_payload
from drivers.ble.dedup import FORMAT_INDEX, Deduplicator, ReplayGuard, window_for
from drivers.ble.downgrade import DowngradeGuard
from drivers.ble.keys import BindKey, parse_key
from drivers.ble.scanner import BleScanner, ScannerFactory, bleak_factory
from drivers.ble.types import Advertisement, Decoded, Failed, FailReason, normalize_mac
from drivers.supervisor import describe
from gateway.adapters import BLE_IDS, AdapterContext
from gateway.adapters.ble_setup import fault_hint, load_keys
from gateway.driver import DriverHealth, Health, Sink
from gateway.model import Command, CommandResult, CommandStatus, DeviceStatus, DeviceUpdate

_LOGGER = logging.getLogger(__name__)

#: Seconds between availability checks, and between RSSI-only device updates.
AVAILABILITY_INTERVAL = 30.0
RSSI_INTERVAL = 60.0
#: Unknown product ids kept for diagnostics.
DIAG_MAX = 16
#: Advertiser addresses whose (MAC, device id) pair is kept (cleared when full: phones
#: rotate private addresses, so the set of addresses heard is unbounded).
IDS_MAX = 4096
#: Frames remembered per sender for de-duplication: a sensor's repeats follow their frame
#: within seconds, and one sending several formats in turn (pvvx: BTHome, MiBeacon and
#: 0x181A) interleaves a frame of each; a frame with this many newer ones from the same
#: sender since has been superseded. At 1,000 sensors (a frame every 3 s each, a 60 s
#: window) this keeps 8,000 frames instead of a full 16,384-entry table.
DEDUP_PER_SENDER = 8
#: Devices whose state (model, status, last heard) the adapter keeps: anyone in range can
#: advertise decodable frames from ever new addresses. Past it, the quarter heard least
#: recently is forgotten (counted in ``devices_forgotten``); one that speaks again is
#: announced again.
KNOWN_MAX = 4096
#: MACs warned about by name (a plaintext downgrade, an unknown product id) at most: past
#: it, a new one is logged at DEBUG (the counters and health info still show it).
WARNED_MAX = 256


def device_id(mac: str) -> str:
    """``A4:C1:38:1A:2B:3C`` -> ``ble-a4c1381a2b3c``."""
    return BLE_IDS.of(mac.replace(":", "").lower())


_STATUS = {
    FailReason.NO_KEY: DeviceStatus.NEEDS_KEY,
    FailReason.KEY_INVALID: DeviceStatus.KEY_INVALID,
    FailReason.UNSUPPORTED: DeviceStatus.UNSUPPORTED,
}


@dataclass(slots=True)
class _Known:
    model: str
    status: DeviceStatus
    sleepy: bool
    last_seen: float
    rssi_sent_at: float = 0.0


@dataclass(slots=True)
class _Sender:
    """An advertiser address, worked out once: its MAC (the dedup sender), its device id,
    and that device's state once it has one (a repeat updates ``last_seen`` through it)."""

    mac: str
    dev: str
    known: _Known | None = None


@dataclass(slots=True)
class _Once:
    """What was logged about by name (a MAC, a product id), at most :data:`WARNED_MAX`."""

    seen: set[str | int] = field(default_factory=set)

    def first(self, key: str | int) -> bool:
        """True the first time for ``key``, while there is room (else the caller logs at
        DEBUG: anyone in range can send ever new addresses and product ids)."""
        if key in self.seen or len(self.seen) >= WARNED_MAX:
            return False
        self.seen.add(key)
        return True

    def __len__(self) -> int:
        return len(self.seen)


def _display_name(adv: Advertisement, product_name: str, dev: str) -> str:
    """The advertised local name, else the product name and the MAC's last 4 hex digits
    (passive scans rarely carry a local name)."""
    return adv.local_name or f"{product_name} {dev[-4:].upper()}"


class BleDriver:
    name = "ble"

    def __init__(
        self,
        factory: ScannerFactory,
        keys: Mapping[str, BindKey],
        *,
        dedup_window_s: float = 60.0,
        unavailable_after_s: float = 900.0,
        info: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = dict(keys)
        self._dedup = Deduplicator(window_s=dedup_window_s, per_sender=DEDUP_PER_SENDER)
        self._replay = ReplayGuard()
        self._downgrade = DowngradeGuard()
        self._warned_downgrade = _Once()
        #: Unknown MiBeacon product ids logged at INFO (one line each, not one per frame).
        self._logged_products = _Once()
        self._unavailable_after = unavailable_after_s
        self._clock = clock
        self._known: dict[str, _Known] = {}
        #: Advertiser address -> its MAC, device id and device state, made once per address:
        #: one object each, shared by every advert's readings, instead of new ones per advert.
        self._ids: dict[str, _Sender] = {}
        self._warned_keys: set[str] = set()
        #: MACs whose key decrypted a frame since the start (keyed MACs only: bounded by the
        #: keys). A frame that fails to decrypt does not mark such a key invalid while its
        #: device is ok (:meth:`_key_works`): anyone can send one under the sensor's MAC.
        self._verified: set[str] = set()
        self._unknown_products: deque[str] = deque(maxlen=DIAG_MAX)
        self._sink: Sink | None = None
        # one scanner owner for the driver's life; run() is one session of it (the service's
        # supervisor restarts it), so subscribers stay across restarts
        self._scanner = BleScanner(factory)
        self._scanner.subscribe(self.handle)
        self._sessions = 0
        #: Why the last session failed, until a new scanner runs ("" while healthy).
        self._fault = ""
        #: Called with every advert before decoding (BLE presence, gateway.automations).
        self.advert_listeners: list[Callable[[Advertisement], None]] = []
        self._info = dict(info or {})
        self._info["keys_configured"] = str(len(self._keys))
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "adverts",
                "decoded",
                "duplicates_dropped",
                "decrypt_failures",
                "replays_rejected",
                "downgrade_rejected",
                "malformed",
                "unsupported",
                "needs_key",
                "scanner_restarts",
                "readings",
                "events",
                "devices_forgotten",
            ),
            0,
        )

    # Driver protocol --------------------------------------------------------------------
    def owns(self, device_id: str) -> bool:
        return BLE_IDS.owns(device_id)

    async def command(self, device_id: str, command: Command) -> CommandResult:
        return CommandResult(CommandStatus.UNSUPPORTED, "BLE sensors take no commands")

    def health(self) -> DriverHealth:
        counters = dict(self.counters)
        counters["duplicates_dropped"] = self._dedup.dropped
        counters["replays_rejected"] = self._replay.rejected
        counters["downgrade_rejected"] = self._downgrade.rejected
        info = dict(self._info)
        info["devices"] = str(len(self._known))
        if self._unknown_products:
            info["unknown_products"] = "; ".join(self._unknown_products)
        if self._downgrade.last:
            info["downgrade_last"] = self._downgrade.last
        counters["scanner_restarts"] = max(0, self._sessions - 1)
        if self._scanner.mode:
            info["scan_mode"] = self._scanner.mode
        health, reason = Health.OK, ""
        if self._fault:  # failed, and no scanner has started since
            health, reason = Health.DEGRADED, self._fault
            info["hint"] = fault_hint(reason)
        return DriverHealth(health=health, reason=reason, counters=counters, info=info)

    async def run(self, sink: Sink) -> None:
        """One session: scan until the adapter fails, then raise (the scanner's
        :class:`~drivers.ble.errors.ScannerError`); the caller's supervisor restarts it."""
        self._sink = sink
        self._sessions += 1
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._scanner.session(self._scanning), name="ble-scanner")
                tg.create_task(self._availability_loop(), name="ble-availability")
        except Exception as exc:
            self._fault = describe(exc)
            raise

    def _scanning(self) -> None:
        self._fault = ""

    def subscribe_adverts(
        self, callback: Callable[[Advertisement], None]
    ) -> Callable[[], None] | None:
        """Every advert the running scanner hears, also to ``callback`` (``migw ble key``
        checks a key on the next encrypted one); None before the driver first ran."""
        return None if self._sink is None else self._scanner.subscribe(callback)

    # advert handling --------------------------------------------------------------------
    def handle(self, adv: Advertisement) -> None:
        """Decode one advert and report what it carries (called on the loop per advert).

        Repeats are recognised from their bytes before decoding (the payload holds the
        frame counter): a repeat costs a comparison with its sender's newest frame.
        """
        self.counters["adverts"] += 1
        for listener in self.advert_listeners:
            listener(adv)  # presence (gateway.automations): every advert, decodable or not
        now = adv.time or self._clock()
        sender: _Sender | None = None
        dedup = self._dedup
        for uuid, data in adv.service_data.items():
            fmt = FORMAT_INDEX.get(uuid)
            if fmt is None:  # not a format we decode
                continue
            if sender is None:  # (an advertiser of nothing we decode, a phone, gets none)
                sender = self._ids.get(adv.address)
                if sender is None:
                    sender = self._new_sender(adv.address)
            mac = sender.mac
            if dedup.check(mac, fmt, data, now):
                known = sender.known
                if known is None:
                    known = sender.known = self._known.get(sender.dev)
                if known is not None:  # a repeat still proves the device is alive
                    known.last_seen = now
                continue
            payload = data if type(data) is bytes else bytes(data)  # bleak gives bytes
            outcome = decode_payload(uuid, payload, mac, self._keys.get(mac))
            if isinstance(outcome, Failed):
                self._failed(outcome, adv, now)
            elif outcome is not None:
                dedup.remember(mac, fmt, payload, now, window_for(outcome, dedup.window_s))
                self._decoded(outcome, adv, now, sender)

    def _new_sender(self, address: str) -> _Sender:
        if len(self._ids) >= IDS_MAX:
            self._ids.clear()
        mac = address.upper()
        if mac == address:  # the scanner's addresses are upper case: one string, not two
            mac = address
        sender = self._ids[address] = _Sender(mac, device_id(mac))
        return sender

    def _decoded(self, result: Decoded, adv: Advertisement, now: float, sender: _Sender) -> None:
        if not self._downgrade.accept(result, keyed=result.mac in self._keys):
            _LOGGER.log(
                logging.WARNING if self._warned_downgrade.first(result.mac) else logging.DEBUG,
                "BLE %s: plaintext %s frame from a device that encrypts: rejected "
                "(spoofed, or the device's encryption was switched off; see docs/ble.md)",
                result.mac,
                result.format,
            )
            return
        if not self._replay.accept(result):
            return
        self.counters["decoded"] += 1
        sink = self._sink
        if sink is None or not result.mac:
            return
        kind = result.kind
        if result.mac == sender.mac:
            dev = sender.dev
            known = sender.known
            if known is None:
                known = sender.known = self._known.get(dev)
        else:  # a MiBeacon frame naming another MAC
            dev = device_id(result.mac)
            known = self._known.get(dev)
        if (
            known is not None
            and known.status is DeviceStatus.OK
            and known.model == kind.model
            and known.sleepy == kind.sleepy
        ):  # the usual frame: a known device, nothing about it changed (_device, inline)
            known.last_seen = now
            if adv.rssi is not None and now - known.rssi_sent_at >= RSSI_INTERVAL:
                known.rssi_sent_at = now
                sink.device(BLE_IDS.update(dev, rssi=adv.rssi))
        else:
            if kind.encrypted:  # (a device ok from a plain frame first: from its next failure)
                self._verified.add(result.mac)
            self._device(
                dev,
                kind.model,
                DeviceStatus.OK,
                kind.sleepy,
                adv,
                now,
                name=kind.name,
                manufacturer=kind.manufacturer,
                encrypted=kind.encrypted,
            )
        values = result.values
        if values:
            reading = sink.reading
            for metric, value in values.items():
                reading(dev, metric, value)
            self.counters["readings"] += len(values)
        for ev in result.events:
            sink.event(dev, ev)
            self.counters["events"] += 1

    def _failed(self, failed: Failed, adv: Advertisement, now: float) -> None:
        reason = failed.reason
        self._downgrade.learn_failed(failed)
        if reason is FailReason.KEY_INVALID:
            self.counters["decrypt_failures"] += 1
            if self._key_works(failed.mac, now):
                _LOGGER.debug(
                    "BLE %s: a frame that does not decrypt with the key that decrypts its "
                    "frames: not reported (corrupt, or forged)",
                    failed.mac,
                )
                return
            if failed.mac not in self._warned_keys:
                self._warned_keys.add(failed.mac)
                _LOGGER.warning(
                    "BLE %s (%s): the configured key does not decrypt: %s",
                    failed.mac,
                    failed.model or "unknown model",
                    failed.detail,
                )
        elif reason is FailReason.NO_KEY:
            self.counters["needs_key"] += 1
        elif reason is FailReason.MALFORMED:
            self.counters["malformed"] += 1
            return
        else:
            self.counters["unsupported"] += 1
            if failed.product_id is not None and not failed.model:
                entry = f"0x{failed.product_id:04X} from {failed.mac}: {failed.payload.hex()}"
                if entry not in self._unknown_products:
                    self._unknown_products.append(entry)
                    _LOGGER.log(
                        logging.INFO
                        if self._logged_products.first(failed.product_id)
                        else logging.DEBUG,
                        "BLE: unknown MiBeacon product id %s",
                        entry,
                    )
            if not failed.model:
                return  # a foreign device: not ours to list
        if self._sink is None or not failed.mac or not failed.model:
            return
        self._device(
            device_id(failed.mac),
            failed.model,
            _STATUS[reason],
            failed.sleepy,
            adv,
            now,
            name=failed.name,
            # needs_key / key_invalid: the device encrypts
            encrypted=_STATUS[reason] in (DeviceStatus.NEEDS_KEY, DeviceStatus.KEY_INVALID),
        )

    def _key_works(self, mac: str, now: float) -> bool:
        """The key of ``mac`` decrypted its frames and its device is ok, heard within
        ``unavailable_after_s``: a frame that does not decrypt is no proof of a wrong key.
        (A sensor whose key really changed shows ``key_invalid`` once nothing has decrypted
        for that long, or once it is unavailable.)"""
        if mac not in self._verified:
            return False
        known = self._known.get(device_id(mac))
        return (
            known is not None
            and known.status is DeviceStatus.OK
            and now - known.last_seen <= self._unavailable_after
        )

    def _device(
        self,
        dev: str,
        model: str,
        status: DeviceStatus,
        sleepy: bool,
        adv: Advertisement,
        now: float,
        *,
        name: str = "",
        manufacturer: str = "",
        encrypted: bool = False,
    ) -> None:
        sink = self._sink
        assert sink is not None
        known = self._known.get(dev)
        if known is None or (known.model, known.status, known.sleepy) != (model, status, sleepy):
            sink.device(
                DeviceUpdate(
                    id=dev,
                    transport=BLE_IDS.transport,
                    model=model,
                    name=_display_name(adv, name or model, dev) if known is None else None,
                    manufacturer=manufacturer or None,
                    rssi=adv.rssi,
                    status=status,
                    sleepy=sleepy,
                    # lets the API and CLI tell "key ok" from "no key needed"
                    attrs={"encrypted": "true" if encrypted else "false"},
                )
            )
            if known is None:
                if len(self._known) >= KNOWN_MAX:
                    self._forget_least_recent()
                self._known[dev] = _Known(model, status, sleepy, now, now)
            else:  # changed in place: a _Sender may hold it
                known.model, known.status, known.sleepy = model, status, sleepy
                known.last_seen = known.rssi_sent_at = now
            return
        known.last_seen = now
        if adv.rssi is not None and now - known.rssi_sent_at >= RSSI_INTERVAL:
            known.rssi_sent_at = now
            sink.device(BLE_IDS.update(dev, rssi=adv.rssi))

    def _forget_least_recent(self) -> None:
        """Forget the quarter of the devices heard least recently (see :data:`KNOWN_MAX`)."""
        known = self._known
        gone = heapq.nsmallest(KNOWN_MAX // 4, known, key=lambda dev: known[dev].last_seen)
        for dev in gone:
            del known[dev]
        self._ids.clear()  # a cached address may hold a forgotten device's state
        if not self.counters["devices_forgotten"]:
            _LOGGER.warning(
                "BLE: more than %d devices heard; the %d heard least recently are forgotten "
                "(announced again when they speak; a flood of spoofed addresses?)",
                KNOWN_MAX,
                len(gone),
            )
        self.counters["devices_forgotten"] += len(gone)

    def check_availability(self, now: float) -> list[str]:
        """Mark silent non-sleepy devices unavailable; returns their ids."""
        sink = self._sink
        gone: list[str] = []
        for dev, known in self._known.items():
            if known.sleepy or known.status is not DeviceStatus.OK:
                continue
            if now - known.last_seen > self._unavailable_after:
                known.status = DeviceStatus.UNAVAILABLE
                gone.append(dev)
                if sink is not None:
                    sink.device(BLE_IDS.update(dev, DeviceStatus.UNAVAILABLE))
        return gone

    async def _availability_loop(self) -> None:
        while True:
            await asyncio.sleep(AVAILABILITY_INTERVAL)
            now = self._clock()
            self.check_availability(now)
            self._dedup.expire(now)  # frames whose window passed match nothing


def create(ctx: AdapterContext) -> BleDriver | None:
    """The BLE driver: bleak on ``ble.adapter`` when ``ble.enabled``, or the scanner of
    ``ctx.transports.ble`` (another advert source: a simulator, a test) whatever
    ``ble.enabled`` says."""
    section = ctx.config.ble
    transport = ctx.transports.ble
    if transport is None and not section.enabled:
        return None
    if transport is not None and transport.factory is None:
        return None
    keys, problems = load_keys(section)
    for problem in problems:
        _LOGGER.error("BLE key ignored: %s", problem)
    factory: ScannerFactory
    if transport is None:
        factory = bleak_factory(section.adapter, passive=section.passive)
        info = {"adapter": section.adapter, "passive": str(section.passive).lower()}
    else:
        assert transport.factory is not None
        factory = transport.factory
        keys.update({normalize_mac(mac): parse_key(k) for mac, k in transport.keys.items()})
        info = dict(transport.info)
    if problems:
        info["key_errors"] = str(len(problems))
    return BleDriver(
        factory,
        keys,
        dedup_window_s=section.dedup_window_s,
        unavailable_after_s=max(section.unavailable_after_s, transport.quiet_s if transport else 0),
        info=info,
    )
