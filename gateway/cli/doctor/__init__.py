"""``migw doctor``: field checks, each pass/warn/fail with a concrete fix hint.

Checks, by area: the config, the service and its API token (:mod:`.service`); the Zigbee
serial port, present, permitted and answering a ZNP ping (:mod:`.zigbee`); the BLE adapter
(present, unblocked, powered) and BlueZ (version, passive scanning) (:mod:`.ble`); gpiochip
access (:mod:`.gpio`); the MQTT broker (TCP, TLS handshake, MQTT login) (:mod:`.broker`);
clock synchronised, disk space for the outbox, state database integrity and the systemd
unit (:mod:`.host`). :mod:`.command` runs them in order (exit code 1 when any check fails;
results stream as each check finishes).
"""

from __future__ import annotations

from gateway.cli.doctor.base import Check, Doctor, DoctorHost, Level
from gateway.cli.doctor.command import CHECKS, doctor, report, run_checks

__all__ = ["CHECKS", "Check", "Doctor", "DoctorHost", "Level", "doctor", "report", "run_checks"]
