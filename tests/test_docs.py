"""The docs stay true: every config key is documented, every relative link resolves."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway import config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _keys() -> list[str]:
    out = []
    for section in dataclasses.fields(config.Config):
        cls = type(getattr(config.Config(), section.name))
        if cls is dict:  # [devices]: entries keyed by device id
            out += [f"{section.name}.{f.name}" for f in dataclasses.fields(config.DeviceEntry)]
            continue
        if not dataclasses.is_dataclass(cls):  # [[automations]]
            continue  # docs/automations.md
        out += [f"{section.name}.{f.name}" for f in dataclasses.fields(cls)]
    out.remove("gpio.devices")
    out += [f"gpio.devices.{f.name}" for f in dataclasses.fields(config.GpioDevice)]
    return out


@pytest.mark.parametrize("key", _keys())
def test_every_config_key_is_in_the_reference(key: str) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert f"`{key.rsplit('.', 1)[1]}`" in text, f"{key} is not in docs/configuration.md"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_readme_quick_start_is_two_make_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
