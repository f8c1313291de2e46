"""The sync agent: batched MQTT uplink with a durable store-and-forward outbox.

The service's composition root builds the agent (``gateway.service.Service.sync``) from
``(config, store, clock, router)``; it offers ``health()``, ``stats()`` (a plain dict for the
LAN API and CLI) and ``dead_letters()``. See docs/mqtt.md and gateway/sync/agent.py for the
module map.
"""

from __future__ import annotations

from gateway.sync.agent import SyncAgent
from gateway.sync.timing import SyncTiming

__all__ = ["SyncAgent", "SyncTiming"]
