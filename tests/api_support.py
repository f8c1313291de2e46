"""Shared by the API and CLI tests: a real Service (GPIO on gpiozero's MockFactory) with
the real LAN API on a loopback port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.gpio import GpioDriver
from gateway.api.server import ApiServer
from gateway.api.timing import ApiTiming
from gateway.api.token import read_token
from gateway.config import Config, PresenceSection
from gateway.demo import DEMO_GPIO, demo_config
from gateway.driver import Driver
from gateway.service import Service, ServiceTiming


@dataclass
class Running:
    service: Service
    server: ApiServer
    port: int
    token: str
    state_dir: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def cli_args(self) -> list[str]:
        return ["--state-dir", str(self.state_dir), "--api-port", str(self.port)]


def make_config(state_dir: Path, upstream: str = "", **api: Any) -> Config:
    import dataclasses

    cfg = demo_config(Config(), state_dir, 0)
    # without the demo's automations and phone (their device and part are counted here)
    cfg = cfg.replace(automations=(), presence=PresenceSection())
    if api:
        cfg = cfg.replace(api=dataclasses.replace(cfg.api, **api))
    if upstream:
        cfg = cfg.replace(upstream=dataclasses.replace(cfg.upstream, url=upstream))
    return cfg


def api_timing(request: pytest.FixtureRequest) -> ServiceTiming | None:
    """The timing of a test that parametrizes its ``api`` fixture (:func:`with_limits`);
    None: the defaults."""
    limits: ApiTiming | None = getattr(request, "param", None)
    return ServiceTiming(api=limits) if limits is not None else None


def with_limits(**limits: Any) -> pytest.MarkDecorator:
    """Run the test's ``api`` fixture with these :class:`ApiTiming` numbers."""
    return pytest.mark.parametrize("api", [ApiTiming(**limits)], indirect=True, ids=["limits"])


@contextlib.asynccontextmanager
async def running(
    state_dir: Path,
    pins: Any,
    extra_drivers: Sequence[Driver] = (),
    timing: ServiceTiming | None = None,
    upstream: str = "",
    **api: Any,
) -> AsyncIterator[Running]:
    cfg = make_config(state_dir, upstream, **api)
    driver = GpioDriver(DEMO_GPIO, pin_factory=pins)
    async with Service(cfg, drivers=[driver, *extra_drivers], timing=timing) as svc:
        server = svc.api
        assert isinstance(server, ApiServer)
        await asyncio.wait_for(server.listening.wait(), 10)
        assert svc.store is not None
        # the GPIO devices are registered on the first commit
        for _ in range(200):
            await svc.store.flush()
            if len(await svc.store.devices()) == len(DEMO_GPIO):
                break
            await asyncio.sleep(0.02)
        token = read_token(state_dir)
        assert token is not None and server.port is not None
        yield Running(svc, server, server.port, token, state_dir)
