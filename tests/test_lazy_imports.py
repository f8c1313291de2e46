"""What a run does not use is not loaded (issue 18: peak RSS of the demo): each check runs in a
fresh interpreter (a service to READY, or an import) and looks at what it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What only a broker link uses: the MQTT client side of the sync agent.
SYNC_LINK_MODULES = frozenset(
    {
        "gateway.sync.acks",
        "gateway.sync.ha",
        "gateway.sync.inbound",
        "gateway.sync.mqtt",
        "gateway.sync.mqtt_codes",
        "gateway.sync.mqtt_io",
        "gateway.sync.poison",
        "gateway.sync.publisher",
        "gateway.sync.pump",
        "gateway.sync.send",
        "gateway.sync.session",
        "gateway.sync.settings",
    }
)

#: Runs the service (the GPIO demo, no API) to READY with ``[upstream] url`` = argv[2] (empty:
#: no uplink), stops it, prints the modules loaded.
_RUN = """
import asyncio, json, sys
from pathlib import Path
from gateway.adapters import DemoOptions
from gateway.config import ApiSection, Config, UpstreamSection
from gateway.demo import demo_config
from gateway.service import Service

async def main() -> None:
    cfg = demo_config(Config(), Path(sys.argv[1]), 0)
    cfg = cfg.replace(api=ApiSection(enabled=False), upstream=UpstreamSection(url=sys.argv[2]))
    async with Service(cfg, demo=DemoOptions(ble_devices=0, zigbee=False)) as svc:
        await svc.ready.wait()
    print(json.dumps(sorted(sys.modules)))

asyncio.run(main())
"""


def _python(code: str, *args: str) -> str:
    """What ``code`` prints, run in a fresh interpreter from the project's root."""
    run = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return run.stdout


def _modules(code: str, *args: str) -> set[str]:
    """The modules loaded by ``code``, which prints them as its last line."""
    return set(json.loads(_python(code, *args).splitlines()[-1]))


def _loaded(state: Path, upstream_url: str) -> set[str]:
    return _modules(_RUN, str(state), upstream_url)


def test_without_an_uplink_the_sync_agent_loads_no_mqtt_client(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path / "none", "")
    assert "gateway.sync.agent" in loaded  # the agent still keeps the outbox bounded
    assert not loaded & SYNC_LINK_MODULES, sorted(loaded & SYNC_LINK_MODULES)
    assert not {m for m in loaded if m == "paho" or m.startswith("paho.")}


def test_with_an_uplink_the_links_are_loaded(tmp_path: Path) -> None:
    # nothing listens on port 1: the link only fails and backs off until the stop
    loaded = _loaded(tmp_path / "up", "mqtt://127.0.0.1:1")
    assert loaded >= SYNC_LINK_MODULES - {"gateway.sync.ha", "gateway.sync.publisher"}


def test_the_api_leaves_the_system_mime_types_unread() -> None:
    # nothing of the API initialises mimetypes; if something does, the global table stays
    # Python's own (aiohttp.web, which served the API before, initialised it at import)
    code = (
        "import mimetypes\n"
        "import gateway.api.server\n"
        "print(mimetypes.inited)\n"
        "mimetypes.guess_type('a.json')\n"
        "print(mimetypes.types_map == mimetypes.MimeTypes().types_map[True])\n"
    )
    assert _python(code).split() == ["False", "True"]


#: A service with the LAN API and the drivers its config asks for: none (the defaults: no
#: GPIO devices, BLE and Zigbee off), to READY; prints the modules loaded.
_RUN_API = """
import asyncio, json, sys
from pathlib import Path
from gateway.config import ApiSection, Config, GatewaySection
from gateway.service import Service

async def main() -> None:
    cfg = Config(
        gateway=GatewaySection(state_dir=Path(sys.argv[1])),
        api=ApiSection(listen="127.0.0.1", port=0),
    )
    async with Service(cfg) as svc:
        await svc.ready.wait()
        assert not svc.drivers
    print(json.dumps(sorted(sys.modules)))

asyncio.run(main())
"""


def _loaded_by_api_run(state: Path) -> set[str]:
    return _modules(_RUN_API, str(state))


def test_the_api_reads_the_package_version_only_when_asked(tmp_path: Path) -> None:
    # gpiozero (no GPIO devices here) would load importlib.metadata itself
    loaded = _loaded_by_api_run(tmp_path / "state")
    assert "gateway.api.views" in loaded
    assert "gpiozero" not in loaded
    assert "importlib.metadata" not in loaded


def test_a_valid_config_loads_without_difflib() -> None:
    # difflib only suggests a key for a config with a mistake
    code = (
        "import sys\n"
        "from gateway.config import loads\n"
        "loads('[gateway]\\nid = \"gw\"\\n')\n"
        "print('difflib' in sys.modules)\n"
    )
    assert _python(code).split() == ["False"]


def test_automations_in_local_time_run_without_zoneinfo(tmp_path: Path) -> None:
    # the demo's automations, without [location] timezone: the system's local time
    loaded = _loaded(tmp_path / "tz", "")
    assert "gateway.automations.engine" in loaded
    assert "zoneinfo" not in loaded


def test_without_zigbee_the_zigbee_stack_is_not_loaded(tmp_path: Path) -> None:
    loaded = _loaded_by_api_run(tmp_path / "state")
    assert "gateway.adapters" in loaded
    zigbee = {m for m in loaded if m.startswith(("drivers.zigbee", "gateway.adapters.zigbee"))}
    assert not zigbee, sorted(zigbee)
    assert "serial" not in loaded


def test_the_zigbee_simulator_loads_its_command_line_parser_only_for_its_command() -> None:
    # the demo runs the simulated stick inside the service: argparse is its CLI's alone
    loaded = _modules("import json, sys, hw_mocks.znp; print(json.dumps(sorted(sys.modules)))")
    assert "hw_mocks.znp" in loaded
    assert "argparse" not in loaded


#: What only BLE decoding uses: the codecs behind ``drivers.ble.decoder`` and the BLE adapter.
BLE_CODEC_MODULES = frozenset(
    {
        "drivers.ble.crypto",
        "drivers.ble.decoder",
        "drivers.ble.mibeacon",
        "gateway.adapters.ble",
    }
)


def _without_crypto(loaded: set[str]) -> set[str]:
    """The modules of ``loaded`` a gateway without BLE decoding must not load."""
    crypto = {m for m in loaded if m == "cryptography" or m.startswith("cryptography.")}
    return crypto | (loaded & BLE_CODEC_MODULES)


def test_the_config_loads_no_ble_code_nor_cryptography() -> None:
    # every CLI command and every gateway reads its config: [presence] is plain fields
    loaded = _modules("import json, sys, gateway.config; print(json.dumps(sorted(sys.modules)))")
    assert "gateway.config.automations" in loaded
    assert not _without_crypto(loaded), sorted(_without_crypto(loaded))
    assert not {m for m in loaded if m.startswith("drivers.ble")}


def _said_and_loaded(code: str, *args: str) -> tuple[str, set[str]]:
    """The last line ``code`` prints (it imports json and sys), and the modules it loaded."""
    out = _python(code + "print(json.dumps(sorted(sys.modules)))\n", *args).splitlines()
    return out[-2], set(json.loads(out[-1]))


def test_automations_load_the_presence_code_only_to_track_people() -> None:
    said, loaded = _said_and_loaded(
        "import json, sys\n"
        "from gateway.automations import timings_of\n"
        "from gateway.config import PresenceSection\n"
        "print('drivers.ble.presence' in sys.modules)\n"
        "timings_of(PresenceSection())\n"
    )
    assert said == "False"
    assert "drivers.ble.presence" in loaded
    assert not _without_crypto(loaded), sorted(_without_crypto(loaded))


def test_a_gpio_only_service_loads_no_ble_codecs_nor_cryptography(tmp_path: Path) -> None:
    # the demo's presence automations still load the presence code (without cryptography)
    loaded = _loaded(tmp_path / "gpio", "")
    assert "gateway.adapters.gpio" in loaded
    assert "drivers.ble.presence" in loaded
    assert not _without_crypto(loaded), sorted(_without_crypto(loaded))
    assert "hw_mocks.ble" not in loaded  # no simulated fleet without simulated BLE devices


def test_migw_status_loads_no_ble_code_nor_cryptography(tmp_path: Path) -> None:
    # no service and no saved state: the command reports it (exit 3) after its imports
    said, loaded = _said_and_loaded(
        "import json, sys\n"
        "from gateway.cli import main\n"
        "print(main(['--state-dir', sys.argv[1], '--api-port', '1', 'status']))\n",
        str(tmp_path),
    )
    assert said == "3"
    assert "gateway.cli.status" in loaded
    assert not _without_crypto(loaded), sorted(_without_crypto(loaded))
    assert not {m for m in loaded if m.startswith("drivers.ble")}


def test_drivers_ble_exports_its_names_on_first_use() -> None:
    # importing a submodule runs the package: it imports no decoder until a name is used
    code = (
        "import sys\n"
        "import drivers.ble.types\n"
        "print('drivers.ble.decoder' in sys.modules, 'cryptography' in sys.modules)\n"
        "from drivers.ble import decode_advertisement, primary\n"
        "from drivers.ble.decoder import decode_advertisement as d\n"
        "print(decode_advertisement is d, 'cryptography' in sys.modules)\n"
    )
    assert _python(code).split() == ["False", "False", "True", "True"]


def test_every_exported_ble_name_is_its_submodules() -> None:
    import importlib

    import drivers.ble as ble

    assert sorted(ble.__all__) == sorted(ble._EXPORTS)
    for name, sub in ble._EXPORTS.items():
        assert getattr(ble, name) is getattr(importlib.import_module(f"drivers.ble.{sub}"), name)
    assert set(ble.__all__) <= set(dir(ble))
    with pytest.raises(AttributeError, match="no_such_name"):
        ble.no_such_name  # noqa: B018 - the lookup is the test
    from drivers.ble import atc  # a submodule, not an exported name: the import system's

    assert atc.__name__ == "drivers.ble.atc"


def test_presence_loads_cryptography_only_to_resolve_an_irk() -> None:
    code = (
        "import sys\n"
        "from drivers.ble.presence import identity, make_rpa, resolves\n"
        "irk = identity('irk', '00112233445566778899aabbccddeeff').irk\n"
        "print('cryptography' in sys.modules)\n"
        "rpa = bytes.fromhex(make_rpa(irk, b'abc').replace(':', ''))\n"
        "print(resolves(irk, rpa), 'cryptography' in sys.modules)\n"
    )
    assert _python(code).split() == ["False", "True", "True"]


def test_the_presence_section_has_the_trackers_timings_and_defaults() -> None:
    # [presence] repeats PresenceTimings' fields (it does not import it): same names, defaults
    import dataclasses

    from drivers.ble.presence import PresenceTimings
    from gateway.automations import timings_of
    from gateway.config import PresenceSection

    timing_fields = [f.name for f in dataclasses.fields(PresenceTimings)]
    section_fields = [f.name for f in dataclasses.fields(PresenceSection)]
    assert section_fields == [*timing_fields, "people"]
    assert timings_of(PresenceSection()) == PresenceTimings()
    custom = PresenceSection(home_rssi=-70, hysteresis_db=3, away_after_s=60, rssi_alpha=0.5)
    assert timings_of(custom) == PresenceTimings(-70, 3, 60, 0.5)


def test_a_service_with_the_api_and_no_ble_loads_no_ble_codecs_nor_cryptography(
    tmp_path: Path,
) -> None:
    loaded = _loaded_by_api_run(tmp_path / "state")
    assert "gateway.api.ble_keys" in loaded  # its routes are served
    assert not _without_crypto(loaded), sorted(_without_crypto(loaded))
