"""The state cache: schema, batching, sequence numbers, durability, corrupt files."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from gateway.config import StoreSection
from gateway.errors import StoreCorruptError, StoreError
from gateway.model import DeviceStatus, DeviceUpdate, Event, Reading, Transport
from gateway.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Commit,
    Store,
    StoreLimits,
    open_readonly,
)
from tests.helpers import event, reading, stamp

#: Retries after a failed commit come quickly.
_QUICK_RETRY = StoreLimits(retry_initial_s=0.01, retry_max_s=0.05)


def _seqs(c: Commit) -> list[int]:
    return [r.seq for r in c.readings] + [e.seq for e in c.events]


async def test_new_database_has_schema_wal_and_app_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await Store.open(path):
        pass
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # history is a view over the compact ``readings`` since schema 3
    tables = {
        r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    }
    assert {"meta", "devices", "state", "history", "outbox", "dead_letter"} <= tables
    con.close()


async def test_both_connections_keep_a_small_page_cache(tmp_path: Path) -> None:
    from gateway.store.schema import CACHE_KIB

    async with await Store.open(tmp_path / "state.db") as store:
        for db in (store._db, store._rdb):
            async with db.execute("PRAGMA cache_size") as cur:
                row = await cur.fetchone()
            assert row is not None
            assert row[0] == -CACHE_KIB


async def test_reopen_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await Store.open(path) as store:
        store.add_reading(reading())
        await store.flush()
    async with await Store.open(path) as store:
        assert (await store.outbox_stats()).depth == 1


async def test_database_from_newer_migw_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await Store.open(path):
        pass
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this migw"):
        await Store.open(path)
    assert path.exists()


async def test_a_commit_says_what_it_adds_to_the_outbox_bound(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", StoreSection(batch_max_rows=7)) as store:
        added: list[int] = []
        store.subscribe(lambda c: added.append(c.outbox_bytes))
        for i in range(30):
            store.add_reading(reading(value=float(i) / 3))
            store.add_reading(reading("gpio-b", "label", f"élan {i}", None))
            store.add_reading(reading("gpio-c", "opening", i % 2 == 0, None))
            if i % 4 == 0:
                store.add_event(event(action=f"double {i}"))
        await store.flush()
        rows = await store.outbox_fetch(1000)
        stats = await store.outbox_stats()
    assert len(added) > 1
    assert sum(added) == stats.bytes == sum(len(r.body) + 48 for r in rows)


async def test_commit_batches_hold_at_most_batch_max_rows(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", StoreSection(batch_max_rows=500)) as store:
        batches: list[int] = []
        store.subscribe(lambda c: batches.append(len(c.readings) + len(c.events)))
        for i in range(1200):
            store.add_reading(reading(value=float(i)))
        await store.flush()
    assert batches == [500, 500, 200]
    assert store.counters.commits == 3


async def test_sequence_numbers_strictly_increase_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seen: list[int] = []
    async with await Store.open(path) as store:
        store.subscribe(lambda c: seen.extend(_seqs(c)))
        for i in range(10):
            store.add_reading(reading(value=float(i)))
        store.add_event(event())
        await store.flush()
        # delivered rows leave the outbox: the numbers must still not be reused
        await store.outbox_delete(seen)
    async with await Store.open(path) as store:
        store.subscribe(lambda c: seen.extend(_seqs(c)))
        store.add_reading(reading())
        await store.flush()
    assert seen == list(range(1, 13))


async def test_latest_state_history_devices_and_outbox(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        store.update_device(
            DeviceUpdate(
                id="ble-a4c138000001",
                transport=Transport.BLE,
                model="LYWSD03MMC",
                rssi=-70,
                status=DeviceStatus.OK,
            ),
            seen=1000.0,
        )
        store.add_reading(reading("ble-a4c138000001", "temperature", 20.0, wall=1001.0))
        store.add_reading(reading("ble-a4c138000001", "temperature", 21.0, wall=1002.0))
        store.add_reading(reading("ble-a4c138000001", "battery", 88.0, "%", wall=1002.0))
        store.add_event(event("ble-a4c138000001", "double"))
        await store.flush()
        dev = await store.device("ble-a4c138000001")
        assert dev is not None
        assert (dev.model, dev.rssi, dev.battery, dev.status) == (
            "LYWSD03MMC",
            -70,
            88.0,
            DeviceStatus.OK,
        )
        assert dev.last_seen is not None and dev.last_seen >= 1002.0
        state = await store.state("ble-a4c138000001")
        assert state == {
            "battery": (88.0, "%", 1002.0, 3),
            "temperature": (21.0, "°C", 1002.0, 2),
        }
        hist = await store.history("ble-a4c138000001", "temperature")
        assert hist == [(1, "temperature", 20.0, 1001.0), (2, "temperature", 21.0, 1002.0)]
        stats = await store.outbox_stats()
        assert (stats.depth, stats.events, stats.oldest_seq) == (4, 1, 1)
        rows = await store.outbox_fetch(10)
        assert [r.seq for r in rows] == [1, 2, 3, 4]
        assert rows[3].body == '{"device":"ble-a4c138000001","event":"button","action":"double"}'
        assert rows[0].body == (
            '{"device":"ble-a4c138000001","metric":"temperature","value":20.0,"unit":"°C"}'
        )


async def test_state_between_writes_of_the_state_table(tmp_path: Path) -> None:
    """The state table is written every few commits: the values since come from the
    readings, for the service and the read-only view alike, and a device forgotten
    meanwhile does not come back when the table is written."""
    path = tmp_path / "s.db"
    limits = StoreLimits(state_every=1000, prune_every=1000)
    async with await Store.open(path, StoreSection(batch_max_rows=2), limits=limits) as store:
        for i in range(5):
            store.add_reading(reading("gpio-a", "temperature", 20.0 + i, wall=1000.0 + i))
            store.add_reading(reading("gpio-b", "switch", i % 2 == 0, None, wall=1000.0 + i))
        await store.flush()
        assert await store.state("gpio-a") == {"temperature": (24.0, "°C", 1004.0, 9)}
        ro = await open_readonly(path)
        try:
            assert await ro.state("gpio-b") == {"switch": (True, None, 1004.0, 10)}
        finally:
            await ro.close()
        async with store.transaction() as db:
            for table in ("state", "history"):
                await db.execute(f"DELETE FROM {table} WHERE device_id = 'gpio-b'")
        assert await store.state("gpio-b") == {}
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT device_id, metric, value, seq FROM state").fetchall()
    finally:
        con.close()
    assert rows == [("gpio-a", "temperature", "24.0", 9)]
    async with await Store.open(path) as store:
        assert await store.state("gpio-a") == {"temperature": (24.0, "°C", 1004.0, 9)}
        assert await store.state("gpio-b") == {}


async def test_the_state_table_catches_up_on_every_reading_since_it_was_written(
    tmp_path: Path,
) -> None:
    """Written from the readings after ``state.seq``: also those of a run that stopped
    before writing it (here: its rows taken back), and the newest of a metric whose unit
    changed."""
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        store.add_reading(reading("gpio-a", "temperature", 20.5, wall=1000.0))
        await store.flush()
    con = sqlite3.connect(path)
    con.execute("DELETE FROM state")
    con.execute("UPDATE meta SET value = '0' WHERE key = 'state.seq'")
    con.commit()
    con.close()
    limits = StoreLimits(state_every=1)
    async with await Store.open(path, StoreSection(batch_max_rows=1), limits=limits) as store:
        store.add_reading(reading("gpio-b", "temperature", 70.0, "°F", wall=1001.0))
        store.add_reading(reading("gpio-b", "temperature", 21.0, "°C", wall=1002.0))
        await store.flush()
        con = sqlite3.connect(path)
        try:
            rows = con.execute("SELECT device_id, metric, value, unit, ts, seq FROM state")
            assert sorted(rows) == [
                ("gpio-a", "temperature", "20.5", "°C", 1000.0, 1),
                ("gpio-b", "temperature", "21.0", "°C", 1002.0, 3),
            ]
        finally:
            con.close()


async def test_booleans_round_trip_as_booleans(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        store.add_reading(reading("gpio-door", "opening", True, None))
        await store.flush()
        assert (await store.state("gpio-door"))["opening"][0] is True


async def test_non_finite_values_are_dropped_and_counted(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        assert not store.add_reading(reading(value=float("nan")))
        assert store.counters.dropped_invalid == 1


async def test_history_is_bounded(tmp_path: Path) -> None:
    cfg = StoreSection(history_max_rows=50, batch_max_rows=10)
    limits = StoreLimits(prune_every=1)
    async with await Store.open(tmp_path / "s.db", cfg, limits=limits) as store:
        for i in range(200):
            store.add_reading(reading(value=float(i)))
        await store.flush()
        hist = await store.history("gpio-a", limit=1000)
    assert len(hist) == 50
    assert hist[-1][0] == 200


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all" * 10, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["garbage", "corrupt-sqlite"],
)
async def test_corrupt_file_is_moved_aside_not_lost(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(content)
    async with await Store.open(path) as store:
        moved = store.recovered_from
        assert moved is not None and moved.name.startswith("state.db.corrupt-")
        assert moved.read_bytes() == content
        store.add_reading(reading())
        await store.flush()


async def test_foreign_sqlite_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.execute("INSERT INTO recipes VALUES ('soup')")
    con.commit()
    con.close()
    async with await Store.open(path) as store:
        assert store.recovered_from is not None
    con = sqlite3.connect(store.recovered_from)
    assert con.execute("SELECT name FROM recipes").fetchall() == [("soup",)]
    con.close()


async def test_readonly_view_reads_while_service_is_down(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        store.update_device(DeviceUpdate(id="gpio-x", transport=Transport.GPIO, model="m"))
        store.add_reading(reading("gpio-x", "switch", True, None))
        await store.flush()
    ro = await open_readonly(path)
    try:
        assert [d.id for d in await ro.devices()] == ["gpio-x"]
        assert (await ro.outbox_stats()).depth == 1
        with pytest.raises(sqlite3.OperationalError):
            await ro._rdb.execute("DELETE FROM outbox")
    finally:
        await ro.close()


async def test_readonly_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state database"):
        await open_readonly(tmp_path / "none.db")


async def test_failed_commit_keeps_the_batch_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path, limits=StoreLimits(retry_initial_s=0.01)) as store:
        # Another connection holds the write lock: our commits fail with "database is locked".
        await store._db.execute("PRAGMA busy_timeout=0")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        got: list[Reading | Event] = []
        store.subscribe(lambda c: got.extend(c.readings))
        for i in range(5):
            store.add_reading(reading(value=float(i)))
        while store.counters.commit_failures == 0:
            import asyncio

            await asyncio.sleep(0.01)
        assert store.last_error
        blocker.execute("ROLLBACK")
        blocker.close()
        await store.flush()
    assert [r.seq for r in got] == [1, 2, 3, 4, 5]
    assert store.last_error == ""


async def test_event_properties_travel_in_the_outbox_body(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        ev = Event(
            device_id="ble-1",
            event="dimmer",
            action="rotate_left",
            stamp=event().stamp,
            source="test",
            properties=(("steps", 3), ("action", 9), ("seq", 1), ("ts", 0)),
        )
        store.add_event(ev)
        await store.flush()
        rows = await store.outbox_fetch(1)
    # properties never overwrite the event's own fields
    assert rows[0].body == ('{"device":"ble-1","event":"dimmer","action":"rotate_left","steps":3}')


async def test_cancelled_transaction_never_leaves_the_database_locked(tmp_path: Path) -> None:
    import asyncio

    async with await Store.open(tmp_path / "s.db") as store:
        for delay in range(6):  # cancel at several points: during BEGIN, inside, at COMMIT

            async def user(d: int = delay) -> None:
                async with store.transaction() as db:
                    for _ in range(d):
                        await db.execute("DELETE FROM outbox WHERE seq = -1")

            task = asyncio.create_task(user())
            for _ in range(delay):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            store.add_reading(reading(value=float(delay)))
            await asyncio.wait_for(store.flush(), 5)
        assert (await store.outbox_stats()).depth == 6
        assert store.counters.commit_failures == 0


async def test_queries_never_see_an_uncommitted_transaction(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        store.add_reading(reading("gpio-a", "switch", True, None))
        await store.flush()
        async with store.transaction() as db:
            await db.execute("DELETE FROM outbox")
            await db.execute("UPDATE state SET value = 'false'")
            # mid-transaction, the API's view is still the committed one
            assert (await store.outbox_stats()).depth == 1
            assert (await store.state("gpio-a"))["switch"][0] is True
        assert (await store.outbox_stats()).depth == 0


async def test_a_locked_database_is_an_error_not_corruption(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with await Store.open(path) as store:
        store.add_reading(reading())
        await store.flush()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="cannot open the state database"):
            await Store.open(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("*.corrupt-*"))
    async with await Store.open(path) as store:
        assert store.last_seq == 1


@pytest.mark.parametrize("how", ["corrupted", "deleted"])
async def test_sequence_numbers_continue_after_the_database_is_lost(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "state.db"
    async with await Store.open(path) as store:
        for i in range(10):
            store.add_reading(reading(value=float(i)))
        await store.flush()
    for side in (path, path.with_name("state.db-wal"), path.with_name("state.db-shm")):
        if side.exists():
            if how == "deleted":
                side.unlink()
            else:
                side.write_bytes(b"\x00garbage" * 512)
    got: list[int] = []
    async with await Store.open(path) as store:
        store.subscribe(lambda c: got.extend(r.seq for r in c.readings))
        store.add_reading(reading())
        await store.flush()
    assert got[0] > 10, "a sequence number was handed out twice"


def _refuse(path: Path, table: str, device: str) -> None:
    """A trigger that refuses, for good, the rows of ``table`` whose ``device`` (an SQL
    expression over NEW) is 'gpio-poison'."""
    con = sqlite3.connect(path)
    con.execute(
        f"CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN {device} = 'gpio-poison'"
        " BEGIN SELECT RAISE(ABORT, 'poison'); END"
    )
    con.commit()
    con.close()


async def test_a_permanently_refused_item_is_dropped_and_the_rest_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path, StoreSection(batch_max_rows=50)) as store:
        _refuse(path, "readings", "(SELECT device_id FROM series WHERE id = NEW.series)")
        got: list[str] = []
        store.subscribe(lambda c: got.extend(r.device_id for r in c.readings))
        for i in range(11):
            store.add_reading(reading("gpio-poison" if i == 5 else f"gpio-{i}", value=float(i)))
        await asyncio.wait_for(store.flush(), 10)
        assert got == [f"gpio-{i}" for i in range(11) if i != 5]
        assert store.counters.dropped_invalid == 1
        store.add_reading(reading("gpio-after"))
        await asyncio.wait_for(store.flush(), 10)
        assert got[-1] == "gpio-after"


async def test_someone_else_using_our_numbers_is_survived(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        store.add_reading(reading())
        await store.flush()
        con = sqlite3.connect(path)
        con.execute(
            "INSERT INTO outbox (seq, kind, series, body, ts, boot, mono, synced, size)"
            " VALUES (2, 0, 1, '1', 0, 1, 0, 1, 1)"
        )
        con.execute("UPDATE meta SET value = '2' WHERE key = 'last_seq'")
        con.commit()
        con.close()
        got: list[int] = []
        store.subscribe(lambda c: got.extend(r.seq for r in c.readings))
        store.add_reading(reading())
        await asyncio.wait_for(store.flush(), 10)
    assert got == [3]


async def test_text_that_cannot_be_stored_is_dropped_at_the_door(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        assert not store.add_reading(reading("gpio-a", "note", "bad\ud800", None))
        assert not store.add_reading(reading("gpio-\ud800", "note", "ok", None))
        assert not store.add_reading(reading("gpio-a", "n\udcffte", 1.0, None))
        assert not store.add_reading(reading("gpio-a", "temperature", float("nan"), None))
        # text beyond ASCII is fine
        assert store.add_reading(reading("gpio-é", "note", "crème brûlée", None))
        store.update_device(DeviceUpdate(id="ble-1", transport=Transport.BLE, name="\udcff"))
        assert store.counters.dropped_invalid == 5
        # an event's device id, names and property keys are stored too
        for bad in (
            Event("gpio-\ud800", "button", "single", stamp(), "test"),
            Event("gpio-b", "butt\udcffon", "single", stamp(), "test"),
            Event("gpio-b", "button", "\ud800", stamp(), "test"),
            Event("gpio-b", "dimmer", "rotate", stamp(), "test", properties=(("st\udcffeps", 1),)),
        ):
            assert not store.add_event(bad)
        assert store.counters.dropped_invalid == 9
        assert store.add_event(Event("gpio-é", "button", "double", stamp(), "test"))
        await asyncio.wait_for(store.flush(), 10)
        assert (await store.outbox_stats()).events == 1


async def test_readings_that_would_take_another_series_are_dropped_at_the_door(
    tmp_path: Path,
) -> None:
    """A series is stored as (device, metric, unit) with NUL for "no unit", and a device's
    events use its series of metric "": a reading without a metric name would be read back
    as an event (its outbox body its bare value, dead-lettered as corrupt; missing from the
    state), and one whose unit is NUL without its unit."""
    async with await Store.open(tmp_path / "s.db") as store:
        assert not store.add_reading(reading("gpio-a", "", 21.5, None))
        assert not store.add_reading(reading("gpio-a", "temperature", 21.5, "\x00"))
        assert store.counters.dropped_invalid == 2
        assert store.add_reading(reading("gpio-a", "temperature", 21.5, "\x00C", wall=1000.0))
        await store.flush()
        rows = await store.outbox_fetch(10)
        assert [r.body for r in rows] == [
            '{"device":"gpio-a","metric":"temperature","value":21.5,"unit":"\\u0000C"}'
        ]
        assert await store.state("gpio-a") == {"temperature": (21.5, "\x00C", 1000.0, 1)}


async def test_writer_runs_with_full_synchronous_in_wal_mode(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        async with store._db.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone()) == (2,)  # FULL
        async with store._db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone()) == ("wal",)


async def test_readonly_view_refuses_a_foreign_or_corrupt_file(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreCorruptError, match="not a migw state database"):
        await open_readonly(foreign)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"x" * 4096)
    with pytest.raises(StoreCorruptError):
        await open_readonly(garbage)


async def test_a_failed_reservation_write_is_retried_before_any_number_is_used(
    tmp_path: Path,
) -> None:
    """ENOSPC/EIO on the reservation file: the commit waits (nothing is lost, no number is
    used) and goes through once the file can be written."""
    path = tmp_path / "state.db"
    blocker = tmp_path / "state.db.seq.tmp"
    blocker.mkdir()  # the reservation's temporary file cannot be created
    async with await Store.open(path, limits=_QUICK_RETRY) as store:
        got: list[int] = []
        store.subscribe(lambda c: got.extend(r.seq for r in c.readings))
        store.add_reading(reading())
        async with asyncio.timeout(10):
            while store.counters.commit_failures < 3:
                await asyncio.sleep(0.01)
        assert got == []
        assert "seq.tmp" in store.last_error
        blocker.rmdir()
        async with asyncio.timeout(10):
            await store.flush()
        assert got == [1]
        assert (tmp_path / "state.db.seq").read_text().split() == ["reserved", str(1 + 1_000_000)]
    assert (tmp_path / "state.db.seq").read_text().split() == ["closed", "1"]


async def test_a_clean_close_continues_numbering_without_a_jump(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    for expected in (1, 2, 3):
        async with await Store.open(path) as store:
            store.add_reading(reading())
            await store.flush()
            assert store.last_seq == expected
            assert store.damage == []


async def test_memory_is_bounded_while_writes_fail_and_events_are_kept(tmp_path: Path) -> None:
    limits = _QUICK_RETRY
    async with await Store.open(tmp_path / "s.db", limits=limits) as store:
        # the SD card turns read-only under SQLite: every commit fails with a real error
        await store._db.execute("PRAGMA query_only=ON")
        offered = limits.max_pending * 3
        for i in range(offered):
            store.add_reading(reading(value=float(i)))
            if i % 1000 == 0:
                await asyncio.sleep(0)
        # the batch being retried (at most batch_max_rows) is held besides the bound
        in_flight = store.config.batch_max_rows
        assert store.pending() <= limits.max_pending + in_flight
        assert store.pending_bytes <= limits.max_pending_bytes + in_flight * limits.item_cost
        assert store.counters.dropped_backpressure >= offered - limits.max_pending - in_flight
        # at the bound an event still gets in, in place of the oldest reading
        assert store.add_event(event())
        assert store.pending() <= limits.max_pending + in_flight
        assert any("pending queue is full" in p for p in store.problems())
        await store._db.execute("PRAGMA query_only=OFF")
        got: list[str] = []
        store.subscribe(lambda c: got.extend(e.action for e in c.events))
        async with asyncio.timeout(30):
            await store.flush()
        assert got == ["single"]


async def test_big_values_count_against_the_byte_bound(tmp_path: Path) -> None:
    limits = StoreLimits()
    async with await Store.open(tmp_path / "s.db") as store:
        await store._db.execute("PRAGMA query_only=ON")
        big = "x" * 100_000
        for _ in range(200):
            store.add_reading(reading("gpio-a", "label", big, None))
        assert store.pending_bytes <= limits.max_pending_bytes
        assert store.pending() < 100
        await store._db.execute("PRAGMA query_only=OFF")
        await store.flush()


async def test_without_an_uplink_the_outbox_stays_small(tmp_path: Path) -> None:
    uplink = False
    path = tmp_path / "s.db"
    async with await Store.open(
        path,
        uplink=lambda: uplink,
        config=StoreSection(batch_max_rows=2),
        limits=StoreLimits(no_uplink_max_rows=3),
    ) as store:
        for i in range(10):
            store.add_reading(reading(value=float(i)))
        await store.flush()
        stats = await store.outbox_stats()
        assert (stats.depth, stats.oldest_seq, stats.uplink) == (3, 8, False)
        assert len(await store.history("gpio-a")) == 10
        uplink = True
        for i in range(5):
            store.add_reading(reading(value=float(i)))
        await store.flush()
        stats = await store.outbox_stats()
        assert (stats.depth, stats.uplink) == (8, True)
    ro = await open_readonly(path)
    try:
        assert (await ro.outbox_stats()).uplink
    finally:
        await ro.close()


async def test_without_an_uplink_events_and_gone_ranges_are_trimmed_too(tmp_path: Path) -> None:
    uplink = True
    async with await Store.open(
        tmp_path / "s.db", uplink=lambda: uplink, limits=StoreLimits(no_uplink_max_rows=3)
    ) as store:
        for i in range(4):
            store.add_reading(reading(value=float(i)))  # 1, 3, 5, 7
            store.add_event(event(action=f"single {i}"))  # 2, 4, 6, 8
            await store.flush()
        # a reading out of order: a range of outbox_gone above the watermark
        await store.outbox_delete([3])
        assert [r.seq for r in await store.outbox_fetch(100)] == [1, 2, 4, 5, 6, 7, 8]
        uplink = False
        store.add_reading(reading(value=9.0))
        await store.flush()
        assert [r.seq for r in await store.outbox_fetch(100)] == [7, 8, 9]
        stats = await store.outbox_stats()
        assert (stats.depth, stats.oldest_seq, stats.events) == (3, 7, 1)
        async with store.transaction() as db:
            assert list(await db.execute_fetchall("SELECT count(*) FROM outbox_gone")) == [(0,)]


async def test_schema_1_rows_survive_the_migration(tmp_path: Path) -> None:
    from gateway.store import reading_body
    from gateway.store.schema import _MIGRATIONS

    path = tmp_path / "state.db"
    con = sqlite3.connect(path)
    for sql in _MIGRATIONS[0]:
        con.execute(sql)
    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
    con.execute("PRAGMA user_version=1")
    old = reading("gpio-a", "temperature", 21.5, "°C", wall=1700000000.25)
    body = reading_body(old)
    con.execute(
        "INSERT INTO outbox VALUES (7, 0, 'gpio-a', ?, 1700000000.25, 'boot-1', 3.5, 1, ?)",
        (body, len(body) + 48),
    )
    con.execute("INSERT INTO meta VALUES ('last_seq', '7')")
    con.execute("INSERT INTO history VALUES (6, 'gpio-a', 'opening', 'true', 1700000000.0)")
    con.execute("INSERT INTO history VALUES (7, 'gpio-a', 'temperature', '21.5', 1700000000.25)")
    con.execute("INSERT INTO state VALUES ('gpio-a', 'temperature', '21.5', '°C', 1.0, 7)")
    con.commit()
    con.close()
    async with await Store.open(path) as store:
        store.add_reading(reading("gpio-b", "humidity", 40, "%"))
        await store.flush()
        rows = await store.outbox_fetch(10)
        assert await store.history("gpio-a") == [
            (6, "opening", True, 1700000000.0),
            (7, "temperature", 21.5, 1700000000.25),
        ]
        # forgetting a device deletes its history through the view (the API does this)
        async with store.transaction() as db:
            await db.execute("DELETE FROM history WHERE device_id = 'gpio-a'")
        assert await store.history("gpio-a") == []
        assert len(await store.history("gpio-b")) == 1
    assert [(r.seq, r.device_id, r.body, r.boot, r.mono, r.size) for r in rows] == [
        (7, "gpio-a", body, "boot-1", 3.5, len(body) + 48),
        (
            8,
            "gpio-b",
            reading_body(reading("gpio-b", "humidity", 40, "%")),
            rows[1].boot,
            1.0,
            len(reading_body(reading("gpio-b", "humidity", 40, "%"))) + 48,
        ),
    ]
    assert rows[1].boot == "00000000-0000-0000-0000-000000000001"


async def test_a_refused_new_series_does_not_block_later_commits(tmp_path: Path) -> None:
    """A new series the database refuses (here its unit cannot be stored) is dropped with
    its reading: a commit that failed does not leave its new series numbers to be written
    by every commit after it (each would fail, and every later item be dropped)."""
    async with await Store.open(tmp_path / "s.db", limits=_QUICK_RETRY) as store:
        got: list[str] = []
        store.subscribe(lambda c: got.extend(r.device_id for r in c.readings))
        store.add_reading(reading("gpio-bad", "temperature", 20.0, "\udcb0C"))
        await asyncio.wait_for(store.flush(), 10)
        for i in range(3):
            store.add_reading(reading(f"gpio-{i}", value=float(i)))
            await asyncio.wait_for(store.flush(), 10)
        assert got == ["gpio-0", "gpio-1", "gpio-2"]
        assert store.counters.dropped_invalid == 1
        assert [h[:3] for h in await store.history("gpio-2")] == [(3, "temperature", 2.0)]


async def test_a_refused_device_record_does_not_wedge_the_writer(tmp_path: Path) -> None:
    """A device update the database refuses for good (here a trigger) is dropped after its
    item: the writer neither retries it forever (a busy loop at 100 % CPU, every later
    item stuck) nor loses the readings after it."""
    path = tmp_path / "s.db"
    async with await Store.open(path, limits=_QUICK_RETRY) as store:
        _refuse(path, "devices", "NEW.id")
        got: list[str] = []
        store.subscribe(lambda c: got.extend(r.device_id for r in c.readings))
        store.update_device(DeviceUpdate(id="gpio-poison", transport=Transport.GPIO))
        store.add_reading(reading("gpio-poison"))
        await asyncio.wait_for(store.flush(), 10)
        store.add_reading(reading("gpio-after"))
        await asyncio.wait_for(store.flush(), 10)
        # the device update was the poison: the reading of that device is kept
        assert got == ["gpio-poison", "gpio-after"]
        assert store.counters.dropped_invalid == 1
        assert await store.device("gpio-poison") is None
