"""config.example.toml: it loads, it shows the defaults, and it documents every key."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from gateway.config import Config, GpioDevice, GpioKind, GpioSection, load, loads

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def _section_text(text: str, section: str) -> str:
    """The lines from ``[section]`` up to the next table that is not a sub-table of it."""
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    out: list[str] = []
    for line in lines[start + 1 :]:
        m = re.fullmatch(r"\[\[?([^\]]+)\]\]?", line)
        if m and not m.group(1).startswith(f"{section}."):
            break
        out.append(line)
    return "\n".join(out)


def _mentions(text: str, key: str, section: str) -> bool:
    return bool(
        re.search(rf"^(# )?{re.escape(key)} = ", text, re.MULTILINE) or f"[{section}.{key}]" in text
    )


def test_example_loads_and_holds_the_defaults() -> None:
    assert load(EXAMPLE) == Config()


def test_example_documents_every_section_and_key() -> None:
    text = EXAMPLE.read_text()
    hints = typing.get_type_hints(Config)
    undocumented: list[str] = []
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        if typing.get_origin(cls) is tuple:  # [[automations]]: an array of tables
            assert f"[[{section.name}]]" in text
            continue
        body = _section_text(text, section.name)
        if typing.get_origin(cls) is dict:  # [devices]: entries keyed by id
            entry = typing.get_args(cls)[1]
            undocumented += [
                f"{section.name}.*.{f.name}"
                for f in dataclasses.fields(entry)
                if not re.search(rf"\b{f.name} = ", body)
            ]
            continue
        undocumented += [
            f"{section.name}.{f.name}"
            for f in dataclasses.fields(cls)
            if not _mentions(body, f.name, section.name)
        ]
    gpio = _section_text(text, "gpio")
    undocumented += [
        f"gpio.devices[].{f.name}"
        for f in dataclasses.fields(GpioDevice)
        if not re.search(rf"^# {f.name} = ", gpio, re.MULTILINE)
    ]
    assert undocumented == []


def test_commented_gpio_sample_is_valid() -> None:
    text = EXAMPLE.read_text()
    head, sample = text.split("# Uncomment and adapt", 1)
    uncommented = "\n".join(
        line.removeprefix("# ").removeprefix("#")
        for line in sample.splitlines()[1:]
        if line.startswith("#")
    )
    cfg = loads(head.replace("devices = []\n", "") + uncommented)
    assert cfg.gpio == GpioSection(
        devices=(
            GpioDevice(
                name="hall-button",
                kind=GpioKind.BUTTON,
                pin=17,
                pull_up=True,
                active_high=False,
                bounce_s=0.05,
                hold_s=1.0,
                multi_press_s=0.4,
            ),
            GpioDevice(name="front-door", kind=GpioKind.CONTACT, pin=27, pull_up=True),
            GpioDevice(name="hall-pir", kind=GpioKind.MOTION, pin=22, clear_s=60.0),
            GpioDevice(name="hall-relay", kind=GpioKind.RELAY, pin=23, initial=False),
            GpioDevice(name="status-led", kind=GpioKind.LED, pin=24),
        )
    )
