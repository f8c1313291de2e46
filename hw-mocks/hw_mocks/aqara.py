"""Scripted Xiaomi/Aqara Zigbee devices for the Z-Stack simulator (hw_mocks.znp).

Each model produces the ZCL frames the real device sends, quirks included: the 0xFF01
heartbeat with a length byte one too large (lumi.sensor_ht, lumi.sensor_wleak.aq1), typed
0x41 without a manufacturer code (lumi.weather), a stray trailing 0x00 (lumi.plug), junk
-100 °C readings (lumi.weather), a broadcast illuminance report (lumi.sensor_motion.aq2).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from drivers.zigbee.zcl import frame as zf

LUMI = zf.MANUFACTURER_LUMI

#: (cluster, source endpoint, ZCL bytes, broadcast)
Report = tuple[int, int, bytes, bool]

MODELS = (
    "lumi.sensor_ht",
    "lumi.weather",
    "lumi.sensor_motion.aq2",
    "lumi.sensor_magnet.aq2",
    "lumi.sensor_switch.aq2",
    "lumi.sensor_wleak.aq1",
    "lumi.plug",
    "lumi.ctrl_neutral1",
)
MAINS = frozenset({"lumi.plug", "lumi.ctrl_neutral1"})
#: One reporting cycle in this many sends the 0xFF01 heartbeat (with the values) instead
#: of the cluster reports.
HEARTBEAT_EVERY = 4
#: Endpoint that obeys On/Off commands.
SWITCH_ENDPOINT = {"lumi.plug": 1, "lumi.ctrl_neutral1": 2}


def _tlv(entries: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(bytes((tag, typ)) + value for tag, typ, value in entries)


@dataclass(slots=True)
class SimDevice:
    model: str
    ieee: str
    nwk: int | None = None
    lqi: int = 140
    #: Sleepy end devices only answer during a short window after they sent something.
    awake_until: float = 0.0
    reachable: bool = True
    #: Joins without its Basic model report: only the host's read identifies it.
    silent_join: bool = False
    on: bool = False
    contact_open: bool = False
    leak: bool = False
    counter: int = 0
    #: The air around the sensor: it drifts a little per reporting cycle (random walk), as
    #: real air does, instead of jumping between random values.
    temp_c: float | None = None
    humidity: float = 50.0
    pressure_hpa: float = 1013.0
    tsn: int = field(default_factory=lambda: random.randrange(256))
    rng: random.Random = field(default_factory=random.Random)
    #: ZCL frames the device received (for assertions in tests).
    received: list[tuple[int, int, bytes]] = field(default_factory=list)

    @property
    def sleepy(self) -> bool:
        return self.model not in MAINS

    @property
    def capabilities(self) -> int:
        # Aqara end devices announce "mains powered" too (zigbee2mqtt#3111): keep the quirk
        return 0x8E if self.model in MAINS else 0x84

    def next_tsn(self) -> int:
        self.tsn = (self.tsn + 1) & 0xFF
        return self.tsn

    # --- frame builders -----------------------------------------------------------------

    def _report(
        self,
        attrs: list[zf.Attribute],
        *,
        manufacturer: int | None = None,
        trailing: bytes = b"",
        ddr: bool = True,
    ) -> bytes:
        header = zf.ZclHeader(0, 1, ddr, self.next_tsn(), 0x0A, manufacturer)
        return zf.encode(zf.ZclFrame(0, header, zf.ReportAttributes(tuple(attrs), trailing)))

    def _heartbeat(
        self,
        extra: list[tuple[int, int, bytes]],
        *,
        octet: bool = False,
        wrong_len: bool = False,
        trailing: bytes = b"",
    ) -> bytes:
        mv = 2900 + self.rng.randrange(200)
        entries = [
            (0x01, 0x21, struct.pack("<H", mv)),
            (0x03, 0x28, struct.pack("<b", 20 + self.rng.randrange(10))),
            (0x04, 0x21, struct.pack("<H", 0x13A8)),
            (0x05, 0x21, struct.pack("<H", 7 + self.counter)),
            (0x06, 0x24, (self.counter).to_bytes(5, "little")),
            (0x0A, 0x21, b"\x00\x00"),
            *extra,
        ]
        raw = _tlv(entries)
        attr = zf.Attribute(
            0xFF01, 0x41 if octet else 0x42, raw, len(raw) + 1 if wrong_len else None
        )
        return self._report([attr], manufacturer=None if octet else LUMI, trailing=trailing)

    def model_report(self) -> Report:
        """The Basic model report Xiaomi devices send right after joining."""
        attrs = [zf.Attribute(0x0005, 0x42, self.model)]
        if self.model == "lumi.sensor_wleak.aq1":  # model + heartbeat in one frame (vector)
            raw = _tlv(
                [
                    (0x01, 0x21, struct.pack("<H", 3050)),
                    (0x03, 0x28, b"\x17"),
                    (0x64, 0x10, b"\x00"),
                ]
            )
            attrs.append(zf.Attribute(0xFF01, 0x42, raw, len(raw) + 1))
        return (0x0000, 1, self._report(attrs, manufacturer=LUMI), False)

    def read_response(self, tsn: int, attr_ids: tuple[int, ...]) -> bytes:
        values = {0x0004: "LUMI", 0x0005: self.model}
        records = tuple(
            zf.ReadRecord(a, 0, zf.Attribute(a, 0x42, values[a]))
            if a in values
            else zf.ReadRecord(a, zf.ZclStatus.UNSUPPORTED_ATTRIBUTE)
            for a in attr_ids
        )
        header = zf.ZclHeader(0, 1, True, tsn, 0x01)
        return zf.encode(zf.ZclFrame(0, header, zf.ReadAttributesResponse(records)))

    def on_off_report(self) -> Report:
        ep = SWITCH_ENDPOINT.get(self.model, 1)
        return (0x0006, ep, self._report([zf.Attribute(0x0000, 0x10, self.on)]), False)

    # --- behaviour ----------------------------------------------------------------------

    def _drift(self) -> None:
        """One step of the air: tenths of a degree, half a percent, a fraction of a hPa."""
        r = self.rng
        if self.temp_c is None:  # a room somewhere between 19 and 24 °C
            self.temp_c = 19.0 + r.random() * 5
            self.humidity = 40.0 + r.random() * 20
            self.pressure_hpa = 1005.0 + r.random() * 15
        self.temp_c = min(max(self.temp_c + r.uniform(-0.15, 0.15), 15.0), 30.0)
        self.humidity = min(max(self.humidity + r.uniform(-0.6, 0.6), 25.0), 80.0)
        self.pressure_hpa = min(max(self.pressure_hpa + r.uniform(-0.2, 0.2), 980.0), 1040.0)

    def reports(self) -> list[Report]:
        """One reporting cycle: what the device sends now."""
        self.counter += 1
        n = self.counter
        r = self.rng
        m = self.model
        out: list[Report] = []
        if m in ("lumi.sensor_ht", "lumi.weather"):
            self._drift()
            assert self.temp_c is not None
            temp = round(self.temp_c * 100)
            hum = round(self.humidity * 100)
            hpa10 = round(self.pressure_hpa * 10)
            extra = [
                (0x64, 0x29, struct.pack("<h", temp)),
                (0x65, 0x21, struct.pack("<H", hum)),
            ]
            if n % HEARTBEAT_EVERY == 0:
                # the heartbeat carries the values instead of the cluster reports (a real
                # sensor sends it about hourly): never the same reading twice, 1 ms apart
                if m == "lumi.weather":
                    extra.append((0x66, 0x2B, struct.pack("<i", hpa10 * 10)))
                    out.append((0x0000, 1, self._heartbeat(extra, octet=True), False))
                else:
                    out.append((0x0000, 1, self._heartbeat(extra, wrong_len=True), False))
                return out
            if m == "lumi.weather" and n % 7 == 0:
                temp = -10000  # the junk lumi.weather really sends (zha-device-handlers#3844)
            out.append((0x0402, 1, self._report([zf.Attribute(0, 0x29, temp)]), False))
            out.append((0x0405, 1, self._report([zf.Attribute(0, 0x21, hum)]), False))
            if m == "lumi.weather":
                out.append(
                    (
                        0x0403,
                        1,
                        self._report(
                            [
                                zf.Attribute(0x0000, 0x29, round(self.pressure_hpa)),
                                zf.Attribute(0x0014, 0x28, -1),
                                zf.Attribute(0x0010, 0x29, hpa10),
                            ]
                        ),
                        False,
                    )
                )
        elif m == "lumi.sensor_motion.aq2":
            lux = 5 + r.randrange(300)
            out.append((0x0406, 1, self._report([zf.Attribute(0, 0x18, 1)]), False))
            out.append((0x0400, 1, self._report([zf.Attribute(0, 0x21, lux)]), n % 2 == 0))
            if n % 3 == 0:
                out.append(
                    (
                        0x0000,
                        1,
                        self._heartbeat(
                            [(0x64, 0x10, b"\x00"), (0x0B, 0x21, struct.pack("<H", lux))]
                        ),
                        False,
                    )
                )
        elif m == "lumi.sensor_magnet.aq2":
            self.contact_open = not self.contact_open
            out.append((0x0006, 1, self._report([zf.Attribute(0, 0x10, self.contact_open)]), False))
            if n % 3 == 0:
                out.append(
                    (
                        0x0000,
                        1,
                        self._heartbeat([(0x64, 0x10, bytes((int(self.contact_open),)))]),
                        False,
                    )
                )
        elif m == "lumi.sensor_switch.aq2":
            kind = n % 4
            if kind == 1:
                out.append((0x0006, 1, self._report([zf.Attribute(0, 0x10, True)]), False))
            elif kind == 2:
                out.append((0x0006, 1, self._report([zf.Attribute(0x8000, 0x20, 2)]), False))
            elif kind == 3:
                out.append((0x0012, 1, self._report([zf.Attribute(0x0055, 0x21, 3)]), False))
            else:
                out.append((0x0012, 1, self._report([zf.Attribute(0x0055, 0x21, 0)]), False))
                out.append((0x0012, 1, self._report([zf.Attribute(0x0055, 0x21, 255)]), False))
        elif m == "lumi.sensor_wleak.aq1":
            self.leak = not self.leak
            header = zf.ZclHeader(1, 1, False, self.next_tsn(), 0x00)  # wants a default rsp
            note = zf.ZoneStatusChangeNotification(int(self.leak), 0, 0, 0)
            out.append((0x0500, 1, zf.encode(zf.ZclFrame(0x0500, header, note)), False))
            if n % 3 == 0:
                out.append(
                    (
                        0x0000,
                        1,
                        self._heartbeat([(0x64, 0x10, bytes((int(self.leak),)))], wrong_len=True),
                        False,
                    )
                )
        elif m == "lumi.plug":
            watts = 40.0 + r.randrange(600) / 10 if self.on else 0.0
            out.append((0x000C, 2, self._report([zf.Attribute(0x0055, 0x39, watts)]), False))
            if n % 2 == 0:
                extra = [
                    (0x64, 0x10, bytes((int(self.on),))),
                    (0x95, 0x39, struct.pack("<f", 1.5 + n / 100)),
                    (0x96, 0x39, struct.pack("<f", 2305.0)),
                    (0x97, 0x39, struct.pack("<f", watts / 230 * 1000)),
                    (0x98, 0x39, struct.pack("<f", watts)),
                ]
                out.append((0x0000, 1, self._heartbeat(extra, trailing=b"\x00"), False))
        elif m == "lumi.ctrl_neutral1":
            if n % 2:
                out.append((0x0006, 4, self._report([zf.Attribute(0, 0x10, True)]), False))
            else:
                out.append(self.on_off_report())
                out.append(
                    (0x0000, 1, self._heartbeat([(0x64, 0x10, bytes((int(self.on),)))]), False)
                )
        return out

    def handle(self, cluster: int, endpoint: int, data: bytes) -> list[Report]:
        """A ZCL frame from the coordinator; returns what the device answers."""
        self.received.append((cluster, endpoint, data))
        try:
            frame = zf.decode(cluster, data)
        except Exception:  # noqa: BLE001 - a real device ignores what it cannot parse
            return []
        h = frame.header
        if cluster == 0x0000 and isinstance(frame.payload, zf.ReadAttributes):
            return [(0x0000, 1, self.read_response(h.tsn, frame.payload.attr_ids), False)]
        if (
            cluster == 0x0006
            and h.frame_type == zf.FrameType.CLUSTER
            and endpoint == SWITCH_ENDPOINT.get(self.model)
            and h.command_id in (0, 1, 2)
        ):
            self.on = {0: False, 1: True, 2: not self.on}[h.command_id]
            return [self.on_off_report()]
        return []
