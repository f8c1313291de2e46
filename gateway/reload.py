"""What a config reload changes: the reloadable keys, the parts each depends on, the result.

:meth:`gateway.service.Service.reload` applies a :class:`ReloadPlan` from :func:`plan`:
parts whose config sections changed are stopped and built again, the others keep running,
and keys in :data:`NOT_RELOADABLE` keep their running values (reported as needing a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace

from gateway.config import Config

#: Config sections (or ``section.key``) each part depends on, by part name; a reload restarts
#: the parts whose sections changed. A part not named here is restarted on any reloadable
#: change except the log level.
RELOAD_SECTIONS: dict[str, tuple[str, ...]] = {
    "gpio": ("gpio",),
    "ble": ("ble",),
    "zigbee": ("zigbee",),
    "api": ("api", "gateway.id"),
    "sync": ("upstream", "homeassistant", "gateway.id"),
    "homeassistant": ("homeassistant", "upstream", "gateway.id"),
    # follows the service's config itself (a reload keeps its timers): never restarted
    "automations": (),
}
#: Reloadable config keys (a whole section or ``section.key``).
RELOADABLE: tuple[str, ...] = (
    "gateway.id",
    "gateway.log_level",
    # read by ingest at each new device: applied at once, nothing restarted
    "gateway.max_devices",
    "api",
    "upstream",
    "homeassistant",
    "ble",
    "zigbee",
    "gpio",
    # applied by the running automations component itself (it keeps its timers)
    "automations",
    "presence",
    "location",
)
#: Keys a reload keeps at their running values: they need a restart.
NOT_RELOADABLE: tuple[str, ...] = ("gateway.state_dir", "store")
LOG_LEVEL = "gateway.log_level"


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    #: The config to run: the new one with the :data:`NOT_RELOADABLE` keys kept as they were.
    config: Config
    changed: frozenset[str]
    needs_restart: tuple[str, ...]

    @property
    def restarts_parts(self) -> bool:
        """Whether anything beyond the log level changed."""
        return bool(self.changed - {LOG_LEVEL})

    def affects(self, name: str) -> bool:
        """Whether the part named ``name`` depends on a change."""
        return bool(self.changed & frozenset(sections_of(name)))


def plan(old: Config, new: Config) -> ReloadPlan:
    needs_restart = tuple(k for k in NOT_RELOADABLE if _value(old, k) != _value(new, k))
    for key in needs_restart:
        new = _with_value(new, key, _value(old, key))
    changed = frozenset(k for k in RELOADABLE if _value(old, k) != _value(new, k))
    return ReloadPlan(new, changed, needs_restart)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    changed: tuple[str, ...]
    restarted: tuple[str, ...]
    failed: tuple[str, ...]
    needs_restart: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"changed: {', '.join(self.changed) or 'nothing'}"]
        if self.restarted:
            parts.append(f"restarted: {', '.join(self.restarted)}")
        if self.failed:
            parts.append(f"failed to restart: {', '.join(self.failed)}")
        if self.needs_restart:
            parts.append(f"needs a service restart: {', '.join(self.needs_restart)}")
        return "; ".join(parts)


def sections_of(name: str) -> tuple[str, ...]:
    if name in RELOAD_SECTIONS:
        return RELOAD_SECTIONS[name]
    return tuple(k for k in RELOADABLE if k != LOG_LEVEL)


def _value(cfg: Config, key: str) -> object:
    section, _, attr = key.partition(".")
    value = getattr(cfg, section)
    return getattr(value, attr) if attr else value


def _with_value(cfg: Config, key: str, value: object) -> Config:
    section, _, attr = key.partition(".")
    if attr:
        value = dataclass_replace(getattr(cfg, section), **{attr: value})
    return cfg.replace(**{section: value})
