"""migw against a real Home Assistant (``make interop``; not part of ``make test``).

A real Mosquitto, a real Home Assistant (tests/interop/requirements-ha.txt, in its own
virtualenv ``.venv-ha``) onboarded over its REST API with the MQTT integration added through
its config flow, and ``migw run --demo --upstream mqtt://...`` as a user starts it. Everything
is asserted through Home Assistant's own APIs (REST states and services, websocket device and
entity registries, ``state_changed`` events), against what migw published on the broker:

* every device and entity migw announced is in HA's registries, none more, none rejected;
* sensors carry the announced unit, device class and state class, with a numeric state;
* every event migw published reaches its HA event entity as that event type (with ``steps``
  for the dimmer), including a button, a dimmer, a cube and a double wall switch, and an
  automation made through HA's config API fires on each of those four;
* switches round-trip: an HA service call switches the relay in migw, and HA shows it;
* stopping the gateway makes its entities unavailable, starting it again brings them back;
* a restarted Home Assistant gets discovery again (its birth message) and every entity;
* HA's log has no warning or error about MQTT entities, templates or migw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.broker import Collector, Mosquitto, Received, free_port, start_broker

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "interop"
BLE_DEVICES = 10  # every kind of hw_mocks.ble.KINDS once, and a second mibeacon/pvvx/...
START_TIMEOUT_S = 180.0
WAIT_S = 90.0
#: Entities of the demo at least (the first metrics of the fleet, GPIO, Zigbee, events).
MIN_ENTITIES = 40
#: The gateway, 5 GPIO pins, the BLE fleet and 8 simulated Zigbee devices (hw_mocks.aqara).
DEVICES = 1 + 5 + BLE_DEVICES + 8
USER, PASSWORD = "interop", "interop-password-1"

#: Loggers whose warnings would be about what migw sends (discovery, state, templates).
HA_LOGGERS = re.compile(
    r"\[homeassistant\.(components\.(mqtt|sensor|binary_sensor|switch|event)"
    r"|helpers\.(template|entity|entity_registry|device_registry))"
)


#: HA's own start-up warnings in this set-up (requirements preinstalled, Python 3.11).
EXPECTED_HA_WARNINGS = re.compile(
    r"\[homeassistant\.bootstrap\] (Skipping pip installation"
    r"|Support for the running Python version 3\.11)"
)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def ha_python() -> Path:
    path = Path(os.environ.get("MIGW_HA_PYTHON", ROOT / ".venv-ha" / "bin" / "python"))
    if not path.exists():
        message = f"no Home Assistant virtualenv at {path}: run `make interop`"
        if _ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# ----------------------------------------------------------------------- Home Assistant


@dataclass
class HomeAssistant:
    config_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.config_dir / "home-assistant.log"

    def start(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "automations.yaml").write_text("[]\n")
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: interop\n  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  country: DE\n  currency: EUR\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nconfig:\nwebsocket_api:\nonboarding:\n"
            "automation: !include automations.yaml\n"
            "logger:\n  default: warning\n"
        )
        with (self.config_dir / "stdout.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(ha_python()), "-m", "homeassistant", "-c", str(self.config_dir), "--skip-pip"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def problems(self) -> list[str]:
        """WARNING/ERROR records of HA's log (a record's continuation lines included)."""
        records: list[str] = []
        lines: list[str] = []
        for path in sorted(self.config_dir.glob("home-assistant.log*"), reverse=True):
            lines += path.read_text(errors="replace").splitlines()  # .log.1 (a restart) first
        for line in lines:
            if re.match(r"\d{4}-\d\d-\d\d ", line):
                records.append(line)
            elif records:
                records[-1] += "\n" + line
        return [r for r in records if re.search(r" (WARNING|ERROR|CRITICAL) ", r.split("\n")[0])]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def wait_started(ha: HomeAssistant, http: aiohttp.ClientSession) -> None:
    async def up() -> bool:
        assert ha.proc is not None
        if ha.proc.poll() is not None:
            out = (ha.config_dir / "stdout.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"Home Assistant exited: {out}")
        try:
            async with http.get(f"{ha.url}/api/onboarding") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await until("Home Assistant's HTTP API", up, START_TIMEOUT_S)


async def onboard(ha: HomeAssistant, http: aiohttp.ClientSession) -> None:
    """Create the owner through onboarding and exchange its auth code for a token."""
    client_id = f"{ha.url}/"
    body = {
        "client_id": client_id,
        "name": "Interop",
        "username": USER,
        "password": PASSWORD,
        "language": "en",
    }
    async with http.post(f"{ha.url}/api/onboarding/users", json=body) as resp:
        assert resp.status == 200, await resp.text()
        code = (await resp.json())["auth_code"]
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
    async with http.post(f"{ha.url}/auth/token", data=form) as resp:
        assert resp.status == 200, await resp.text()
        ha.token = (await resp.json())["access_token"]


async def add_mqtt(ha: HomeAssistant, http: aiohttp.ClientSession, broker: Mosquitto) -> None:
    """The MQTT integration through its config flow, as the UI does it."""
    base = f"{ha.url}/api/config/config_entries/flow"
    async with http.post(base, json={"handler": "mqtt"}, headers=ha.headers()) as resp:
        assert resp.status == 200, await resp.text()
        flow = await resp.json()
    assert flow["type"] == "form", flow
    answer = {"broker": "127.0.0.1", "port": broker.port}
    async with http.post(f"{base}/{flow['flow_id']}", json=answer, headers=ha.headers()) as resp:
        assert resp.status == 200, await resp.text()
        done = await resp.json()
    assert done["type"] == "create_entry", done


AUTOMATION_EVENT = "migw_interop_automation"


async def add_automation(
    ha: HomeAssistant, http: aiohttp.ClientSession, name: str, entity_id: str, event_type: str
) -> None:
    """An automation through HA's config API (what its editor saves): an event entity's
    event of one type fires AUTOMATION_EVENT naming the automation."""
    config = {
        "alias": f"interop {name}",
        "description": "",
        "mode": "queued",
        "trigger": [{"platform": "state", "entity_id": entity_id}],
        "condition": [
            {
                "condition": "state",
                "entity_id": entity_id,
                "attribute": "event_type",
                "state": event_type,
            }
        ],
        "action": [{"event": AUTOMATION_EVENT, "event_data": {"which": name}}],
    }
    url = f"{ha.url}/api/config/automation/config/interop_{name.replace(' ', '_')}"
    async with http.post(url, json=config, headers=ha.headers()) as resp:
        assert resp.status == 200, await resp.text()


class Websocket:
    """HA's websocket API: commands by id, and the events of one subscription."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read(), name="ha-ws-reader")

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if data.get("type") == "event":
                self.events.append(data["event"])
            elif data.get("type") == "result":
                fut = self._waiting.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)

    async def call(self, kind: str, **args: Any) -> Any:
        self._id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._id] = fut  # listen before sending
        await self._ws.send_json({"id": self._id, "type": kind, **args})
        data = await asyncio.wait_for(fut, 30)
        assert data["success"], data
        return data["result"]

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def websocket(ha: HomeAssistant, http: aiohttp.ClientSession) -> AsyncIterator[Websocket]:
    ws = await http.ws_connect(f"{ha.url}/api/websocket")
    assert (await ws.receive_json())["type"] == "auth_required"
    await ws.send_json({"type": "auth", "access_token": ha.token})
    assert (await ws.receive_json())["type"] == "auth_ok"
    client = Websocket(ws)
    try:
        yield client
    finally:
        await client.close()


# --------------------------------------------------------------------------------- migw


@contextlib.contextmanager
def gateway(tmp: Path, broker: Mosquitto) -> Iterator[subprocess.Popen[bytes]]:
    config = tmp / "migw.toml"
    config.write_text(
        f'[gateway]\nid = "{GATEWAY}"\n\n'
        '[devices]\n"gpio-hall-relay" = { name = "Hall light", room = "Hallway" }\n'
    )
    log = (tmp / "migw.log").open("ab")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "migw"),
            "--config",
            str(config),
            "run",
            "--demo",
            "--upstream",
            broker.url,
            "--ble-devices",
            str(BLE_DEVICES),
            "--rate",
            "2",
            "--state-dir",
            str(tmp / "state"),
            "--api-port",
            str(free_port()),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=tmp,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def _json(payload: bytes) -> Any:
    return json.loads(payload)


def _prefixed(col: Collector, prefix: str) -> list[Received]:
    return [m for m in col.messages if m.topic.startswith(prefix)]


def _online(col: Collector, config: dict[str, Any]) -> bool:
    """migw says the entity's device is available (its latest availability message)."""
    for a in config.get("availability", []):
        msgs = col.on(a["topic"])
        if not msgs or msgs[-1].payload != a["payload_available"].encode():
            return False
    return True


def announced(col: Collector) -> dict[str, dict[str, Any]]:
    """unique_id -> (latest) discovery config migw published, with its component."""
    out: dict[str, dict[str, Any]] = {}
    for msg in _prefixed(col, "homeassistant/"):
        parts = msg.topic.split("/")
        if parts[-1] != "config" or not msg.payload:
            continue
        config = _json(msg.payload)
        out[config["unique_id"]] = {**config, "component": parts[1]}
    return out


# --------------------------------------------------------------------------------- test


async def test_real_home_assistant(tmp_path: Path) -> None:
    ha_python()
    broker = start_broker(tmp_path / "broker")
    ha = HomeAssistant(tmp_path / "ha")
    ha.start()
    try:
        async with aiohttp.ClientSession() as http:
            await wait_started(ha, http)
            await onboard(ha, http)
            await add_mqtt(ha, http, broker)
            topics = ["homeassistant/#", f"migw/{GATEWAY}/#"]
            async with Collector(broker.port, topics) as col, websocket(ha, http) as ws:
                await ws.call("subscribe_events", event_type="state_changed")
                await ws.call("subscribe_events", event_type=AUTOMATION_EVENT)
                with gateway(tmp_path, broker) as proc:
                    await _check_running(ha, http, ws, col)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
                    await _check_unavailable(ha, http, ws)
                with gateway(tmp_path, broker):
                    entity_ids = await _check_available_again(ha, http, ws, col)
                    await _check_ha_restart(ha, http, col, entity_ids)
    finally:
        ha.stop()
        broker.stop()
    problems = ha.problems()
    about_migw = [p for p in problems if HA_LOGGERS.search(p) or "migw" in p]
    assert not about_migw, "\n".join(about_migw)
    # Nothing else either: a line about migw may come from a logger not listed above.
    assert [p for p in problems if not EXPECTED_HA_WARNINGS.search(p)] == []


async def _registry(ws: Websocket) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    devices = [
        d
        for d in await ws.call("config/device_registry/list")
        if any(i[0] == "mqtt" and i[1].startswith(f"migw_{GATEWAY}") for i in d["identifiers"])
    ]
    entities = [
        e
        for e in await ws.call("config/entity_registry/list")
        if e["platform"] == "mqtt" and e["unique_id"].startswith(f"migw_{GATEWAY}")
    ]
    return devices, entities


async def _states(ha: HomeAssistant, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    async with http.get(f"{ha.url}/api/states", headers=ha.headers()) as resp:
        assert resp.status == 200
        return {s["entity_id"]: s for s in await resp.json()}


async def _check_running(
    ha: HomeAssistant, http: aiohttp.ClientSession, ws: Websocket, col: Collector
) -> None:
    # The demo's kinds have all announced themselves: a dimmer, a cube, a double switch.
    async def all_kinds() -> bool:
        uids = set(announced(col))
        wanted = ("_dimmer", "_cube", "_button_1", "_button_2", "_button", "_switch")
        return all(any(u.endswith(w) for u in uids) for w in wanted)

    await until("discovery of every demo device kind", all_kinds)

    # HA registered every device and entity migw announced, and none else.
    async def registered() -> tuple[Any, Any] | None:
        devices, entities = await _registry(ws)
        configs = announced(col)
        want_devices = {c["device"]["identifiers"][0] for c in configs.values()}
        have_devices = {i[1] for d in devices for i in d["identifiers"] if i[0] == "mqtt"}
        if len(want_devices) < DEVICES:  # the demo's; others (presence) may come
            return None
        if want_devices == have_devices and set(configs) == {e["unique_id"] for e in entities}:
            return devices, entities
        return None

    devices, entities = await until("HA's registries to hold what migw announced", registered)
    configs = announced(col)
    assert len(devices) >= DEVICES, sorted((d["name"], d["model"]) for d in devices)
    assert len(entities) >= MIN_ENTITIES, len(entities)
    by_uid = {e["unique_id"]: e for e in entities}
    # a named device with a room: HA's name, and the area it created for the room
    hall = [d for d in devices if d["name"] == "Hall light"]
    assert len(hall) == 1 and hall[0]["area_id"] == "hallway", hall
    for d in devices:
        if d["name"] != f"migw {GATEWAY}":
            assert d["manufacturer"] and d["model"], (d["name"], d["manufacturer"], d["model"])
            assert d["via_device_id"], d

    # Sensors: unit, device class and state class as announced, and a numeric state.
    async def sensors_have_values() -> dict[str, dict[str, Any]] | None:
        """HA's states, once every entity migw published a state for (of a device it says
        is available) shows one: a sensor a value, a binary sensor on/off. Retried, as
        availability may change between the two looks (a presence tracker)."""
        states = await _states(ha, http)
        for uid, c in configs.items():
            state = states.get(by_uid[uid]["entity_id"])
            if state is None:
                return None
            shown = state["state"] not in ("unknown", "unavailable")
            if c["component"] == "binary_sensor":
                shown = state["state"] in ("on", "off")
            if (
                c["component"] in ("sensor", "binary_sensor")
                and not shown
                and col.on(c["state_topic"])
                and _online(col, c)
            ):
                return None  # migw published a state for it: HA must show it
        return states

    states = await until("every published value in HA", sensors_have_values)
    kinds: set[str] = set()
    for uid, c in configs.items():
        state = states[by_uid[uid]["entity_id"]]
        attrs = state["attributes"]
        kinds.add(c["component"])
        assert attrs.get("device_class") == c.get("device_class"), (uid, attrs)
        if c["component"] == "sensor":
            assert attrs.get("unit_of_measurement") == c.get("unit_of_measurement"), (uid, attrs)
            assert attrs.get("state_class") == c.get("state_class"), (uid, attrs)
            if state["state"] not in ("unknown", "unavailable") and c.get("unit_of_measurement"):
                float(state["state"])
        if c["component"] == "event":
            assert attrs["event_types"] == c["event_types"], (uid, attrs)
    assert {"sensor", "binary_sensor", "switch", "event"} <= kinds
    temperature = [
        s for s in states.values() if s["attributes"].get("device_class") == "temperature"
    ]
    assert temperature and all(s["attributes"]["unit_of_measurement"] == "°C" for s in temperature)

    await _check_zigbee_batteries(ha, http, ws, col)
    await _check_events(ha, http, ws, col, configs, by_uid)
    await _check_switches(ha, http, col, configs, by_uid)


async def _check_zigbee_batteries(
    ha: HomeAssistant, http: aiohttp.ClientSession, ws: Websocket, col: Collector
) -> None:
    """Every battery-powered Zigbee device that reported its battery voltage has a battery
    entity in percent that HA shows (a few of the demo's Aqara sensors within the wait)."""

    async def batteries() -> int | None:
        configs = announced(col)
        states = await _states(ha, http)
        by_uid = {e["unique_id"]: e for e in (await _registry(ws))[1]}
        found = 0
        for uid, c in configs.items():
            if "_zb-" not in uid or not uid.endswith("_voltage"):
                continue
            msgs = col.on(c["state_topic"])
            if not msgs or _json(msgs[-1].payload).get("voltage", 99) >= 4.0:
                continue  # mains (a plug's 230 V)
            battery_uid = uid.removesuffix("_voltage") + "_battery"
            assert battery_uid in configs, f"no battery entity for {uid}"
            battery = configs[battery_uid]
            assert (battery["device_class"], battery["unit_of_measurement"]) == ("battery", "%")
            entity = by_uid.get(battery_uid)
            shown = states.get(entity["entity_id"], {}).get("state") if entity else None
            if shown in (None, "unknown", "unavailable"):
                return None
            assert 0 <= float(shown) <= 100, (battery_uid, shown)
            found += 1
        return found if found >= 3 else None

    await until("battery entities of the demo's Aqara sensors", batteries)


async def _check_events(
    ha: HomeAssistant,
    http: aiohttp.ClientSession,
    ws: Websocket,
    col: Collector,
    configs: dict[str, dict[str, Any]],
    by_uid: dict[str, dict[str, Any]],
) -> None:
    """Every event migw published arrives at its HA event entity as that event type."""
    entity_of_topic = {
        c["state_topic"]: by_uid[uid]["entity_id"]
        for uid, c in configs.items()
        if c["component"] == "event"
    }

    def published() -> set[tuple[str, str]]:
        out = set()
        for msg in _prefixed(col, f"migw/{GATEWAY}/event/"):
            out.add((entity_of_topic[msg.topic], _json(msg.payload)["event_type"]))
        return out

    def received() -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for ev in ws.events:
            if ev["event_type"] != "state_changed":
                continue
            new = ev["data"].get("new_state") or {}
            if ev["data"]["entity_id"].startswith("event.") and "event_type" in new.get(
                "attributes", {}
            ):
                out[(ev["data"]["entity_id"], new["attributes"]["event_type"])] = new
        return out

    def entity(suffix: str) -> str:
        entity_id: str = next(by_uid[u]["entity_id"] for u in configs if u.endswith(suffix))
        return entity_id

    dimmer, cube = entity("_dimmer"), entity("_cube")
    # automations as a user would make them in HA's editor, one per device kind
    targets = {
        "dimmer": (dimmer, "rotate_left"),
        "cube": (cube, "rotate_right"),
        "double switch": (entity("_button_2"), "single"),
        "gpio button": (entity("gpio-hall-button_button"), "single"),
    }
    for name, (entity_id, event_type) in targets.items():
        await add_automation(ha, http, name, entity_id, event_type)
    wanted = {
        (dimmer, "rotate_left"),
        (dimmer, "rotate_right"),
        (dimmer, "single"),
        (cube, "rotate_left"),
        (cube, "rotate_right"),
        (entity("_button_1"), "single"),
        (entity("_button_2"), "single"),
    }

    async def all_arrived() -> bool:
        pub = published()
        return wanted <= pub and pub <= set(received())

    await until("the demo's events in HA", all_arrived)

    def fired() -> set[str]:
        return {ev["data"]["which"] for ev in ws.events if ev["event_type"] == AUTOMATION_EVENT}

    async def automations_fired() -> set[str] | None:
        return None if fired() < set(targets) else fired()

    await until("an HA automation per device kind to fire", automations_fired)
    got = received()
    rotate = got[(dimmer, "rotate_right")]["attributes"]
    assert rotate["steps"] in (1, 2, 3), rotate
    assert set(rotate["event_types"]) >= {"rotate_left", "rotate_right", "single", "long"}


async def _check_switches(
    ha: HomeAssistant,
    http: aiohttp.ClientSession,
    col: Collector,
    configs: dict[str, dict[str, Any]],
    by_uid: dict[str, dict[str, Any]],
) -> None:
    """HA switches the relay and the Zigbee plug through migw, and shows the result."""
    switches = {uid: c for uid, c in configs.items() if c["component"] == "switch"}
    assert any("gpio-hall-relay" in u for u in switches), list(switches)
    for uid, c in switches.items():
        assert c["qos"] == 1
        entity_id = by_uid[uid]["entity_id"]
        for service, want in (("turn_on", True), ("turn_off", False)):
            async with http.post(
                f"{ha.url}/api/services/switch/{service}",
                json={"entity_id": entity_id},
                headers=ha.headers(),
            ) as resp:
                assert resp.status == 200, await resp.text()

            async def switched(topic: str = c["state_topic"], want: bool = want) -> bool:
                msgs = col.on(topic)
                return bool(msgs) and _json(msgs[-1].payload).get("switch") is want

            await until(f"{uid} switched {service} in migw", switched)

            async def shown(entity_id: str = entity_id, want: bool = want) -> bool:
                state: str = (await _states(ha, http))[entity_id]["state"]
                return state == ("on" if want else "off")

            await until(f"{entity_id} {service} in HA", shown)


async def _check_available_again(
    ha: HomeAssistant, http: aiohttp.ClientSession, ws: Websocket, col: Collector
) -> list[str]:
    """A restarted gateway brings back every entity of a device it says is available (a
    presence tracker may rightly say "away"); returns those entities."""
    _, entities = await _registry(ws)
    configs = announced(col)

    async def available() -> list[str] | None:
        ids = [e["entity_id"] for e in entities if _online(col, configs[e["unique_id"]])]
        states = await _states(ha, http)
        back = [i for i in ids if states[i]["state"] != "unavailable"]
        return ids if len(back) == len(ids) and len(ids) >= MIN_ENTITIES else None

    ids: list[str] = await until("migw's entities available after a restart", available)
    return ids


async def _check_ha_restart(
    ha: HomeAssistant, http: aiohttp.ClientSession, col: Collector, entity_ids: list[str]
) -> None:
    """Home Assistant restarts: its birth message makes migw publish discovery again, and
    every entity is back and available."""
    before = len(_prefixed(col, "homeassistant/"))
    configs = len(announced(col))
    ha.stop()
    ha.start()
    await wait_started(ha, http)

    async def republished() -> bool:
        return len(_prefixed(col, "homeassistant/")) - before >= configs

    await until("migw to re-publish discovery for the restarted HA", republished)

    async def available() -> bool:
        try:
            states = await _states(ha, http)
        except (aiohttp.ClientError, AssertionError):
            return False
        return all(states.get(i, {}).get("state") not in (None, "unavailable") for i in entity_ids)

    await until("migw's entities back in the restarted HA", available)


async def _check_unavailable(ha: HomeAssistant, http: aiohttp.ClientSession, ws: Websocket) -> None:
    _, entities = await _registry(ws)

    async def unavailable() -> bool:
        states = await _states(ha, http)
        return all(
            states[e["entity_id"]]["state"] == "unavailable"
            for e in entities
            if not e["unique_id"].endswith("_status")
        )

    await until("migw's entities unavailable after it stopped", unavailable, 30)
    states = await _states(ha, http)
    status = next(e for e in entities if e["unique_id"] == f"migw_{GATEWAY}_status")
    assert states[status["entity_id"]]["state"] == "off"


HA_TABLES = """
import json
from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.sensor import (
    DEVICE_CLASS_STATE_CLASSES,
    DEVICE_CLASS_UNITS,
    SensorDeviceClass,
)
print(json.dumps({
    "binary": [c.value for c in BinarySensorDeviceClass],
    "units": {c.value: sorted(str(u) for u in DEVICE_CLASS_UNITS.get(c, ()) if u is not None)
              for c in SensorDeviceClass},
    "state_classes": {c.value: sorted(s.value for s in DEVICE_CLASS_STATE_CLASSES.get(c, ()))
                      for c in SensorDeviceClass},
}))
"""


def test_metrics_fit_home_assistants_tables() -> None:
    """Every METRICS entry, as discovery announces it to the oldest supported release, is
    one Home Assistant accepts: a known device class, a unit and a state class it allows."""
    from gateway.metrics import METRICS, OLDEST_HA, ha_device_class

    out = subprocess.run(
        [str(ha_python()), "-c", HA_TABLES], capture_output=True, check=True, timeout=120
    )
    tables = json.loads(out.stdout)
    for m in METRICS.values():
        device_class = ha_device_class(m, OLDEST_HA)
        if m.kind == "bool":
            assert device_class is None or device_class in tables["binary"], m
            continue
        if device_class is None:
            continue
        assert device_class in tables["units"], m
        if tables["units"][device_class]:
            assert m.unit in tables["units"][device_class], (m, tables["units"][device_class])
        allowed = tables["state_classes"][device_class]
        if allowed:
            assert m.state_class in allowed, (m, allowed)
    # the version gate is needed: 2024.3 has no conductivity class
    assert "conductivity" not in tables["units"]
