"""systemd integration: the notify protocol, a health-gated watchdog and reload on SIGHUP.

Standard library only (no python-systemd, no libsystemd): the protocol is one datagram per
message to the AF_UNIX socket named by ``NOTIFY_SOCKET`` (``@name`` is an abstract socket).
Everything is a no-op when ``NOTIFY_SOCKET`` is unset, so ``migw run`` behaves the same in a
terminal.

* ``READY=1`` once the store is open, every task is started and every part that exposes an
  ``asyncio.Event`` named ``ready`` or ``listening`` (the LAN API) has set it, or after
  :data:`~.integration.READY_TIMEOUT_S` with the late parts reported as degraded.
* ``STATUS=`` one line (health, radios, sequence, backlog), sent when it changes.
* ``WATCHDOG=1`` every half ``WATCHDOG_USEC``, only while the process makes progress: the
  event loop lagged less than :data:`~.health.LAG_THRESHOLD_S` during the whole interval,
  store writes succeed (no failing commit, no rows stuck without a commit for
  :data:`~.health.STORE_STALL_S`) and the supervised radio/component tasks are alive. A
  degraded radio (adapter unplugged) is alive: it is reported, not restarted. A withheld
  ping is explained in ``STATUS=``.
* ``STOPPING=1`` as soon as SIGTERM/SIGINT arrives.
* SIGHUP: ``RELOADING=1``, load and validate the config again, hand it to
  :meth:`gateway.service.Service.reload`, then ``READY=1``. An invalid config is rejected
  with the old one kept (logged and shown in ``STATUS=``).

Modules: :mod:`.notify` (the datagram protocol and ``WATCHDOG_USEC``), :mod:`.health`
(what withholds a ping, the ``STATUS=`` line), :mod:`.integration` (the task that
runs beside the service: ready, watchdog, status, reload).
"""

from __future__ import annotations

from gateway.systemd.integration import ReloadOutcome, SystemdIntegration
from gateway.systemd.notify import Notifier, watchdog_interval

__all__ = ["Notifier", "ReloadOutcome", "SystemdIntegration", "watchdog_interval"]
