"""``migw automations list | trace | replay`` in-process (main(argv))."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import loads
from gateway.errors import ConfigError

CONFIG = """
[gateway]
id = "t"
[location]
timezone = "UTC"
[[automations]]
id = "leak"
name = "Leak: plug off"
triggers = [{type = "state", device = "zb-leak", metric = "water_leak", to = true, for_s = 5}]
actions = [{type = "command", device = "zb-plug", command = "off"}]
[[automations]]
id = "dbl"
triggers = [{type = "event", device = "gpio-b", action = "double"}]
conditions = [{type = "time", after = "22:00", before = "06:00"}]
actions = [{type = "command", device = "gpio-led", command = "toggle"}]
"""

LINES = [
    {"ts": 1_700_000_000, "device": "zb-leak", "metric": "water_leak", "value": False},
    {"ts": 1_700_000_010, "device": "zb-leak", "metric": "water_leak", "value": True},
    {"ts": 1_700_000_012, "device": "zb-leak", "metric": "water_leak", "value": False},
    {"ts": 1_700_000_020, "device": "zb-leak", "metric": "water_leak", "value": True},
    {"ts": 1_700_000_030, "device": "gpio-b", "event": "button", "action": "double"},  # 22:13
    {"ts": 1_700_000_040, "uplink": False},
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    data = tmp_path / "day.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    return cfg, data


def test_replay_jsonl_prints_what_would_fire(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, data = files
    argv = ["--config", str(cfg), "--state-dir", str(tmp_path / "s"), "automations", "replay"]
    assert main([*argv, "--jsonl", str(data), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["automation"], o["at"], o["trigger"]) for o in out] == [
        ("leak", 1_700_000_025.0, "zb-leak water_leak = true (was false) for 5 s"),
        ("dbl", 1_700_000_030.0, "gpio-b button: double"),
    ]
    assert out[0]["actions"] == ["command device=zb-plug command=off: ok: not sent (dry run)"]
    assert main([*argv, "--jsonl", str(data)]) == 0
    text = capsys.readouterr()
    assert "2023-11-14T22:13:45.000+00:00  leak  fired  because zb-leak" in text.out
    assert "2 firing(s) over 6 input(s)" in text.err


def test_replay_rejects_a_bad_line(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, data = files
    data.write_text('{"ts": 1, "device": "x"}\n')
    argv = ["--config", str(cfg), "automations", "replay", "--jsonl", str(data)]
    assert main(argv) == 1
    assert "line 1: not a reading, an event or an uplink change" in capsys.readouterr().err


def test_list_and_trace_without_history(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = files
    base = ["--config", str(cfg), "--state-dir", str(tmp_path / "s"), "automations"]
    assert main([*base, "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {"id": "leak", "name": "Leak: plug off", "enabled": True, "triggers": ["state"],
         "last_fired": None},
        {"id": "dbl", "name": "", "enabled": True, "triggers": ["event"], "last_fired": None},
    ]  # fmt: skip
    assert main([*base, "trace", "leak"]) == 0
    assert "no trace of 'leak'" in capsys.readouterr().out


def test_sun_needs_a_location() -> None:
    text = textwrap.dedent("""
        [[automations]]
        id = "dusk"
        triggers = [{type = "sun", at = "sunset"}]
        actions = [{type = "publish", message = "dusk"}]
    """)
    with pytest.raises(ConfigError, match=r"automations\[0\].triggers\[0\].at \(line 4\)"):
        loads(text)
    assert loads("[location]\nlatitude = 1.0\nlongitude = 2.0\n" + text).automations


def test_a_corrupt_journal_is_moved_aside(tmp_path: Path) -> None:
    from gateway.automations.journal import FILE_NAME, Journal

    path = tmp_path / FILE_NAME
    path.write_bytes(b"this is not a database" * 100)
    journal = Journal.open(path)
    try:
        assert journal.traces() == []
    finally:
        journal.close()
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if "corrupt" in p.name] == [
        f"{FILE_NAME}.corrupt"
    ]
