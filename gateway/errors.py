"""The gateway's exception root, classified by what the caller should do."""

from __future__ import annotations

from drivers import errors as _driver_errors


class GatewayError(Exception):
    """Root of every exception the gateway raises on purpose."""


class TransientError(GatewayError, _driver_errors.TransientError):
    """Retry with backoff."""


class NeedsHumanError(GatewayError, _driver_errors.NeedsHumanError):
    """Configuration, permission or data problems a person must fix; surfaced in API/CLI."""


class ConfigError(NeedsHumanError):
    """The configuration is invalid. ``str()`` names the key path and, when known, the line."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = path
        if line is not None:
            where = f"{path} (line {line})" if path else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)


class StoreError(GatewayError):
    """The state database cannot be used."""


class StoreCorruptError(StoreError, NeedsHumanError):
    """The state database is corrupt or foreign; it was moved aside, never overwritten."""
