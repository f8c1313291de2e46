"""Shared fixtures: leak checks and real parts (Mosquitto, ptys, MockFactory, SQLite files)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator

import pluggy
import pytest


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves an asyncio task running behind it."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if leaked:
        # give tasks that are just finishing one loop turn
        await asyncio.sleep(0)
        leaked = [t for t in leaked if not t.done()]
    for task in leaked:
        task.cancel()
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"


@pytest.fixture
def mock_pins() -> Iterator[object]:
    """gpiozero's own MockFactory, reset after the test."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    old = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = old


# Hypothesis: no per-example deadline (timings belong in bench/, not in tests).
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("migw", deadline=None, print_blob=True)
_hyp_settings.load_profile("migw")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """In CI (CI=true) a skipped test is a failure: install what it needs instead."""
    outcome = yield
    import os

    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


# A real Mosquitto (sync agent tests): fails in CI when the binary is missing, skips locally.
from tests.broker import mosquitto, tls_mosquitto  # noqa: E402, F401
