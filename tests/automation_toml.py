"""TOML pieces the automation tests share."""

from __future__ import annotations


def on_wait_off(device: str, seconds: float | str) -> str:
    """The ``[[automations.actions]]`` of "switch ``device`` on, wait, switch it off"."""
    return f"""
        [[automations.actions]]
        type = "command"
        device = "{device}"
        command = "on"
        [[automations.actions]]
        type = "delay"
        seconds = {seconds}
        [[automations.actions]]
        type = "command"
        device = "{device}"
        command = "off"
    """
