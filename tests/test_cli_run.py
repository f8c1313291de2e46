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
