"""Home Assistant discovery, per-device state, and commands from MQTT to a GPIO relay
(gpiozero MockFactory through the real GPIO adapter), against a real Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.ble import events as ble_events
from gateway import config as config_mod
from gateway.adapters.gpio import GpioDriver
from gateway.config import GpioDevice, GpioKind, HomeAssistantSection
from gateway.errors import ConfigError
from gateway.model import Device, DeviceStatus, Event, Stamp, Transport
from gateway.service import Service
from gateway.sync import ha
from gateway.sync.payload import Topics
from tests.broker import Collector, Mosquitto, gateway_config, start_broker

RELAY = GpioDevice(name="relay", kind=GpioKind.RELAY, pin=23)
BUTTON = GpioDevice(name="button", kind=GpioKind.BUTTON, pin=17, pull_up=True, active_high=False)
SWITCH_CONFIG = "homeassistant/switch/migw_testgw/gpio-relay_switch/config"
AVAILABILITY = [
    {
        "topic": "migw/testgw/status",
        "payload_available": "online",
        "payload_not_available": "offline",
    },
    {
        "topic": "migw/testgw/availability/gpio-relay",
        "payload_available": "online",
        "payload_not_available": "offline",
    },
]


def _json(payload: bytes) -> Any:
    return json.loads(payload)


async def _command(
    port: int, device: str, body: bytes, response_topic: str | None = None, corr: bytes = b""
) -> None:
    props = None
    if response_topic is not None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: unannotated
        props.ResponseTopic = response_topic
        props.CorrelationData = corr
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, identifier="tester"
    ) as client:
        await client.publish(f"migw/testgw/cmd/{device}/set", body, qos=1, properties=props)


async def test_discovery_state_and_relay_commands(
    tmp_path: Path, mosquitto: Mosquitto, mock_pins: Any
) -> None:
    gpio = GpioDriver((RELAY, BUTTON), pin_factory=mock_pins)
    cfg = gateway_config(tmp_path / "state", mosquitto.url, ha=True)
    topics = ["homeassistant/#", "migw/testgw/#", "resp/#"]
    async with (
        Collector(mosquitto.port, topics) as col,
        Service(cfg, drivers=[gpio]) as svc,
    ):
        await col.wait_for(lambda: col.on(SWITCH_CONFIG))
        config = _json(col.on(SWITCH_CONFIG)[-1].payload)
        assert config == {
            "name": "Switch",
            "unique_id": "migw_testgw_gpio-relay_switch",
            "state_topic": "migw/testgw/state/gpio-relay",
            "device": {
                "identifiers": ["migw_testgw_gpio-relay"],
                "name": "relay",
                "via_device": "migw_testgw",
                "model": "Relay on a GPIO pin",
                "manufacturer": "GPIO",
            },
            "availability": AVAILABILITY,
            "availability_mode": "all",
            "command_topic": "migw/testgw/cmd/gpio-relay/set",
            "qos": 1,
            "payload_on": '{"switch":true}',
            "payload_off": '{"switch":false}',
            "state_on": "ON",
            "state_off": "OFF",
            "value_template": "{{ 'ON' if value_json[\"switch\"] else 'OFF' }}",
        }
        gw = "homeassistant/binary_sensor/migw_testgw/status/config"
        await col.wait_for(lambda: col.on(gw))
        assert _json(col.on(gw)[-1].payload)["device"]["identifiers"] == ["migw_testgw"]
        button_cfg = "homeassistant/event/migw_testgw/gpio-button_button/config"
        await col.wait_for(lambda: col.on(button_cfg))
        button = _json(col.on(button_cfg)[-1].payload)
        # what the GPIO click detector sends, on the entity's own topic
        assert button["event_types"] == ["single", "double", "triple", "long", "release"]
        assert button["state_topic"] == "migw/testgw/event/gpio-button/button"
        assert button["device_class"] == "button"
        # a press goes to the button's own event topic, after its entity was announced
        button_pin = mock_pins.pin(17)
        button_pin.drive_low()
        await asyncio.sleep(0.05)
        button_pin.drive_high()
        event_topic = "migw/testgw/event/gpio-button/button"
        await col.wait_for(lambda: col.on(event_topic), timeout=10)
        assert _json(col.on(event_topic)[0].payload) == {"event_type": "single"}
        order = [m.topic for m in col.messages]
        assert order.index(button_cfg) < order.index(event_topic)
        await col.wait_for(lambda: col.on("migw/testgw/availability/gpio-relay"))
        assert col.on("migw/testgw/availability/gpio-relay")[-1].payload == b"online"

        # a command with an MQTT 5 response topic and correlation data
        pin = mock_pins.pin(23)
        assert pin.state is False or pin.state == 0
        await _command(mosquitto.port, "gpio-relay", b'{"switch": true}', "resp/a", b"c-1")
        await col.wait_for(lambda: col.on("resp/a"))
        resp = col.on("resp/a")[-1]
        assert resp.correlation == b"c-1"
        assert _json(resp.payload) == {
            "device": "gpio-relay",
            "status": "ok",
            "ok": True,
            "state": {"switch": True},
        }
        assert pin.state
        # the relay's new state reaches its retained state topic
        state_topic = "migw/testgw/state/gpio-relay"
        await col.wait_for(
            lambda: any(_json(m.payload) == {"switch": True} for m in col.on(state_topic))
        )

        # no response topic: the documented default, with the request id echoed
        await _command(mosquitto.port, "gpio-relay", b'{"command": "toggle", "id": "r2"}')
        result = "migw/testgw/result/gpio-relay"
        await col.wait_for(lambda: col.on(result))
        assert _json(col.on(result)[-1].payload) == {
            "device": "gpio-relay",
            "status": "ok",
            "ok": True,
            "state": {"switch": False},
            "id": "r2",
        }
        assert not pin.state

        # malformed commands get an error response, never an exception in the agent
        await _command(mosquitto.port, "gpio-relay", b"{not json", "resp/b", b"c-2")
        await _command(mosquitto.port, "gpio-relay", b'{"switch": "yes"}', "resp/c", b"c-3")
        await _command(mosquitto.port, "gpio-nothing", b'{"switch": true}', "resp/d", b"c-4")
        await _command(mosquitto.port, "gpio-button", b'{"switch": true}', "resp/e", b"c-5")
        await col.wait_for(lambda: all(col.on(f"resp/{x}") for x in "bcde"))
        assert _json(col.on("resp/b")[0].payload) == {
            "device": "gpio-relay",
            "status": "invalid",
            "ok": False,
            "detail": "command is not valid JSON",
            "state": {},
        }
        assert _json(col.on("resp/c")[0].payload)["status"] == "invalid"
        assert _json(col.on("resp/d")[0].payload)["status"] == "unknown_device"
        assert _json(col.on("resp/e")[0].payload)["status"] == "unsupported"
        assert not pin.state

        # Home Assistant restarts: discovery is published again
        before = len(col.on(SWITCH_CONFIG))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="ha") as ha:
            await ha.publish("homeassistant/status", b"online", qos=1)
        await col.wait_for(lambda: len(col.on(SWITCH_CONFIG)) > before)
        # discovery, state and status are retained: a late subscriber gets them at once
        async with Collector(mosquitto.port, [SWITCH_CONFIG, state_topic], "late") as late:
            await late.wait_for(lambda: late.on(SWITCH_CONFIG) and late.on(state_topic))
            assert late.on(SWITCH_CONFIG)[0].retain
            assert _json(late.on(state_topic)[0].payload) == {"switch": False}
        agent = svc.sync
        assert agent is not None
        assert agent.stats()["commands"] == 6


async def test_discovery_on_a_separate_home_assistant_broker(
    tmp_path: Path, mosquitto: Mosquitto, mock_pins: Any
) -> None:
    lan = start_broker(tmp_path / "lan")
    try:
        gpio = GpioDriver((RELAY,), pin_factory=mock_pins)
        cfg = gateway_config(tmp_path / "state", mosquitto.url)
        cfg = cfg.replace(homeassistant=HomeAssistantSection(enabled=True, url=lan.url))
        async with (
            Collector(lan.port, ["homeassistant/#", "migw/#", "resp/#"], "lan") as lan_col,
            Collector(mosquitto.port, ["homeassistant/#", "migw/testgw/telemetry"]) as up_col,
            Service(cfg, drivers=[gpio]) as svc,
        ):
            await lan_col.wait_for(lambda: lan_col.on(SWITCH_CONFIG))
            await up_col.wait_for(lambda: up_col.seqs("migw/testgw/telemetry"))
            assert not up_col.on(SWITCH_CONFIG)
            assert lan_col.on("migw/testgw/status")[-1].payload == b"online"
            await _command(lan.port, "gpio-relay", b'{"switch": true}', "resp/x", b"1")
            await lan_col.wait_for(lambda: lan_col.on("resp/x"))
            assert _json(lan_col.on("resp/x")[0].payload)["status"] == "ok"
            assert mock_pins.pin(23).state
            assert svc.health()["status"] == "ok"
    finally:
        lan.stop()


# --------------------------------------------------------------------- pure discovery

T = Topics("migw", "gw1")
STAMP = Stamp(1.0, 1.0, "boot", True)


def _dev(model: str, transport: Transport = Transport.BLE, manufacturer: str = "") -> Device:
    return Device(
        id="a4:c1:38:00:00:09",
        transport=transport,
        model=model,
        name="Hall",
        manufacturer=manufacturer,
        status=DeviceStatus.OK,
    )


def test_a_double_switch_has_one_event_entity_per_button() -> None:
    dev = _dev("K9B-2BTN", manufacturer="Xiaomi")
    catalog = ha.EventCatalog()
    entities = catalog.device(T, dev)
    assert [e.topic for e in entities] == [
        "homeassistant/event/migw_gw1/a4_c1_38_00_00_09_button_1/config",
        "homeassistant/event/migw_gw1/a4_c1_38_00_00_09_button_2/config",
    ]
    assert entities[1].config == {
        "name": "Button 2",
        "unique_id": "migw_gw1_a4_c1_38_00_00_09_button_2",
        "state_topic": "migw/gw1/event/a4:c1:38:00:00:09/button/2",
        "event_types": ["single", "double", "long"],
        "device": {
            "identifiers": ["migw_gw1_a4_c1_38_00_00_09"],
            "name": "Hall",
            "via_device": "migw_gw1",
            "model": "K9B-2BTN",
            "manufacturer": "Xiaomi",
        },
        "availability": [
            {
                "topic": "migw/gw1/status",
                "payload_available": "online",
                "payload_not_available": "offline",
            },
            {
                "topic": "migw/gw1/availability/a4:c1:38:00:00:09",
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ],
        "availability_mode": "all",
        "device_class": "button",
    }
    assert catalog.device(T, dev) == []  # announced once
    # its events need no further discovery, and go to their button's topic
    assert catalog.event(T, dev, "button", "long", 2) == []
    ev = Event("a4:c1:38:00:00:09", "button", "long", STAMP, "ble", button=2)
    assert ha.event_message(T, ev) == (
        "migw/gw1/event/a4:c1:38:00:00:09/button/2",
        b'{"event_type":"long","button":2}',
    )


def test_dimmer_and_cube_have_their_own_entities_and_the_steps() -> None:
    dimmer = ha.EventCatalog().device(T, _dev("YLKG07YL/YLKG08YL"))
    # the actions themselves are checked against the decoder in test_event_tables.py
    assert [(e.config["name"], e.config["event_types"]) for e in dimmer] == [
        ("Dimmer", list(ble_events.DIMMER_ACTIONS))
    ]
    assert {"rotate_left", "rotate_right_pressed"} <= set(ble_events.DIMMER_ACTIONS)
    assert "device_class" not in dimmer[0].config  # HA's event classes: button, doorbell, motion
    cube = ha.EventCatalog().device(T, _dev("XMMF01JQD"))
    assert [(e.config["name"], e.config["event_types"]) for e in cube] == [
        ("Cube", ["rotate_left", "rotate_right"])
    ]
    ev = Event("d", "dimmer", "rotate_left", STAMP, "ble", properties=(("steps", 3),))
    assert ha.event_message(T, ev) == (
        "migw/gw1/event/d/dimmer",
        b'{"event_type":"rotate_left","steps":3}',
    )


def test_events_of_models_the_tables_do_not_list() -> None:
    """A BTHome device announces each button with its first event; an action no table
    declares re-announces the entity with it, before the event goes out."""
    catalog = ha.EventCatalog()
    dev = _dev("BTHome")
    assert catalog.device(T, dev) == []
    first = catalog.event(T, dev, "button", "single", 2)
    assert [e.config["event_types"] for e in first] == [
        ["single", "double", "triple", "long", "long_double", "long_triple", "hold"]
    ]
    assert first[0].config["state_topic"] == "migw/gw1/event/a4:c1:38:00:00:09/button/2"
    assert catalog.event(T, dev, "button", "hold", 2) == []
    odd = catalog.event(T, dev, "button", "quintuple", 2)
    assert odd[0].config["event_types"][-1] == "quintuple"
    assert catalog.event(T, dev, "button", "quintuple", 2) == []
    # a MiBeacon model without a table entry: what the event kind can carry
    lock = catalog.event(T, _dev("XYZ-LOCK"), "lock", "locked", None)
    assert "unlock_outside_the_door" in lock[0].config["event_types"]
    # an event kind nobody declares: only what was seen
    other = catalog.event(T, _dev("XYZ"), "toothbrush", "start", None)
    assert other[0].config["event_types"] == ["start"]
    # Zigbee: the Multistate actions; GPIO: the click detector's
    zb = _dev("lumi.remote.b1acn01", Transport.ZIGBEE)
    assert catalog.event(T, zb, "button", "single", 1)[0].config["event_types"] == [
        "long",
        "single",
        "double",
        "triple",
        "release",
    ]
    gpio = ha.EventCatalog().device(T, _dev("gpio-button", Transport.GPIO))
    assert gpio[0].config["event_types"] == ["single", "double", "triple", "long", "release"]


def test_device_classes_newer_than_min_version_are_left_out() -> None:
    dev = _dev("HHCCJCY01")
    old = ha.metric_entity(T, dev, "conductivity", commandable=False)
    assert "device_class" not in old.config
    assert old.config["unit_of_measurement"] == "µS/cm"
    assert old.config["state_class"] == "measurement"
    new = ha.metric_entity(T, dev, "conductivity", commandable=False, min_version="2024.8")
    assert new.config["device_class"] == "conductivity"
    with pytest.raises(ConfigError, match="min_version"):
        config_mod.from_dict({"homeassistant": {"min_version": "latest"}})


def test_metrics_outside_the_table_follow_their_value() -> None:
    dev = _dev("BTHome")
    flag = ha.metric_entity(T, dev, "frobnicated", commandable=False, value=True)
    assert flag.topic.split("/")[1] == "binary_sensor"
    assert flag.config["value_template"] == "{{ 'ON' if value_json[\"frobnicated\"] else 'OFF' }}"
    number = ha.metric_entity(T, dev, "frobnicated", commandable=False, value=3)
    assert number.topic.split("/")[1] == "sensor"
    assert {"unit_of_measurement", "device_class", "state_class"}.isdisjoint(number.config)
    tamper = ha.metric_entity(T, dev, "tamper", commandable=False, value=True)
    assert (tamper.topic.split("/")[1], tamper.config["device_class"]) == (
        "binary_sensor",
        "tamper",
    )


def test_every_device_names_its_manufacturer_and_model() -> None:
    attrs = {"model_code": "ZNCZ02LM", "model_name": "Mi smart plug"}
    zb = dataclasses.replace(_dev("lumi.plug", Transport.ZIGBEE, "Xiaomi"), attrs=attrs)
    plug = ha.metric_entity(T, zb, "power", commandable=False)
    assert (plug.config["device"]["manufacturer"], plug.config["device"]["model"]) == (
        "Xiaomi",
        "Mi smart plug (ZNCZ02LM)",
    )
    pvvx = ha.metric_entity(T, _dev("pvvx"), "temperature", commandable=False)
    assert (pvvx.config["device"]["manufacturer"], pvvx.config["device"]["model"]) == (
        "pvvx",
        "Thermometer, pvvx custom firmware",
    )
    # the driver's manufacturer wins; a model nobody names shows as it is
    named = _dev("BTHome", manufacturer="Shelly")
    block = ha.metric_entity(T, named, "battery", commandable=False).config["device"]
    assert (block["manufacturer"], block["model"]) == ("Shelly", "BTHome v2 device")
    unknown = ha.metric_entity(T, _dev("lumi.new", Transport.ZIGBEE), "power", commandable=False)
    assert unknown.config["device"]["model"] == "lumi.new"
    assert "manufacturer" not in unknown.config["device"]
    roomed = dataclasses.replace(_dev("pvvx"), attrs={"room": "Kitchen"})
    block = ha.metric_entity(T, roomed, "temperature", commandable=False).config["device"]
    assert block["suggested_area"] == "Kitchen"
    assert "suggested_area" not in pvvx.config["device"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["K9B-2BTN", "YLKG07YL/YLKG08YL", "BTHome", "XYZ", "XMMF01JQD"]),
            st.sampled_from(["button", "dimmer", "cube", "lock", "other"]),
            st.sampled_from(["single", "long", "rotate_left", "locked", "hold", "odd"]),
            st.sampled_from([None, 1, 2, 3]),
        ),
        max_size=40,
    )
)
def test_an_event_always_goes_to_an_entity_announcing_its_action(
    events: list[tuple[str, str, str, int | None]],
) -> None:
    """Whatever a device sends, the entity its event is published to has announced that
    action type by then (Home Assistant drops an event type it was not told about)."""
    catalog = ha.EventCatalog()
    announced: dict[str, dict[str, Any]] = {}
    for model, event, action, button in events:
        dev = _dev(model)
        for d in catalog.device(T, dev) + catalog.event(T, dev, event, action, button):
            announced[d.config["state_topic"]] = d.config
        ev = Event(dev.id, event, action, STAMP, "ble", button=button)
        topic, _ = ha.event_message(T, ev)
        assert action in announced[topic]["event_types"]
        assert len(set(announced[topic]["event_types"])) == len(announced[topic]["event_types"])
