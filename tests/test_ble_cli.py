"""``migw decode ble`` on every public vector and ``migw sniff ble`` on the replay scanner,
through gateway.cli.main(argv) in-process."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from tests.test_ble_vectors import DECODABLE, OVERRIDES, translate

MAC = "A4:C1:38:8D:18:B2"


def _input_line(vec: dict[str, Any], service_data_hex: str | None = None) -> str:
    if "all_service_data_hex" in vec:
        sd = vec["all_service_data_hex"]
    else:
        sd = {vec["uuid"]: service_data_hex or vec["service_data_hex"]}
    line: dict[str, Any] = {"service_data": sd, "rssi": -60}
    if vec.get("mac"):
        line["mac"] = vec["mac"]
    if vec.get("local_name"):
        line["local_name"] = vec["local_name"]
    return json.dumps(line)


def run_cli(
    argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str], str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_decode_ble_on_every_vector(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["decode", "ble", "--no-config"]
    keyed: dict[str, str] = {}
    lines: list[str] = []
    cases: list[tuple[int, dict[str, Any]]] = []
    for index, vec in DECODABLE:
        if vec.get("preceded_by_service_data_hex"):
            continue  # cumulative: checked below, line by line
        if vec.get("bindkey_hex"):
            if keyed.get(vec["mac"], vec["bindkey_hex"]) != vec["bindkey_hex"]:
                continue  # one key per MAC per run: the NEGATIVE lines run separately
            keyed[vec["mac"]] = vec["bindkey_hex"]
        lines.append(_input_line(vec))
        cases.append((index, vec))
    for mac, key in keyed.items():
        argv += ["--bindkey", f"{mac}={key}"]
    code, out, err = run_cli(argv, "\n".join(lines) + "\n", monkeypatch, capsys)
    assert code == 0
    assert len(out) == len(cases)
    for (index, vec), text in zip(cases, out, strict=True):
        got = json.loads(text)
        want = translate(index, vec)
        mac = (vec["mac"] or "").upper()
        if "error" in want:
            assert got == {"mac": mac, "error": want["error"]}, index
            continue
        assert set(got) == {"mac", "format", "model", "values", "events"}
        assert got["mac"] == mac, index
        assert (got["values"], got["events"]) == (want["values"], want["events"]), index
        if "model" in want:
            assert got["model"] == want["model"], index
    for key in keyed.values():
        assert key not in err and key not in "\n".join(out)


def test_decode_ble_negative_and_cumulative_lines_one_by_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for index, vec in DECODABLE:
        negative = "NEGATIVE" in vec.get("note", "")
        cumulative = bool(vec.get("preceded_by_service_data_hex"))
        if not (negative or cumulative):
            continue
        argv = ["decode", "ble", "--no-config"]
        if vec.get("bindkey_hex"):
            argv += ["--bindkey", f"{vec['mac']}={vec['bindkey_hex']}"]
        code, out, err = run_cli(argv, _input_line(vec) + "\n", monkeypatch, capsys)
        assert code == (1 if negative else 0)  # a one-line input that fails fails
        got = json.loads(out[0])
        if negative:
            assert got == {"mac": vec["mac"].upper(), "error": "key_invalid"}, index
            assert vec["bindkey_hex"] not in err
        else:  # stateless: only this advert's own values, a subset of the cumulative ones
            want = translate(index, vec)["values"]
            assert all(want[k] == v for k, v in got["values"].items()), index
            assert "error" not in got


def test_decode_ble_errors_and_hints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    v5 = "58585b0550f4830238c1a495ef58763c26000097e2abb5"  # LYWSD03MMC, v5 encrypted
    stdin = "\n".join(
        [
            json.dumps({"mac": "A4:C1:38:02:83:F4", "service_data": {"fe95": v5}}),
            "not json",
            json.dumps({"mac": MAC, "service_data": {"fe95": "zz"}}),
            json.dumps({"mac": MAC, "service_data": {"180f": "64"}}),
            json.dumps({"mac": MAC, "service_data": {"fe95": "5858"}}),
            "",
        ]
    )
    code, out, err = run_cli(
        ["decode", "ble", "--no-config", "--bindkey", "A4:C1:38:02:83:F4=b853075158487ca39a5b5ea9"],
        stdin,
        monkeypatch,
        capsys,
    )
    assert code == 1  # every line failed (as decode znp: a capture of nothing useful fails)
    assert [json.loads(line) for line in out] == [
        {"mac": "A4:C1:38:02:83:F4", "error": "key_invalid"},
        {"mac": "", "error": "malformed"},
        {"mac": MAC, "error": "malformed"},
        {"mac": MAC, "error": "unsupported"},
        {"mac": MAC, "error": "malformed"},
    ]
    assert "needs the 32-character bindkey" in err and "token" in err
    assert "no line of 5 decoded" in err
    assert "b853075158487ca39a5b5ea9" not in err


def test_decode_ble_without_key_reports_no_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = json.dumps(
        {"mac": MAC, "service_data": {"0xFCD2": "41d2fcefe52eb212d600112233bc38c966"}}
    )
    code, out, _ = run_cli(["decode", "ble", "--no-config"], line, monkeypatch, capsys)
    assert (code, [json.loads(x) for x in out]) == (1, [{"mac": MAC, "error": "no_key"}])


def test_decode_ble_bad_bindkey_option_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["decode", "ble", "--no-config", "--bindkey", f"{MAC}=abcdef0123"]
    code, _, err = run_cli(argv, "", monkeypatch, capsys)
    assert code == 2
    assert "10 hex characters" in err and "abcdef0123" not in err


def test_decode_ble_reads_keys_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.toml"
    key = "231d39c1d7cc1ab1aee224cd096db932"
    cfg.write_text(f'[ble]\nenabled = true\n[ble.keys]\n"54:48:E6:8F:80:A5" = "{key}"\n')
    line = json.dumps(
        {"mac": "54:48:E6:8F:80:A5", "service_data": {"fcd2": "41e445f3c9962b332211006c7c4519"}}
    )
    code, out, _ = run_cli(["--config", str(cfg), "decode", "ble"], line, monkeypatch, capsys)
    assert code == 0
    assert json.loads(out[0]) == {
        "mac": "54:48:E6:8F:80:A5",
        "format": "bthome_v2",
        "model": "BTHome",
        "values": {"temperature": 25.06, "humidity": 50.55},
        "events": [],
    }


def test_decode_ble_keeps_going_after_a_bad_mac(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = {"181c": "2302ca09"}  # BTHome v1 plain: temperature 25.06
    good: dict[str, object] = {"mac": MAC, "format": "bthome_v1", "model": "BTHome", "events": []}
    good["values"] = {"temperature": 25.06}
    stdin = "\n".join(
        json.dumps({"mac": mac, "service_data": plain})
        for mac in (MAC, "A4C1_381A2B3", "0xA4C1381A2B", MAC)
    )
    code, out, err = run_cli(["decode", "ble", "--no-config"], stdin, monkeypatch, capsys)
    assert code == 0
    assert [json.loads(line) for line in out] == [
        good,
        {"mac": "A4C1_381A2B3", "error": "malformed"},
        {"mac": "0xA4C1381A2B", "error": "malformed"},
        good,
    ]
    assert err.splitlines() == [
        "line 2: A4C1_381A2B3: mac 'A4C1_381A2B3' is not a MAC address",
        "line 3: 0xA4C1381A2B: mac '0xA4C1381A2B' is not a MAC address",
    ]


def test_sniff_ble_on_the_replay_scanner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = tmp_path / "adverts.jsonl"
    frame = {"mac": MAC, "rssi": -58, "service_data": {"fcd2": "4000090102"}}
    press = {"mac": MAC, "rssi": -58, "service_data": {"fcd2": "40000a3a01"}}
    foreign = {"mac": "11:22:33:44:55:66", "rssi": -90, "local_name": "tv", "service_data": {}}
    replay.write_text("\n".join(json.dumps(x) for x in (frame, frame, press, foreign)) + "\n")
    argv = ["sniff", "ble", "--no-config", "--replay", str(replay), "--duration", "0.5"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2  # the repeat and the foreign advert are hidden
    assert out[0].endswith(f"{MAC}  -58 dBm  bthome_v2 BTHome: battery=2.0")
    assert out[1].endswith(f"{MAC}  -58 dBm  bthome_v2 BTHome: [button single]")
    assert main([*argv, "--all", "--raw"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert out[0].endswith("battery=2.0  fcd2=4000090102")
    assert out[3].endswith("11:22:33:44:55:66  -90 dBm  (not decoded) tv  ")


def test_overrides_are_shared_with_the_vector_test() -> None:
    assert OVERRIDES  # the CLI test compares against the same documented expectations


def test_sniff_ble_without_a_system_bus_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real bleak, no D-Bus system bus (a host without BlueZ): one clear error, exit 1."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    assert main(["sniff", "ble", "--no-config", "--duration", "10"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    first, hint = captured.err.splitlines()
    assert first.startswith("migw sniff ble: cannot scan on hci0: ")
    assert "D-Bus system bus not reachable" in first
    assert "bluetoothd" in hint and "migw doctor" in hint
