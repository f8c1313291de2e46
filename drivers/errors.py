"""The exception root of the drivers library, classified by what the caller should do."""

from __future__ import annotations


class DriverError(Exception):
    """Root of every exception the drivers library raises on purpose."""


class TransientError(DriverError):
    """A fault that may go away: retry with backoff (adapter busy, port vanished, timeout)."""


class NeedsHumanError(DriverError):
    """A fault no retry fixes: bad configuration, missing permission, wrong key, dead NVRAM."""


class ProtocolError(DriverError):
    """The peer sent something we cannot understand (or we have a bug)."""


class ParseError(ProtocolError):
    """Untrusted bytes could not be decoded. The only exception a codec may raise."""
