"""``python -m gateway`` is ``migw``."""

from gateway.cli import run

run()
