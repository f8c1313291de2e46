"""A database of each earlier schema upgrades in place to schema 4 (one row per reading) with
nothing lost; one of schema 3 (the outbox as a table of its own) has its undelivered rows
delivered afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.service import Service, ServiceTiming
from gateway.store import APPLICATION_ID, SCHEMA_VERSION, Store
from gateway.store.reader import open_readonly
from gateway.store.schema import _MIGRATIONS
from gateway.sync import SyncTiming
from tests.broker import Collector, Mosquitto, gateway_config
from tests.helpers import reading

BOOT = "00000000-0000-0000-0000-0000000000aa"
#: The undelivered rows' bodies as published.
BODIES = {
    4: '{"device":"gpio-a","metric":"temperature","value":21.0,"unit":"°C"}',
    5: '{"device":"gpio-a","metric":"open","value":true}',
    6: '{"device":"gpio-b","event":"button","action":"single"}',
    7: '{"device":"gpio-a","metric":"temperature","value":21.5,"unit":"°C"}',
}
TELEMETRY = "migw/testgw/telemetry"
_FAST = ServiceTiming(sync=SyncTiming(maintain_s=0.05, ttl_check_s=0.05, connect_timeout_s=2.0))


def _schema_3_file(path: Path) -> None:
    """A schema-3 database as migw wrote it: seq 1-3 delivered (history only), seq 4-7 in
    the outbox (readings 4, 5 and 7 also in the history, event 6)."""
    con = sqlite3.connect(path)
    for step in _MIGRATIONS[:3]:
        for sql in step:
            con.execute(sql)
    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
    con.execute("PRAGMA user_version=3")
    con.executemany(
        "INSERT INTO series (id, device_id, metric, unit) VALUES (?,?,?,?)",
        [
            (1, "gpio-a", "temperature", "°C"),
            (2, "gpio-b", "", "\x00"),
            (3, "gpio-a", "open", "\x00"),
        ],
    )
    con.execute("INSERT INTO boots (id, boot) VALUES (1, ?)", (BOOT,))
    con.executemany(
        "INSERT INTO readings (seq, series, value, ts) VALUES (?,?,?,?)",
        [
            (1, 1, "20.0", 1000.0),
            (2, 1, "20.5", 1001.0),
            (3, 3, "false", 1002.0),
            (4, 1, "21.0", 1003.0),
            (5, 3, "true", 1004.0),
            (7, 1, "21.5", 1006.0),
        ],
    )
    body = '{"event":"button","action":"single"}'
    con.executemany(
        "INSERT INTO outbox (seq, kind, series, body, ts, boot, mono, synced, size)"
        " VALUES (?,?,?,?,?,1,?,1,?)",
        [
            (seq, kind, series, stored, 999.0 + seq, seq - 1.0, len(BODIES[seq]) + 48)
            for seq, kind, series, stored in [
                (4, 0, 1, "21.0"),
                (5, 0, 3, "true"),
                (6, 1, 2, body),
                (7, 0, 1, "21.5"),
            ]
        ],
    )
    con.execute("INSERT INTO meta (key, value) VALUES ('last_seq', '7')")
    con.commit()
    con.close()


async def test_a_schema_3_outbox_survives_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _schema_3_file(path)
    async with await Store.open(path) as store:
        rows = await store.outbox_fetch(10)
        stats = await store.outbox_stats()
        history = await store.history("gpio-a")
        store.add_reading(reading("gpio-a", "temperature", 22.0, "°C"))
        await store.flush()
        after = [r.seq for r in await store.outbox_fetch(10)]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    con.close()
    assert [(r.seq, r.kind, r.device_id, r.body, r.ts, r.boot, r.mono, r.size) for r in rows] == [
        (
            seq,
            int(seq == 6),
            "gpio-b" if seq == 6 else "gpio-a",
            body,
            999.0 + seq,
            BOOT,
            seq - 1.0,
            len(body) + 48,
        )
        for seq, body in BODIES.items()
    ]
    assert (stats.depth, stats.events, stats.oldest_seq) == (4, 1, 4)
    assert stats.bytes == sum(len(b) + 48 for b in BODIES.values())
    assert [h[0] for h in history] == [1, 2, 3, 4, 5, 7]
    assert after == [4, 5, 6, 7, 8]


async def test_a_schema_3_outbox_is_delivered_after_the_upgrade(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _schema_3_file(state / "state.db")
    cfg = gateway_config(state, mosquitto.url)
    async with (
        Collector(mosquitto.port, [TELEMETRY]) as col,
        Service(cfg, drivers=[], timing=_FAST) as svc,
    ):
        store = svc.store
        assert store is not None
        await col.wait_for(lambda: {4, 5, 6, 7} <= set(col.seqs(TELEMETRY)))
        store.add_reading(reading("gpio-a", "temperature", 22.0, "°C"))
        await col.wait_for(lambda: 8 in col.seqs(TELEMETRY))
        async with asyncio.timeout(30):
            while (await store.outbox_stats()).depth:
                await asyncio.sleep(0.05)
    got = {i["seq"]: i for b in col.batches(TELEMETRY) for i in (*b.readings, *b.events)}
    assert sorted(got) == [4, 5, 6, 7, 8]
    assert {k: got[4][k] for k in ("device", "metric", "value", "unit", "ts", "boot", "mono")} == {
        "device": "gpio-a",
        "metric": "temperature",
        "value": 21.0,
        "unit": "°C",
        "ts": 1003.0,
        "boot": BOOT,
        "mono": 3.0,
    }
    assert (got[6]["device"], got[6]["action"]) == ("gpio-b", "single")
    assert got[5]["value"] is True


async def test_the_read_only_view_of_an_earlier_schema_says_to_start_the_service(
    tmp_path: Path,
) -> None:
    """`migw status` with the service down after an upgrade: the CLI never migrates, so it
    says what to do instead of failing on a table the earlier schema lacks."""
    path = tmp_path / "state.db"
    _schema_3_file(path)
    with pytest.raises(StoreError, match=r"earlier migw \(schema 3, .*start the service"):
        await open_readonly(path)
    store = await Store.open(path)  # the service's open migrates
    await store.close()
    reader = await open_readonly(path)
    try:
        assert (await reader.outbox_stats()).depth == 4
    finally:
        await reader.close()


async def test_the_read_only_view_of_a_newer_schema_refuses_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await Store.open(path)
    await store.close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer migw"):
        await open_readonly(path)


#: (seq, metric, value as stored, ts, unit) of gpio-a's readings in the file of each schema;
#: 3, 5, 6 and 7 undelivered (in the outbox, beside the event 4 of gpio-b).
_HISTORY = [
    (1, "temperature", "20.0", 1000.0, "°C"),
    (2, "open", "false", 1001.0, None),
    (3, "temperature", "21.0", 1002.0, "°C"),
    (5, "count", "18446744073709551616", 1004.0, None),
    (6, "note", '"crème\\n"', 1005.0, None),
    (7, "offset", "-0.0", 1006.0, None),
]
_UNDELIVERED = (3, 5, 6, 7)
_EVENT = '{"event":"button","action":"single"}'


def _published(seq: int) -> str:
    if seq == 4:
        return '{"device":"gpio-b",' + _EVENT[1:]
    _, metric, value, _, unit = next(h for h in _HISTORY if h[0] == seq)
    unit_json = "" if unit is None else f',"unit":"{unit}"'
    return f'{{"device":"gpio-a","metric":"{metric}","value":{value}{unit_json}}}'


def _old_file(path: Path, version: int) -> None:
    """A database of schema ``version`` (1 to 3) as that migw wrote it, holding
    :data:`_HISTORY`, its state, and an outbox of the undelivered readings and an event."""
    con = sqlite3.connect(path)
    for step in _MIGRATIONS[:version]:
        for sql in step:
            con.execute(sql)
    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
    con.execute(f"PRAGMA user_version={version}")
    newest = {h[1]: h for h in _HISTORY}
    con.executemany(
        "INSERT INTO state VALUES ('gpio-a', ?, ?, ?, ?, ?)",
        [(m, value, unit, ts, seq) for m, (seq, _, value, ts, unit) in newest.items()],
    )
    outbox = [(seq, 0, "gpio-a") for seq in _UNDELIVERED] + [(4, 1, "gpio-b")]
    if version < 3:
        con.executemany(
            "INSERT INTO history VALUES (?, 'gpio-a', ?, ?, ?)", [h[:4] for h in _HISTORY]
        )
        for seq, kind, device in outbox:
            body = _published(seq)
            if version == 2:  # the device left out of the stored body
                body = "{" + body[len(f'{{"device":"{device}",') :]
            boot: str | int = BOOT if version == 1 else 1
            con.execute(
                "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (
                    seq,
                    kind,
                    device,
                    body,
                    1000.0 + seq,
                    boot,
                    float(seq),
                    len(_published(seq)) + 48,
                ),
            )
        if version == 2:
            con.execute("INSERT INTO boots (id, boot) VALUES (1, ?)", (BOOT,))
    else:
        series = {(h[1], h[4] or "\x00") for h in _HISTORY}
        ids = {key: n for n, key in enumerate(sorted(series), start=2)}
        con.execute("INSERT INTO series VALUES (1, 'gpio-b', '', char(0))")
        con.executemany(
            "INSERT INTO series VALUES (?, 'gpio-a', ?, ?)", [(n, *k) for k, n in ids.items()]
        )
        con.executemany(
            "INSERT INTO readings VALUES (?, ?, ?, ?)",
            [(seq, ids[(m, unit or "\x00")], v, ts) for seq, m, v, ts, unit in _HISTORY],
        )
        con.execute("INSERT INTO boots (id, boot) VALUES (1, ?)", (BOOT,))
        for seq, kind, _device in outbox:
            stored = _EVENT if kind else next(h[2] for h in _HISTORY if h[0] == seq)
            n = 1 if kind else next(ids[(h[1], h[4] or "\x00")] for h in _HISTORY if h[0] == seq)
            con.execute(
                "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, 1, ?, 1, ?)",
                (seq, kind, n, stored, 1000.0 + seq, float(seq), len(_published(seq)) + 48),
            )
    con.execute("INSERT INTO meta (key, value) VALUES ('last_seq', '7')")
    con.commit()
    con.close()


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_each_earlier_schema_upgrades_with_nothing_lost(tmp_path: Path, version: int) -> None:
    """State, history and outbox read back as that migw wrote them (a big integer, text
    with escapes, -0.0 included), numbering continues after the last number, and the
    read-only view sees the same afterwards."""
    path = tmp_path / "state.db"
    _old_file(path, version)
    state = {
        "count": (2**64, None, 1004.0, 5),
        "note": ("crème\n", None, 1005.0, 6),
        "offset": (-0.0, None, 1006.0, 7),
        "open": (False, None, 1001.0, 2),
        "temperature": (21.0, "°C", 1002.0, 3),
    }
    history = [(1, "temperature", 20.0, 1000.0), (2, "open", False, 1001.0)] + [
        (seq, metric, state[metric][0], ts) for seq, metric, _, ts, _ in _HISTORY[2:]
    ]
    async with await Store.open(path) as store:
        assert await store.state("gpio-a") == state
        assert str((await store.state("gpio-a"))["offset"][0]) == "-0.0"
        assert await store.history("gpio-a") == history
        rows = await store.outbox_fetch(10)
        assert [(r.seq, r.device_id, r.body, r.ts, r.boot, r.mono, r.size) for r in rows] == [
            (
                s,
                "gpio-b" if s == 4 else "gpio-a",
                _published(s),
                1000.0 + s,
                BOOT,
                float(s),
                len(_published(s)) + 48,
            )
            for s in (3, 4, 5, 6, 7)
        ]
        store.add_reading(reading("gpio-a", "temperature", 22.0, "°C", wall=2000.0))
        await store.flush()
        assert store.last_seq == 8
        assert (await store.state("gpio-a"))["temperature"] == (22.0, "°C", 2000.0, 8)
        assert [r.seq for r in await store.outbox_fetch(10)] == [3, 4, 5, 6, 7, 8]
    ro = await open_readonly(path)
    try:
        assert await ro.state("gpio-a") == {**state, "temperature": (22.0, "°C", 2000.0, 8)}
        assert await ro.history("gpio-a") == [*history, (8, "temperature", 22.0, 2000.0)]
    finally:
        await ro.close()
