"""The ``migw`` command line: one help tree for the service, the technician and scripts.

Every command is reachable through :func:`main` (``main(argv) -> int``) so tests run it
in-process. Command modules register themselves on the groups in :mod:`gateway.cli.base`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from gateway.cli.base import cli

# Command modules: importing one registers its commands on the groups of gateway.cli.base.
from gateway.cli import run_cmd as _run_cmd  # noqa: F401  # isort: skip
from gateway.cli import config_cmd as _config_cmd  # noqa: F401  # isort: skip
from gateway.cli import status as _status  # noqa: F401  # isort: skip
from gateway.cli import devices as _devices  # noqa: F401  # isort: skip
from gateway.cli import tail as _tail  # noqa: F401  # isort: skip
from gateway.cli import control as _control  # noqa: F401  # isort: skip
from gateway.cli import token_cmd as _token_cmd  # noqa: F401  # isort: skip
from gateway.cli import names as _names  # noqa: F401  # isort: skip
from gateway.cli import ble_keys as _ble_keys  # noqa: F401  # isort: skip
from gateway.cli import doctor as _doctor  # noqa: F401  # isort: skip
from gateway.cli import ble as _ble  # noqa: F401  # isort: skip
from gateway.cli import zigbee as _zigbee  # noqa: F401  # isort: skip
from gateway.cli import automations as _automations  # noqa: F401  # isort: skip


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
