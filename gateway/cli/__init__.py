"""The ``migw`` command line: one help tree for the service, the technician and scripts.

Every command is reachable through :func:`main` (``main(argv) -> int``) so tests run it
in-process. Command modules register themselves on the groups in :mod:`gateway.cli.base`,
which imports each module when its command is first resolved
(:class:`~gateway.cli.base.LazyGroup`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from gateway.cli.base import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (without the program name); return the exit code."""
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None, prog_name="migw", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    return int(rv) if isinstance(rv, int) else 0


def run() -> None:  # pragma: no cover - console_scripts entry point
    sys.exit(main())
