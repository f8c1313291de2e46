"""Round trips through the store's compact rows (Hypothesis, real SQLite files): what the
API's state and history queries, the CLI's read-only view and the outbox give back is what
was written, for every value type, unit, metric name and device id, whether the value is
read from the ``state`` table or from the readings committed since it was last written."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import StoreSection
from gateway.model import Event, Reading, Value
from gateway.store import OUTBOX_EVENT, Commit, Store, StoreLimits, event_body, open_readonly
from gateway.store.reader import StateReader
from tests.helpers import stamp

#: Any text SQLite and JSON can hold (no lone surrogates: refused at the door).
_TEXT = st.characters(codec="utf-8")
_NAMES = st.one_of(
    st.sampled_from(["gpio-a", "ble-a4c138000001", "gpio-é", "zigbee-0x00158d0001"]),
    st.text(_TEXT, min_size=1, max_size=6),
)
_VALUES: st.SearchStrategy[Value] = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**63, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, 1e300, -1e-7, 21.0]),
    st.text(_TEXT, max_size=12),
    st.sampled_from(["", "ascii", "crème brûlée", '"\\\n\x00\x7f', "😀"]),
)
_UNITS = st.one_of(
    st.none(), st.sampled_from(["°C", "%", "hPa", "µS/cm", "", "\x00"]), st.text(_TEXT, max_size=3)
)
_READINGS = st.lists(
    st.tuples(
        st.sampled_from(["gpio-a", "gpio-é", "ble-a4c138000001"]) | _NAMES,
        st.sampled_from(["temperature", "opening", "température", ""]) | st.text(_TEXT),
        _VALUES,
        _UNITS,
    ),
    min_size=1,
    max_size=40,
)


def _same(got: Any, want: Any) -> bool:
    """Equal, of the same type, and for floats the same bits (-0.0 is not 0.0)."""
    return type(got) is type(want) and repr(got) == repr(want)


async def _check_reads(reader: StateReader, written: list[Reading]) -> None:
    newest: dict[tuple[str, str], Reading] = {}
    for r in written:
        newest[(r.device_id, r.metric)] = r
    for device in {r.device_id for r in written}:
        state = await reader.state(device)
        want = {m: r for (d, m), r in newest.items() if d == device}
        assert sorted(state) == sorted(want)
        for metric, (value, unit, ts, seq) in state.items():
            r = want[metric]
            assert _same(value, r.value), (metric, value, r.value)
            assert (unit, ts, seq) == (r.unit, r.stamp.wall, r.seq)
        history = await reader.history(device, limit=10_000)
        mine = [r for r in written if r.device_id == device]
        assert [(h[0], h[1], h[3]) for h in history] == [
            (r.seq, r.metric, r.stamp.wall) for r in mine
        ]
        assert all(_same(h[2], r.value) for h, r in zip(history, mine, strict=True))


@settings(max_examples=60)
@given(_READINGS, st.integers(1, 7), st.integers(1, 4))
def test_readings_read_back_as_written(
    items: list[tuple[str, str, Value, str | None]], batch: int, state_every: int
) -> None:
    """Each reading comes back the same from state, history (service and read-only view)
    and the outbox, whatever series are new in a batch or were numbered by an earlier run;
    the outbox's size of each row is its body's length plus the row overhead."""

    async def scenario(path: Path) -> None:
        limits = StoreLimits(state_every=state_every)
        written: list[Reading] = []
        half = len(items) // 2
        # two runs: the second numbers series both new and known from the first
        for part in (items[:half], items[half:]):
            async with await Store.open(
                path, StoreSection(batch_max_rows=batch), limits=limits
            ) as store:
                store.subscribe(lambda c: written.extend(c.readings))
                for i, (device, metric, value, unit) in enumerate(part):
                    r = Reading(device, metric, value, unit, stamp(1000.0 + i), "test")
                    # (a series of its own: a metric name, a unit other than "no unit")
                    assert store.add_reading(r) is bool(metric and unit != "\x00")
                await store.flush()
                await _check_reads(store, written)
                rows = await store.outbox_fetch(10_000)
        assert [r.seq for r in written] == list(range(1, len(written) + 1))
        assert [r.seq for r in rows] == [r.seq for r in written]
        for row, r in zip(rows, written, strict=True):
            body = json.loads(row.body)
            has_unit = {} if r.unit is None else {"unit": r.unit}
            assert body == {"device": r.device_id, "metric": r.metric, "value": r.value, **has_unit}
            assert _same(body["value"], r.value)
            assert (row.device_id, row.ts, row.size) == (
                r.device_id,
                r.stamp.wall,
                len(row.body) + 48,
            )
        ro = await open_readonly(path)
        try:
            await _check_reads(ro, written)
        finally:
            await ro.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "state.db"))


_EVENTS = st.lists(
    st.builds(
        Event,
        device_id=_NAMES,
        event=st.sampled_from(["button", "dimmer"]) | st.text(_TEXT, max_size=5),
        action=st.sampled_from(["single", "rotate_left"]) | st.text(_TEXT, max_size=5),
        stamp=st.just(stamp(1000.0)),
        source=st.just("test"),
        button=st.none() | st.integers(0, 2**31),
        properties=st.lists(
            st.tuples(
                st.sampled_from(["steps", "device", "seq"]) | st.text(_TEXT, max_size=5),
                st.integers(-(2**40), 2**40),
            ),
            max_size=3,
        ).map(tuple),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=40)
@given(_EVENTS)
def test_events_read_back_as_published(events: list[Event]) -> None:
    """An event's outbox body (stored without its device, rebuilt when read) is the body
    it was published with, and counts for its length in the outbox's bound."""

    async def scenario(path: Path) -> None:
        async with await Store.open(path) as store:
            for e in events:
                assert store.add_event(e)
            await store.flush()
            rows = await store.outbox_fetch(100)
        assert [(r.kind, r.device_id) for r in rows] == [
            (OUTBOX_EVENT, e.device_id) for e in events
        ]
        for row, e in zip(rows, events, strict=True):
            assert json.loads(row.body) == json.loads(event_body(e))
            assert row.size == len(event_body(e)) + 48

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "state.db"))


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(0, 6), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 40), max_size=6)),
        st.tuples(st.just("ack"), st.integers(0, 40), st.integers(0, 8)),
    ),
    min_size=1,
    max_size=25,
)
#: Without an uplink the outbox keeps this many rows; the history this many readings.
_KEEP, _HISTORY = 5, 7


@settings(max_examples=60)
@given(_OPS)
def test_the_outbox_holds_what_no_one_took_out(ops: list[tuple[Any, ...]]) -> None:
    """A model of the outbox against the store, through commits with and without an uplink,
    deletions of any rows (drops, expiry, dead letters) and acknowledged ranges of
    consecutive outbox rows: the outbox is exactly the committed rows not taken out, and
    without an uplink its newest ``_KEEP`` (nothing else is ever trimmed); the history is
    the newest ``_HISTORY`` readings whatever the outbox holds."""

    async def scenario(path: Path) -> None:
        uplink = True
        limits = StoreLimits(no_uplink_max_rows=_KEEP, prune_every=1)
        config = StoreSection(history_max_rows=_HISTORY)
        model: list[int] = []
        readings: list[int] = []
        committed: list[int] = []

        def listen(c: Commit) -> None:
            committed.extend([*(r.seq for r in c.readings), *(e.seq for e in c.events)])
            readings.extend(r.seq for r in c.readings)

        async with await Store.open(path, config, uplink=lambda: uplink, limits=limits) as store:
            store.subscribe(listen)
            for op in ops:
                if op[0] == "commit":
                    _, n_readings, n_events, uplink = op
                    for i in range(n_readings):
                        store.add_reading(
                            Reading(f"gpio-{i % 3}", "temperature", float(i), "°C", stamp(), "t")
                        )
                    for _ in range(n_events):
                        store.add_event(Event("gpio-b", "button", "single", stamp(), "t"))
                    if not n_readings + n_events:
                        continue
                    await store.flush()
                    model += committed
                    committed.clear()
                    if not uplink:
                        del model[:-_KEEP]
                elif op[0] == "delete":
                    gone = {model[i] for i in op[1] if i < len(model)}
                    await store.outbox.delete(gone)
                    model = [s for s in model if s not in gone]
                else:
                    _, start, n = op
                    acked = model[start : start + n]
                    if acked:
                        await store.outbox.delete_ranges([(acked[0], acked[-1])], None)
                        model = model[:start] + model[start + n :]
                assert [r.seq for r in await store.outbox_fetch(10_000)] == model, op
                stats = await store.outbox_stats()
                assert (stats.depth, stats.oldest_seq) == (len(model), min(model, default=None))
                history = [
                    h[0] for d in ("gpio-0", "gpio-1", "gpio-2") for h in await store.history(d)
                ]
                assert sorted(history) == readings[-_HISTORY:], op
        async with await Store.open(path, config, limits=limits) as store:
            assert [r.seq for r in await store.outbox_fetch(10_000)] == model

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "state.db"))
