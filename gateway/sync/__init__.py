"""The sync agent: batched MQTT uplink with a durable store-and-forward outbox.

The service's composition root builds the agent (``gateway.service.Service.sync``);
the component is found as ``service.components`` entry named ``"sync"`` and offers
``stats()`` (a plain dict for the LAN API and CLI). See docs/mqtt.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.sync.agent import SyncAgent

if TYPE_CHECKING:
    from gateway.service import Service

__all__ = ["SyncAgent", "create"]


def create(service: Service) -> SyncAgent:
    """Always a component: without an upstream URL it still bounds the outbox (bytes, TTL)
    and serves Home Assistant when a separate broker is configured."""
    return SyncAgent(service)
