"""``migw run`` refuses bad input with one line and the documented exit code (docs/api.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

EXIT_CONFIG = 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo", "--upstream: upstream.url: must look like mqtt://host:1883"),
        ("http://broker:1883", "--upstream: upstream.url: must look like mqtt://host:1883"),
        ("mqtt://broker:1883/topic", "--upstream: upstream.url: must look like"),
        ("mqtt://broker:99999", "--upstream: upstream.url: must look like"),
        ("mqtt://broker:0", "--upstream: upstream.url: must look like"),
        ("mqtt://user:hunter2@broker:1883", "--upstream: takes no user name or password"),
        ("mqtts://:hunter2@broker", "--upstream: takes no user name or password"),
    ],
)
def test_bad_upstream_is_one_line_and_a_config_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, expected: str
) -> None:
    code = main(["run", "--demo", "--state-dir", str(tmp_path), "--upstream", url])
    out, err = capsys.readouterr()
    assert code == EXIT_CONFIG
    assert out == ""
    assert err.startswith("migw: ") and expected in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert "hunter2" not in err  # a password in the URL is never echoed
    assert not (tmp_path / "state.db").exists()  # nothing started


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rate", "-1"], "Invalid value for '--rate'"),
        (["--rate", "nan"], "Invalid value for '--rate'"),
        (["--ble-devices", "x"], "Invalid value for '--ble-devices'"),
        (["--ble-devices", "-3"], "Invalid value for '--ble-devices'"),
        (["--api-port", "70000"], "Invalid value for '--api-port'"),
        (["--log-level", "LOUD"], "Invalid value for '--log-level'"),
        (["--no-such-option"], "No such option '--no-such-option'"),
    ],
)
def test_bad_run_options_are_usage_errors(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code = main(["run", "--demo", "--state-dir", str(tmp_path), *args])
    _, err = capfd.readouterr()
    assert code == EXIT_CONFIG
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "state.db").exists()


def test_an_unusable_state_dir_is_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", "--demo", "--state-dir", str(blocker / "state")])
    _, err = capfd.readouterr()
    assert code == EXIT_CONFIG
    assert f"migw cannot run: cannot use state directory {blocker / 'state'}" in err
    assert "Traceback" not in err
