"""From a device's ZCL frame to metrics and events (pure; state kept per device).

The interpreter knows the standard clusters (:mod:`clusters`), the Xiaomi/Aqara models
(:mod:`xiaomi`) and the model-specific meanings (contact on On/Off, clicks on Multistate,
water leak on IAS Zone ...). It drops out-of-range junk (counted), and drops a frame it has
just seen from the same device (same cluster, ZCL sequence number and bytes): Z-Stack hands
one broadcast to every registered endpoint.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from drivers.errors import ParseError
from drivers.zigbee.zcl import clusters as cl
from drivers.zigbee.zcl import frame as zf
from drivers.zigbee.zcl import types as zt
from drivers.zigbee.zcl import xiaomi

#: Frames remembered per device for de-duplication.
DEDUP_DEPTH = 8

MULTISTATE_ACTIONS = {0: "long", 1: "single", 2: "double", 3: "triple", 255: "release"}
#: WXKG11LM attribute 0x8000 (click count), as zigbee2mqtt and zha read it.
CLICK_COUNT_ACTIONS = {1: "single", 2: "double", 3: "triple", 4: "quadruple"}
#: QBKG04LM button reports on endpoint 4 (On/Off attribute): 0 hold, 1 release, 2 double.
NEUTRAL1_BUTTON = {0: "hold", 1: "single", 2: "double"}
SWITCH_MODELS = frozenset({"lumi.sensor_switch.aq2"})
#: Door sensors whose On/Off attribute is the contact (1 = open).
MAGNET_MODELS = frozenset({"lumi.sensor_magnet.aq2", "lumi.magnet.agl02"})
#: Pressure Scale (0x0403/0x0014): int8, and no real sensor is beyond 10^+-10.
PRESSURE_SCALE_TYPE = 0x28
PRESSURE_SCALE_MAX = 10


@dataclass(frozen=True, slots=True)
class Interpretation:
    frame: zf.ZclFrame | None = None
    readings: tuple[tuple[str, object], ...] = ()
    #: (action, button)
    events: tuple[tuple[str, int | None], ...] = ()
    model: str | None = None
    manufacturer: str | None = None
    #: A motion report: (re)start the motion-clear timer.
    motion: bool = False
    duplicate: bool = False
    junk: int = 0
    #: The sender asked for a Default Response.
    default_response: bool = False
    error: str | None = None


@dataclass(slots=True)
class _DeviceState:
    recent: deque[tuple[int, int, bytes]] = field(default_factory=lambda: deque(maxlen=DEDUP_DEPTH))
    pressure_scale: int | None = None
    multipliers: dict[tuple[int, int], int] = field(default_factory=dict)
    held: bool = False


class Interpreter:
    def __init__(self) -> None:
        self._devices: dict[str, _DeviceState] = {}
        self.junk_dropped = 0
        self.duplicates_dropped = 0
        self.zcl_errors = 0

    def forget(self, src: str) -> None:
        self._devices.pop(src, None)

    def interpret(
        self, src: str, model: str | None, cluster: int, endpoint: int, data: bytes
    ) -> Interpretation:
        """``src`` identifies the device (IEEE); ``model`` is what we know of it so far."""
        st = self._devices.get(src)
        if st is None:
            st = self._devices[src] = _DeviceState()
        try:
            frame = zf.decode(cluster, data)
        except ParseError as exc:
            self.zcl_errors += 1
            return Interpretation(error=str(exc))
        key = (cluster, frame.header.tsn, bytes(data))
        if key in st.recent:
            self.duplicates_dropped += 1
            return Interpretation(frame=frame, duplicate=True)
        st.recent.append(key)
        try:
            return self._meaning(st, frame, model, endpoint)
        except (ArithmeticError, ValueError) as exc:  # hostile numbers: an error, not a crash
            self.zcl_errors += 1
            return Interpretation(
                frame=frame,
                error=f"cannot interpret the ZCL frame: {type(exc).__name__}: {exc}",
            )

    # --- meaning ------------------------------------------------------------------------

    def _meaning(
        self, st: _DeviceState, frame: zf.ZclFrame, model: str | None, endpoint: int
    ) -> Interpretation:
        p = frame.payload
        attrs: list[zf.Attribute] = []
        if isinstance(p, zf.ReportAttributes):
            attrs = list(p.attributes)
        elif isinstance(p, zf.ReadAttributesResponse):
            attrs = [r.attribute for r in p.records if r.attribute is not None]
        readings: list[tuple[str, object]] = []
        events: list[tuple[str, int | None]] = []
        new_model: str | None = None
        manufacturer: str | None = None
        motion = False
        cluster = frame.cluster

        # Basic: the model string may precede the heartbeat in the same frame
        for a in attrs:
            if cluster == cl.BASIC and a.attr_id == 0x0005 and isinstance(a.value, str):
                new_model = a.value.rstrip("\x00").strip() or None
            elif cluster == cl.BASIC and a.attr_id == 0x0004 and isinstance(a.value, str):
                manufacturer = a.value.rstrip("\x00").strip() or None
        model = new_model or model
        spec = xiaomi.spec_for(model)
        canon = spec.model if spec is not None else model

        bad_attrs = 0
        if cluster == cl.PRESSURE:
            for a in attrs:
                if a.attr_id != 0x0014:
                    continue
                # the spec's Scale is an int8 (10^scale): anything else is junk (and
                # 10.0 ** 400 would overflow), never kept for the device
                if (
                    a.type_id == PRESSURE_SCALE_TYPE
                    and isinstance(a.value, int)
                    and not isinstance(a.value, bool)
                    and -PRESSURE_SCALE_MAX <= a.value <= PRESSURE_SCALE_MAX
                ):
                    st.pressure_scale = a.value
                else:
                    bad_attrs += 1
        if cluster in (cl.ELECTRICAL_MEASUREMENT, cl.METERING):
            for a in attrs:
                if isinstance(a.value, int) and (
                    0x0600 <= a.attr_id <= 0x0605 or a.attr_id in (0x0301, 0x0302)
                ):
                    st.multipliers[(cluster, a.attr_id)] = a.value

        for a in attrs:
            readings_a, events_a, motion_a = self._attribute(st, cluster, endpoint, a, canon)
            readings += readings_a
            events += events_a
            motion = motion or motion_a

        if isinstance(p, zf.ZoneStatusChangeNotification):
            readings += self._zone_status(p.zone_status, canon)

        kept = [(m, v) for m, v in readings if cl.plausible(m, v)]
        junk = len(readings) - len(kept) + bad_attrs
        # one value per metric and frame (pressure comes as measured and scaled value)
        kept = list({m: (m, v) for m, v in kept}.values())
        self.junk_dropped += junk
        return Interpretation(
            frame=frame,
            readings=tuple(kept),
            events=tuple(events),
            model=new_model,
            manufacturer=manufacturer,
            motion=motion,
            junk=junk,
            default_response=zf.needs_default_response(frame),
        )

    def _attribute(
        self, st: _DeviceState, cluster: int, endpoint: int, a: zf.Attribute, model: str | None
    ) -> tuple[list[tuple[str, object]], list[tuple[str, int | None]], bool]:
        v = a.value
        t = a.type_id
        key = (cluster, a.attr_id)
        if key in zf.LENIENT_STRING_ATTRS and isinstance(v, bytes):
            return xiaomi.tlv_metrics(model, xiaomi.parse_tlv(v)), [], False
        if key == (cl.BASIC, 0xFF02):
            return xiaomi.mija_metrics(model, v), [], False
        if cluster == cl.ON_OFF and a.attr_id == 0x0000:
            return self._on_off(st, endpoint, t, v, model)
        if cluster == cl.ON_OFF and a.attr_id == 0x8000 and model in SWITCH_MODELS:
            action = CLICK_COUNT_ACTIONS.get(v) if isinstance(v, int) else None
            return [], ([(action, 1)] if action else []), False
        if cluster == cl.MULTISTATE_INPUT and a.attr_id == 0x0055:
            action = MULTISTATE_ACTIONS.get(v) if isinstance(v, int) else None
            return [], ([(action, 1)] if action else []), False
        if cluster == cl.ANALOG_INPUT and a.attr_id == 0x0055:
            if model == "lumi.plug":
                return cl.scaled("power", 1.0, 2)(t, v), [], False
            return [], [], False
        if cluster == cl.OCCUPANCY and a.attr_id == 0x0000 and model == "lumi.sensor_motion.aq2":
            occupied = isinstance(v, int) and bool(v & 1)
            return ([("motion", True)] if occupied else []), [], occupied
        if cluster == cl.ILLUMINANCE and a.attr_id == 0x0000 and model == "lumi.sensor_motion.aq2":
            return cl.scaled("illuminance", 1.0, 1)(t, v), [], False  # plain lux on RTCGQ11LM
        if cluster == cl.PRESSURE and a.attr_id == 0x0010:
            scale = st.pressure_scale if st.pressure_scale is not None else -1
            return cl.scaled("pressure", 10.0**scale, 2)(t, v), [], False
        if cluster == cl.IAS_ZONE and a.attr_id == 0x0002 and isinstance(v, int):
            return self._zone_status(v, model), [], False
        if cluster == cl.ELECTRICAL_MEASUREMENT:
            return self._electrical(st, a), [], False
        if cluster == cl.METERING:
            return self._metering(st, a), [], False
        conv = cl.ATTRIBUTES.get(key)
        return (conv(t, v) if conv is not None else []), [], False

    def _on_off(
        self, st: _DeviceState, endpoint: int, t: int, v: zt.ZclValue, model: str | None
    ) -> tuple[list[tuple[str, object]], list[tuple[str, int | None]], bool]:
        if isinstance(v, bool):
            n: int | None = int(v)
        elif isinstance(v, int) and not zt.is_non_value(t, v):
            n = v  # non-compliant devices send other types (int8 seen): take the number
        else:
            n = None
        if n is None:
            return [], [], False
        if model in MAGNET_MODELS:
            return [("opening", bool(n))], [], False
        if model in SWITCH_MODELS:
            # WXKG11LM: On/Off 1 is a click; 0 is not (zigbee2mqtt and zha agree)
            return [], ([("single", 1)] if n == 1 else []), False
        if model == "lumi.ctrl_neutral1":
            if endpoint == 4:
                action = NEUTRAL1_BUTTON.get(n)
                if action == "hold":
                    st.held = True
                elif action == "single" and st.held:
                    st.held = False
                    action = "release"
                return [], ([(action, 1)] if action else []), False
            if endpoint != 2:
                return [], [], False
        return [("switch", bool(n))], [], False

    @staticmethod
    def _zone_status(zone_status: int, model: str | None) -> list[tuple[str, object]]:
        alarm = bool(zone_status & 0x0001)
        name = "water_leak" if model == "lumi.sensor_wleak.aq1" else "alarm"
        return [
            (name, alarm),
            ("tamper", bool(zone_status & 0x0004)),
            ("battery_low", bool(zone_status & 0x0008)),
        ]

    @staticmethod
    def _electrical(st: _DeviceState, a: zf.Attribute) -> list[tuple[str, object]]:
        base = {
            0x0505: ("voltage", 0x0600, 0x0601, 1),
            0x0508: ("current", 0x0602, 0x0603, 1000),
            0x050B: ("power", 0x0604, 0x0605, 1),
        }.get(a.attr_id)
        if base is None:
            return []
        metric, mul_id, div_id, default_div = base
        mul = st.multipliers.get((cl.ELECTRICAL_MEASUREMENT, mul_id), 1)
        div = st.multipliers.get((cl.ELECTRICAL_MEASUREMENT, div_id), default_div) or 1
        return cl.scaled(metric, mul / div, 3)(a.type_id, a.value)

    @staticmethod
    def _metering(st: _DeviceState, a: zf.Attribute) -> list[tuple[str, object]]:
        mul = st.multipliers.get((cl.METERING, 0x0301), 1)
        div = st.multipliers.get((cl.METERING, 0x0302), 1) or 1
        if a.attr_id == 0x0000:
            return cl.scaled("energy", mul / div, 3)(a.type_id, a.value)
        if a.attr_id == 0x0400:  # kW
            return cl.scaled("power", mul / div * 1000, 1)(a.type_id, a.value)
        return []
