"""Subprocess for the sync crash test: the real Service with a synthetic driver and the sync
agent, ingesting and syncing until SIGKILLed.

``python -m tests.sync_gateway_proc STATE_DIR URL [--drain]``: with ``--drain`` it produces
nothing, waits until the outbox is empty, stops cleanly and exits 0.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.service import Service
from gateway.sync import SyncAgent
from tests.broker import gateway_config
from tests.synth import SynthDriver


async def main(state_dir: Path, url: str, drain: bool) -> int:
    synth = SynthDriver(devices=5, rate=0 if drain else 600)
    cfg = gateway_config(state_dir, url, drain_rate=20000)
    async with Service(cfg, drivers=[synth]) as svc:
        agent = next(c for c in svc.components if c.name == "sync")
        assert isinstance(agent, SyncAgent)
        print("ready", flush=True)
        if not drain:
            await svc.wait()
            return 0
        async with asyncio.timeout(60):
            while True:
                s = agent.stats()
                if s["state"] == "connected" and s["outbox"]["rows"] == 0 and s["rows_acked"] >= 0:
                    await asyncio.sleep(0.3)
                    if agent.stats()["outbox"]["rows"] == 0:
                        break
                await asyncio.sleep(0.1)
        print(f"drained {agent.stats()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), sys.argv[2], "--drain" in sys.argv)))
