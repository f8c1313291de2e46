"""``migw ble key`` and ``migw ble keys`` against the running demo service: the real BLE
adapter on the simulated fleet (bleak-shaped scanner), the real LAN API, a real reload."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import DemoOptions
from gateway.api.server import ApiServer
from gateway.cli import main
from gateway.cli.base import CliContext
from gateway.config import Config, with_key_dir
from gateway.demo import demo_config
from gateway.service import Service
from hw_mocks.ble import SyntheticFleet, demo_key

FLEET = SyntheticFleet(2)  # the demo's fleet: sensor 1 is a MiBeacon v5 encrypted LYWSD03MMC
MAC = FLEET.sensors[1].mac
KEY = demo_key(1)
WRONG = "00112233445566778899aabbccddeeff"


@pytest.fixture
async def args(tmp_path: Path) -> AsyncIterator[list[str]]:
    cfg = demo_config(Config(), tmp_path / "state", 0)
    demo = DemoOptions(ble_devices=2, ble_rate=20.0, zigbee=False, gpio=False)
    async with Service(cfg, demo=demo) as svc:
        server = next(c for c in svc.components if c.name == "api")
        assert isinstance(server, ApiServer)
        await asyncio.wait_for(server.listening.wait(), 10)
        yield ["--state-dir", str(tmp_path / "state"), "--api-port", str(server.port)]


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_key_is_checked_on_the_next_advert_saved_0600_and_listed(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state" / "ble-keys" / MAC
    code, out, err = await run(capsys, *args, "ble", "key", MAC, WRONG, "--wait", "20")
    assert (code, out) == (1, "")
    assert f"the key does not decrypt {MAC}'s adverts: not saved" in err
    assert WRONG not in err and not path.exists()

    code, out, err = await run(capsys, *args, "ble", "key", MAC, KEY, "--wait", "20")
    assert code == 0, err
    assert out == (
        f"{MAC}: key saved in {path} (it decrypts the device's adverts); service reloaded\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == KEY
    assert KEY not in err

    code, out, _ = await run(capsys, *args, "ble", "keys", "--json")
    assert code == 0
    rows = {r["mac"]: r for r in json.loads(out)["keys"]}
    assert rows[MAC]["key"] == str(path)
    assert KEY not in out

    # the service's next start finds it: the config the CLI and `migw run` load has it
    ctx = CliContext(config_path=None, state_dir=tmp_path / "state", api_port=None)
    assert ctx.load_config().ble.key_files[MAC] == path


async def test_bad_keys_and_silent_devices(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await run(capsys, *args, "ble", "key", MAC, "b853075158487ca39a5b5ea9zz")
    assert code == 1 and "b853075158487ca39a5b5ea9" not in err
    code, _, err = await run(capsys, *args, "ble", "key", "A4:C1:38:99:99:99", WRONG, "--wait", "1")
    assert code == 1
    assert "no encrypted advert from A4:C1:38:99:99:99 in 1 s" in err


def test_key_dir_files_join_the_config_but_the_config_wins(tmp_path: Path) -> None:
    from gateway.config import loads

    cfg: Any = loads(
        f"[gateway]\nstate_dir = '{tmp_path}'\n[ble.key_files]\n'A4:C1:38:00:00:01' = '/k1'\n"
    )
    (tmp_path / "ble-keys").mkdir()
    (tmp_path / "ble-keys" / "A4:C1:38:00:00:01").write_text(WRONG)
    (tmp_path / "ble-keys" / "A4:C1:38:00:00:02").write_text(WRONG)
    (tmp_path / "ble-keys" / "notes.txt").write_text("x")
    assert with_key_dir(cfg).ble.key_files == {
        "A4:C1:38:00:00:01": Path("/k1"),
        "A4:C1:38:00:00:02": tmp_path / "ble-keys" / "A4:C1:38:00:00:02",
    }
