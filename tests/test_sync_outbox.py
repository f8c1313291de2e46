"""Outbox bounds (bytes under each strategy, TTL), re-stamping, and poison messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Config
from gateway.model import Event, Reading, Stamp
from gateway.service import Service, ServiceTiming
from gateway.store import Store
from gateway.sync import SyncAgent, SyncTiming
from gateway.sync.outbox import Outbox, OutboxLimits, Strategy
from tests.broker import Collector, Mosquitto, free_port, gateway_config, start_broker

BOOT = "00000000-0000-0000-0000-0000000000aa"
OTHER_BOOT = "00000000-0000-0000-0000-0000000000bb"
TELEMETRY = "migw/testgw/telemetry"


@dataclass
class FakeClock:
    """The Clock protocol with a settable offset and "synchronised" flag."""

    offset: float = 1_800_000_000.0
    synced: bool = True
    boot: str = BOOT

    def wall(self) -> float:
        return self.offset + time.monotonic()

    def mono(self) -> float:
        return time.monotonic()

    def synchronized(self) -> bool:
        return self.synced

    @property
    def boot_id(self) -> str:
        return self.boot


def _stamp(wall: float, mono: float = 1.0, synced: bool = True, boot: str = BOOT) -> Stamp:
    return Stamp(wall=wall, mono=mono, boot=boot, synced=synced)


def _reading(device: str, metric: str, value: float | bool | str, stamp: Stamp) -> Reading:
    unit = "°C" if metric == "temperature" else None
    return Reading(device, metric, value, unit, stamp, "test")


def _agent(svc: Service) -> SyncAgent:
    agent = next(c for c in svc.components if c.name == "sync")
    assert isinstance(agent, SyncAgent)
    return agent


#: Quick upkeep passes and connects; _BYE also a short goodbye at each session end.
_FAST = ServiceTiming(sync=SyncTiming(maintain_s=0.05, ttl_check_s=0.05, connect_timeout_s=2.0))
_BYE = ServiceTiming(sync=replace(_FAST.sync, goodbye_s=0.1))


@contextlib.asynccontextmanager
async def _running(
    cfg: Config, clock: FakeClock, timing: ServiceTiming
) -> AsyncIterator[tuple[Store, SyncAgent]]:
    """The service without drivers: its store and sync agent."""
    async with Service(cfg, drivers=[], clock=clock, timing=timing) as svc:
        store = svc.store
        assert store is not None
        yield store, _agent(svc)


async def _wait(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def _rows(store: Store) -> list[tuple[int, str]]:
    """(seq, device) of every outbox row."""
    rows = await Outbox(store).fetch(0, 1_000_000)
    return [(r.seq, r.device_id) for r in rows]


def _fill(store: Store, clock: FakeClock) -> None:
    """300 periodic readings, with 10 door readings and 10 button events among them."""
    for i in range(300):
        now = clock.wall()
        store.add_reading(_reading("t", "temperature", float(i), _stamp(now)))
        if i % 30 == 0:
            store.add_reading(_reading("door", "opening", i % 60 == 0, _stamp(now)))
            store.add_event(Event("btn", "button", "single", _stamp(now), "test"))


@pytest.mark.parametrize("strategy", ["drop_oldest", "reject_new"])
async def test_outbox_full_keeps_events_and_drops_by_strategy(
    tmp_path: Path, strategy: Strategy
) -> None:
    clock = FakeClock()
    # no broker on this port: everything stays in the outbox
    cfg = gateway_config(
        tmp_path / "state",
        f"mqtt://127.0.0.1:{free_port()}",
        outbox_max_bytes=20_000,
        outbox_full=strategy,
    )
    async with _running(cfg, clock, _FAST) as (store, agent):
        _fill(store, clock)
        await store.flush()
        all_rows = await _rows(store)
        await _wait(lambda: agent.stats()["dropped"] > 0)
        await _wait(lambda: agent.stats()["outbox"]["bytes"] <= 20_000)
        kept = await _rows(store)
        stats = agent.stats()
    kept_seqs = {s for s, _ in kept}
    # every event and every door reading survived; only periodic readings were dropped
    for seq, device in all_rows:
        if device in ("door", "btn"):
            assert seq in kept_seqs
    dropped = [s for s, d in all_rows if s not in kept_seqs]
    assert dropped and all(d == "t" for s, d in all_rows if s in dropped)
    temps = [s for s, d in all_rows if d == "t"]
    kept_temps = [s for s in temps if s in kept_seqs]
    if strategy == "drop_oldest":
        assert kept_temps == temps[-len(kept_temps) :]  # the newest survive
    else:
        assert kept_temps == temps[: len(kept_temps)]  # the oldest survive
    assert stats["dropped"] == len(dropped)
    assert stats["outbox"]["full_strategy"] == strategy
    # the counter is persisted
    async with Service(cfg, drivers=[], clock=clock, timing=_FAST) as svc:
        await _wait(lambda: _agent(svc).stats()["outbox"]["rows"] == len(kept))
        assert _agent(svc).stats()["dropped"] == len(dropped)


async def test_ttl_expires_old_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = gateway_config(tmp_path / "state", f"mqtt://127.0.0.1:{free_port()}", outbox_ttl_days=1.0)
    async with _running(cfg, clock, _FAST) as (store, agent):
        now = clock.wall()
        for i in range(20):
            store.add_reading(_reading("old", "temperature", float(i), _stamp(now - 2 * 86400)))
        for i in range(5):
            store.add_reading(_reading("new", "temperature", float(i), _stamp(now - 3600)))
        await store.flush()
        await _wait(lambda: agent.stats()["expired"] == 20)
        assert {d for _, d in await _rows(store)} == {"new"}
        assert len(await _rows(store)) == 5


async def test_rows_stamped_before_clock_sync_are_restamped(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = FakeClock(synced=False)
    cfg = gateway_config(tmp_path / "state", mosquitto.url)
    async with (
        Collector(mosquitto.port, [TELEMETRY]) as col,
        _running(cfg, clock, _FAST) as (store, _),
    ):
        # a Pi without RTC: wall clock in 1970, mono since boot
        store.add_reading(_reading("a", "temperature", 1.0, _stamp(100.0, 50.0, False)))
        store.add_reading(_reading("b", "temperature", 2.0, _stamp(200.0, 60.0, False, OTHER_BOOT)))
        await col.wait_for(lambda: len(col.seqs(TELEMETRY)) == 2)
        first = {r["device"]: r for b in col.batches(TELEMETRY) for r in b.readings}
        assert first["a"]["ts"] == 100.0 and first["a"]["clock"] == "unsynced"
        clock.synced = True
        store.add_reading(_reading("c", "temperature", 3.0, _stamp(300.0, 70.0, False)))
        await col.wait_for(lambda: len(col.seqs(TELEMETRY)) == 3)
    by_dev = {r["device"]: r for b in col.batches(TELEMETRY) for r in b.readings}
    assert by_dev["c"] == {
        "seq": 3,
        "device": "c",
        "metric": "temperature",
        "value": 3.0,
        "unit": "°C",
        "ts": pytest.approx(clock.offset + 70.0, abs=0.01),
        "boot": BOOT,
        "mono": 70.0,
    }
    assert by_dev["b"]["clock"] == "unsynced"  # another boot: cannot be corrected


async def test_restamp_rewrites_the_outbox_once_synchronised(tmp_path: Path) -> None:
    clock = FakeClock(synced=False)
    cfg = gateway_config(tmp_path / "state", f"mqtt://127.0.0.1:{free_port()}")
    async with _running(cfg, clock, _FAST) as (store, _):
        store.add_reading(_reading("a", "temperature", 1.0, _stamp(100.0, 50.0, False)))
        store.add_reading(_reading("b", "temperature", 2.0, _stamp(200.0, 60.0, False, OTHER_BOOT)))
        await store.flush()
        clock.synced = True

        async def ts() -> dict[str, tuple[float, bool]]:
            return {r.device_id: (r.ts, r.synced) for r in await Outbox(store).fetch(0, 10)}

        async with asyncio.timeout(10):
            while (await ts())["a"][1] is False:
                await asyncio.sleep(0.05)
        assert await ts() == {
            "a": (pytest.approx(clock.offset + 50.0, abs=0.01), True),
            "b": (200.0, False),
        }


async def _all_but_one_big(
    store: Store,
    agent: SyncAgent,
    col: Collector,
    clock: FakeClock,
    n: int,
    after: int,
    big: str,
    arrive_s: float,
    empty_s: float,
) -> int:
    """``n`` periodic readings with one ``big`` label after the ``after``-th; waits until
    every other reading arrived and the outbox is empty. Returns the last seq."""
    for i in range(n):
        store.add_reading(_reading("t", "temperature", float(i), _stamp(clock.wall())))
        if i == after:
            store.add_reading(_reading("big", "label", big, _stamp(clock.wall())))
    await store.flush()
    last = store.last_seq
    await col.wait_for(lambda: len(set(col.seqs(TELEMETRY))) == last - 1, arrive_s)
    await _wait(lambda: agent.stats()["outbox"]["rows"] == 0, empty_s)
    return last


async def test_oversized_reading_is_dead_lettered_and_the_rest_flows(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker", extra="max_packet_size 4096")
    try:
        clock = FakeClock()
        cfg = gateway_config(tmp_path / "state", broker.url)
        async with (
            Collector(broker.port, [TELEMETRY]) as col,
            _running(cfg, clock, _FAST) as (store, agent),
        ):
            last = await _all_but_one_big(store, agent, col, clock, 200, 50, "x" * 6000, 30, 20)
            stats = agent.stats()
            letters = await agent.dead_letters()
        assert stats["upstream"]["max_packet_size"] == 4096
        assert stats["dead_letters"] == 1
        assert stats["splits"] >= 1
        assert len(letters) == 1
        assert letters[0]["first_seq"] == letters[0]["last_seq"] == 52
        assert "maximum packet size (4096 bytes)" in letters[0]["reason"]
        assert set(col.seqs(TELEMETRY)) == set(range(1, last + 1)) - {52}
    finally:
        broker.stop()


async def test_message_the_broker_drops_the_connection_for_is_dead_lettered(tmp_path: Path) -> None:
    """Mosquitto's message_size_limit is not announced: the broker just disconnects."""
    broker = start_broker(tmp_path / "broker", extra="message_size_limit 3000")
    try:
        clock = FakeClock()
        cfg = gateway_config(tmp_path / "state", broker.url, reconnect_max_s=0.2)
        async with (
            Collector(broker.port, [TELEMETRY]) as col,
            _running(cfg, clock, _BYE) as (store, agent),
        ):
            last = await _all_but_one_big(store, agent, col, clock, 60, 20, "y" * 4000, 60, 30)
            letters = await agent.dead_letters()
        assert [(d["first_seq"], d["last_seq"]) for d in letters] == [(22, 22)]
        assert "connection broke" in letters[0]["reason"]
        assert set(col.seqs(TELEMETRY)) == set(range(1, last + 1)) - {22}
    finally:
        broker.stop()


async def test_broker_acl_refusal_keeps_the_data(tmp_path: Path) -> None:
    """Not authorised (MQTT 5 PUBACK 0x87) is a configuration problem: degrade, keep rows."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite migw/testgw/status\ntopic readwrite migw/testgw/cmd/#\n")
    broker = start_broker(tmp_path / "broker", extra=f"acl_file {acl}")
    try:
        clock = FakeClock()
        cfg = gateway_config(tmp_path / "state", broker.url)
        async with _running(cfg, clock, _FAST) as (store, agent):
            for i in range(10):
                store.add_reading(_reading("t", "temperature", float(i), _stamp(clock.wall())))
            await store.flush()
            await _wait(lambda: agent.stats()["refused"] >= 1)
            await _wait(lambda: agent.stats()["upstream"]["state"] == "failed")
            assert "ACL" in agent.health().reason
            assert agent.stats()["dead_letters"] == 0
            assert len(await _rows(store)) == 10
    finally:
        broker.stop()


async def test_without_an_upstream_the_outbox_is_still_bounded(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = gateway_config(tmp_path / "state", "", outbox_max_bytes=5_000)
    async with _running(cfg, clock, _FAST) as (store, agent):
        for i in range(200):
            store.add_reading(_reading("t", "temperature", float(i), _stamp(clock.wall())))
        await store.flush()
        await _wait(lambda: agent.stats()["dropped"] > 0)
        stats = agent.stats()
        assert stats["state"] == "disabled"
        assert stats["upstream"] is None
        assert agent.health().health.value == "ok"
        assert agent.health().info == {"upstream": "disabled"}


rows_strategy = st.lists(
    st.tuples(st.sampled_from(["temperature", "opening", "event"]), st.integers(0, 200)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=25)
@given(rows_strategy, st.integers(200, 6000), st.sampled_from(["drop_oldest", "reject_new"]))
def test_enforcement_property(
    tmp_path_factory: pytest.TempPathFactory,
    items: list[tuple[str, int]],
    limit: int,
    strategy: Strategy,
) -> None:
    """Under the bound afterwards; a priority row goes only when no periodic row is left;
    periodic rows go oldest first (drop_oldest) or newest first (reject_new)."""

    async def scenario() -> None:
        store = await Store.open(tmp_path_factory.mktemp("enf") / "state.db")
        try:
            now = time.time()
            for kind, pad in items:
                if kind == "event":
                    store.add_event(
                        Event("b" * (pad // 10 + 1), "button", "single", _stamp(now), "t")
                    )
                else:
                    value: float | bool = True if kind == "opening" else float(pad)
                    store.add_reading(_reading("d" * (pad // 10 + 1), kind, value, _stamp(now)))
            await store.flush()
            outbox = Outbox(store)
            before = await outbox.fetch(0, 1000)
            await outbox.enforce_bytes(limit, strategy)
            after = await outbox.fetch(0, 1000)
        finally:
            await store.close()
        kept = {r.seq for r in after}
        total = sum(r.size for r in after)
        assert total <= limit or not after
        periodic = [r.seq for r in before if r.kind == 0 and "temperature" in r.body]
        priority_dropped = [r for r in before if r.seq not in kept and r.seq not in periodic]
        if priority_dropped:
            assert not [s for s in periodic if s in kept]
        dropped_periodic = [s for s in periodic if s not in kept]
        kept_periodic = [s for s in periodic if s in kept]
        if dropped_periodic and kept_periodic:
            if strategy == "drop_oldest":
                assert max(dropped_periodic) < min(kept_periodic)
            else:
                assert min(dropped_periodic) > max(kept_periodic)

    asyncio.run(scenario())


async def test_a_store_failure_after_the_caller_was_cancelled_is_handled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A shielded outbox statement outlives its cancelled caller (the maintenance loop at a
    stop); when it then fails (the database is locked by another process), the failure is
    logged and counted, not left as "Task exception was never retrieved"."""
    import gc
    import sqlite3

    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    store = await Store.open(tmp_path / "state.db")
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        outbox = Outbox(store)
        caller = asyncio.create_task(outbox.oldest())
        await asyncio.sleep(0.2)  # waiting for the lock inside SQLite
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        mine = asyncio.all_tasks() - {asyncio.current_task()}
        mine = {t for t in mine if t.get_name() != "store-writer"}
        for _ in range(1000):  # the statement gives up after SQLite's busy timeout
            others = {t for t in mine if not t.done()}
            if not others:
                break
            await asyncio.sleep(0.02)
        assert not others
        del mine, others
        gc.collect()
        await asyncio.sleep(0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        loop.set_exception_handler(None)
        await store.close()
    assert unhandled == []
    assert outbox.late_failures == 1
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.sync.outbox"] == [
        "outbox oldest failed after its caller was cancelled: OperationalError: database is locked"
    ]


async def test_acl_refusal_with_batches_in_flight_never_dead_letters(tmp_path: Path) -> None:
    """A refusal that is not about the message (ACL) is no strike against the batches in
    flight: after many refused sessions every row is still in the outbox."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite migw/testgw/status\ntopic readwrite migw/testgw/cmd/#\n")
    broker = start_broker(tmp_path / "broker", extra=f"acl_file {acl}")
    try:
        clock = FakeClock()
        cfg = gateway_config(
            tmp_path / "state", broker.url, batch_max_readings=5, reconnect_max_s=0.2
        )
        async with _running(cfg, clock, _BYE) as (store, agent):
            for i in range(100):
                store.add_reading(_reading("t", "temperature", float(i), _stamp(clock.wall())))
            await store.flush()
            # enough refused sessions for POISON_STRIKES after the halvings
            await _wait(lambda: agent.stats()["upstream"]["connects"] >= 8, 60)
            await _wait(lambda: agent.stats()["refused"] >= 8, 60)
            assert agent.stats()["dead_letters"] == 0
            assert [s for s, _ in await _rows(store)] == list(range(1, 101))
    finally:
        broker.stop()


async def test_an_ended_session_leaves_no_batch_in_flight(tmp_path: Path) -> None:
    """The batches of a session that broke are no longer "in flight" once it has ended: a
    next session that breaks before its pump starts must not strike against them."""
    broker = start_broker(tmp_path / "broker", extra="message_size_limit 3000")
    try:
        clock = FakeClock()
        cfg = gateway_config(
            tmp_path / "state", broker.url, reconnect_min_s=60.0, reconnect_max_s=120.0
        )
        async with _running(cfg, clock, _BYE) as (store, agent):
            store.add_reading(_reading("big", "label", "y" * 4000, _stamp(clock.wall())))
            await store.flush()
            await _wait(lambda: agent.stats()["upstream"]["state"] == "backoff")
            assert agent.stats()["upstream"]["connects"] == 1
            assert agent.stats()["batches_sent"] == 1
            assert agent.in_flight == 0
    finally:
        broker.stop()


@pytest.mark.parametrize("metric", ["opening_1", "water_leak_2"])
async def test_numbered_state_change_readings_are_sent_at_once(
    tmp_path: Path, mosquitto: Mosquitto, metric: str
) -> None:
    """A repeated object (``opening_1``) is a state change like ``opening``: it does not wait
    for ``batch_max_ms``."""
    clock = FakeClock()
    cfg = gateway_config(
        tmp_path / "state", mosquitto.url, batch_max_ms=600_000, batch_max_readings=1000
    )
    async with (
        Collector(mosquitto.port, [TELEMETRY]) as col,
        _running(cfg, clock, _FAST) as (store, agent),
    ):
        # the pump has started: rows from now on are live
        await _wait(lambda: agent.pumping)
        store.add_reading(_reading("door", metric, True, _stamp(clock.wall())))
        await store.flush()
        seq = store.last_seq
        await col.wait_for(lambda: seq in col.seqs(TELEMETRY), 20)
        [batch] = col.batches(TELEMETRY)
        assert [(r["seq"], r["metric"], r["value"]) for r in batch.readings] == [
            (seq, metric, True)
        ]


async def test_ttl_scan_goes_past_rows_with_an_untrusted_stamp(tmp_path: Path) -> None:
    """Rows stamped before NTP in an earlier boot never expire; many of them at the head of
    the outbox must not hide the trusted rows behind them from the TTL (the scan is bounded
    per pass and resumes at the next)."""
    small = OutboxLimits(scan_chunk=50, expire_scan_chunks=2)
    timing = replace(_FAST, sync=replace(_FAST.sync, outbox=small))
    clock = FakeClock()
    cfg = gateway_config(tmp_path / "state", f"mqtt://127.0.0.1:{free_port()}", outbox_ttl_days=1.0)
    async with _running(cfg, clock, timing) as (store, agent):
        old = clock.wall() - 2 * 86400
        for i in range(230):
            stamp = _stamp(old, synced=False, boot=OTHER_BOOT)
            store.add_reading(_reading("untrusted", "temperature", float(i), stamp))
        for i in range(20):
            store.add_reading(_reading("old", "temperature", float(i), _stamp(old)))
        for i in range(5):
            store.add_reading(_reading("new", "temperature", float(i), _stamp(clock.wall())))
        await store.flush()
        await _wait(lambda: agent.stats()["expired"] == 20)
        rows = await _rows(store)
        assert [d for _, d in rows] == ["untrusted"] * 230 + ["new"] * 5
