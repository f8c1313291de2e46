"""migw drivers: radios, pins and bytes.

This package is written as its own library: it knows BLE adverts, Z-Stack frames and GPIO
pins, never MQTT topics, SQLite or the gateway's config file. It must never import
``gateway``.
"""

from __future__ import annotations

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Log level below DEBUG for raw bytes on the wire.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")
