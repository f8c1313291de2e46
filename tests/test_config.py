"""Config: typed sections, errors naming key path and line, secrets that never print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import config
from gateway.cli import main
from gateway.errors import ConfigError


def test_defaults_are_valid() -> None:
    cfg = config.loads("")
    assert cfg.api.port == 8380
    assert cfg.store.batch_max_rows == 500
    assert cfg.gpio.devices == ()


def test_full_gpio_section() -> None:
    cfg = config.loads(
        """
[gateway]
id = "pi-hall"

[[gpio.devices]]
name = "door"
kind = "contact"
pin = 27
pull_up = true

[[gpio.devices]]
name = "relay"
kind = "relay"
pin = "GPIO23"
active_high = false
"""
    )
    assert cfg.gateway.id == "pi-hall"
    assert [(d.name, d.kind, d.pin) for d in cfg.gpio.devices] == [
        ("door", "contact", 27),
        ("relay", "relay", "GPIO23"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gatway]\nid='x'\n", "gatway (line 1): unknown key (did you mean 'gateway'?)"),
        ("[api]\nport = 'eighty'\n", "api.port (line 2): must be an integer, not a string"),
        ("[api]\nport = 99999\n", "api.port (line 2): must be 0-65535"),
        (
            "[[gpio.devices]]\nname='a'\nkind='relay'\npin=1\n[[gpio.devices]]\nname='b'\n"
            "kind='laser'\npin=2\n",
            "gpio.devices[1].kind (line 7): must be one of 'button', 'contact', 'motion', "
            "'relay', 'led', not 'laser'",
        ),
        (
            "[[gpio.devices]]\nname='a'\nkind='relay'\npin=17\n[[gpio.devices]]\nname='b'\n"
            "kind='button'\npin='GPIO17'\n",
            "gpio.devices[1].pin (line 8): pin GPIO17 is already used by 'a'",
        ),
        ("[store]\nbatch_max_ms = 500\n", "store.batch_max_ms (line 2): must be between 1 and 100"),
        ("[upstream]\nurl = 'http://x'\n", "upstream.url (line 2): must look like mqtt://"),
        ("[ble]\nenabled = 'yes'\n", "ble.enabled (line 2): must be true or false, not a string"),
        (
            "[zigbee]\nenabled = true\n",
            "zigbee.port (line 1): is required when zigbee is enabled",
        ),
        ("[gateway]\nid = 'Bad ID'\n", "gateway.id (line 2): must be 1-64 characters"),
        (
            "[gateway]\nmax_devices = 0\n",
            "gateway.max_devices (line 2): must be between 1 and 100000",
        ),
        (
            "[gateway]\nmax_devices = 1000001\n",
            "gateway.max_devices (line 2): must be between 1 and 100000",
        ),
        ("[gateway]\nmax_devices = '2000'\n", "gateway.max_devices (line 2): must be an integer"),
        (
            "[[gpio.devices]]\nname='a'\nkind='relay'\npin='GPIO17'\n[[gpio.devices]]\n"
            "name='b'\nkind='button'\npin='BOARD11'\n",
            "gpio.devices[1].pin (line 8): pin BOARD11 is already used by 'a'",
        ),
        (
            "[[gpio.devices]]\nname='a'\nkind='relay'\npin=999\n",
            "gpio.devices[0].pin (line 4): 999 is not a Raspberry Pi GPIO",
        ),
        (
            "[[gpio.devices]]\nname='a'\nkind='button'\npin=4\nhold_s=nan\n",
            "gpio.devices[0].hold_s (line 5): must be a finite number, not nan",
        ),
        (
            "[[gpio.devices]]\nname='a'\nkind='button'\npin=4\nbounce_s=-1\n",
            "gpio.devices[0].bounce_s (line 5): must be >= 0",
        ),
        ("[upstream]\noutbox_ttl_days = inf\n", "upstream.outbox_ttl_days (line 2): must be a"),
        ("[api]\nmax_body_bytes = -1\n", "api.max_body_bytes (line 2): must be >= 1024"),
        ("[zigbee]\nbaud = -5\n", "zigbee.baud (line 2): must be > 0"),
        ("[store]\nhistory_max_rows = 18446744073709551616\n", "store.history_max_rows"),
        ("[gateway]\nstate_dir = '~nosuchuser1234/x'\n", "gateway.state_dir (line 2): cannot"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML: nested too deeply"),
        ("a = 1\nb = = 2\n", "line 2: not valid TOML"),
    ],
)
def test_errors_name_the_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.loads(text)
    assert str(exc.value).startswith(message), str(exc.value)


def test_secrets_never_print(tmp_path: Path) -> None:
    cfg = config.loads("[ble.keys]\n'A4:C1:38:00:00:01' = '0123456789abcdef0123456789abcdef'\n")
    key = cfg.ble.keys["A4:C1:38:00:00:01"]
    assert "0123" not in repr(cfg)
    assert "0123" not in str(key)
    assert key.reveal() == "0123456789abcdef0123456789abcdef"


def test_secret_from_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("hunter2\n")
    assert config.read_secret(None, f, "password") == config.Secret("hunter2")
    f.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        config.read_secret(None, f, "password")
    with pytest.raises(ConfigError, match="cannot read"):
        config.read_secret(None, tmp_path / "missing", "password")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[gateway]\nstate_dir = 'state'\n")
    assert config.load(f).gateway.state_dir == tmp_path / "state"


def test_cli_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[[gpio.devices]]\nname='r'\nkind='relay'\npin=5\n")
    assert main(["config", "check", str(good)]) == 0
    assert "ok (gateway" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[api]\nlisten = 5\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "api.listen (line 2): must be a string, not an integer" in capsys.readouterr().err
    assert main(["config", "check", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_config_check_rejects_bad_ble_keys_without_showing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "b853075158487aa39a5b5ea9"  # a 24-char Mi token pasted as a v4/v5 bind key
    f = tmp_path / "c.toml"
    f.write_text(f"[ble.keys]\n'A4:C1:38:00:00:01' = 'zz{token[2:]}'\n")
    assert main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert "A4:C1:38:00:00:01" in err
    assert token[2:] not in err
    f.write_text("[ble.key_files]\n'A4:C1:38:00:00:01' = 'missing-key'\n")
    assert main(["config", "check", str(f)]) == 2
    assert "cannot read bind key for A4:C1:38:00:00:01 file" in capsys.readouterr().err


def test_cli_config_check_json_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[gateway]\nid = 'pi-hall'\n[upstream]\nurl = 'mqtt://127.0.0.1:1883'\n")
    assert main(["config", "check", "--json", str(good)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["problems"] == []
    assert data["summary"]["gateway"] == "pi-hall"
    assert data["summary"]["upstream"] == "mqtt://127.0.0.1:1883"
    bad = tmp_path / "bad.toml"
    bad.write_text("[api]\nlisten = 5\n")
    assert main(["config", "check", "--json", str(bad)]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "file": str(bad),
        "ok": False,
        "problems": ["api.listen (line 2): must be a string, not an integer"],
        "summary": None,
    }


def test_cli_config_check_refuses_plaintext_mqtt_to_a_lan_host_like_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[upstream]\nurl = 'mqtt://10.0.0.5:1883'\n")
    assert main(["config", "check", str(f)]) == 2
    err = capsys.readouterr().err
    assert "upstream.url: refusing plaintext MQTT to mqtt://10.0.0.5:1883" in err
    f.write_text("[upstream]\nurl = 'mqtt://10.0.0.5:1883'\nallow_insecure = true\n")
    assert main(["config", "check", str(f)]) == 0
    capsys.readouterr()
    f.write_text("[homeassistant]\nurl = 'mqtt://192.168.1.9'\n")
    assert main(["config", "check", "--json", str(f)]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems == [
        "homeassistant.url: refusing plaintext MQTT to mqtt://192.168.1.9:1883: use mqtts:// "
        "(TLS) or set allow_insecure = true"
    ]
