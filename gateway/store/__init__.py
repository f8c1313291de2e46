"""The local state cache and telemetry outbox: one SQLite file through aiosqlite.

Modules by responsibility:

- :mod:`~gateway.store.schema`: tables, migrations, connection settings, ``meta``;
- :mod:`~gateway.store.writer`: :class:`Store`, batched durable commits and sequence
  numbers (the durability contract is written there), with :mod:`~gateway.store.pending`
  (the pending queue and its bounds), :mod:`~gateway.store.rows` (what a commit writes,
  the numbers of series and boot ids), :mod:`~gateway.store.limits` (bounds, timings) and
  :mod:`~gateway.store.txn` (write transactions);
- :mod:`~gateway.store.reader`: queries, and the read-only view for the CLI;
- :mod:`~gateway.store.outbox`: every statement on the outbox and dead-letter tables, the
  row encoding and its size (the sync agent keeps only the policy), with
  :mod:`~gateway.store.delivered` (which readings are in the outbox: its watermark);
- :mod:`~gateway.store.devices`, :mod:`~gateway.store.codec`: the devices table, values;
- :mod:`~gateway.store.files`: corrupt-file handling and the sequence reservation file;
- :mod:`~gateway.store.sql`: the one WHERE-clause builder of the queries.
"""

from __future__ import annotations

from gateway.store.outbox import (
    OUTBOX_EVENT,
    OUTBOX_READING,
    OutboxRow,
    OutboxStats,
    event_body,
    reading_body,
)
from gateway.store.reader import StateReader, open_readonly
from gateway.store.schema import APPLICATION_ID, SCHEMA_VERSION
from gateway.store.writer import Commit, CommitListener, Store, StoreCounters, StoreLimits

__all__ = [
    "APPLICATION_ID",
    "OUTBOX_EVENT",
    "OUTBOX_READING",
    "SCHEMA_VERSION",
    "Commit",
    "CommitListener",
    "OutboxRow",
    "OutboxStats",
    "StateReader",
    "Store",
    "StoreCounters",
    "StoreLimits",
    "event_body",
    "open_readonly",
    "reading_body",
]
