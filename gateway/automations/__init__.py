"""Local automations and BLE presence: the home reacts on the gateway itself.

``create(service)`` is the component factory the service's composition root calls
(``gateway.service.Service.automations``). The
component feeds the :class:`~gateway.automations.engine.Engine` from the store's commits
(so only committed readings trigger anything), sends its commands through the service's
command router, records every firing as an event in the store (it gets a ``seq`` and goes
out through the outbox like any event, also while the uplink is down), and keeps traces,
pending timers and non-reading inputs in ``automations.db`` (see :mod:`.journal`).

It follows ``service.config`` itself: after a reload (SIGHUP) it loads the new
``[[automations]]`` into the running engine, keeping the timers of unchanged automations,
so the service never restarts it for a config change. See docs/automations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gateway.automations.engine import Engine
from gateway.automations.journal import FILE_NAME, Journal
from gateway.automations.model import PERSON_PREFIX, PRESENCE_METRIC, SOURCE, Input, Trace
from gateway.config import PresenceSection
from gateway.driver import DriverHealth, Health
from gateway.model import (
    Command,
    CommandResult,
    DeviceUpdate,
    Event,
    Transport,
)

if TYPE_CHECKING:
    from drivers.ble.presence import (
        Identity,
        Person,
        PresenceChange,
        PresenceTimings,
        PresenceTracker,
    )
    from drivers.ble.types import Advertisement
    from gateway.service import Service
    from gateway.store import Commit

_LOGGER = logging.getLogger(__name__)

#: Timers run this long after their deadline, so a reading stamped just before it (still in
#: the store's commit batch, at most batch_max_ms) is handled first, as a replay would.
LIVE_LAG_S = 0.2
#: The uplink's state and a config reload are looked at this often (seconds).
POLL_S = 1.0
#: Presence timeouts are checked this often (seconds).
PRESENCE_TICK_S = 1.0


def people_of(section: PresenceSection) -> list[Person]:
    # the presence code is imported when people are tracked, not with every automation
    from drivers.ble.presence import Person, identity

    out: list[Person] = []
    for p in section.people:
        idents: list[Identity] = [identity("irk", k.reveal()) for k in p.irk]
        idents += [identity("ibeacon", v) for v in p.ibeacon]
        idents += [identity("eddystone", v) for v in p.eddystone]
        idents += [identity("address", v) for v in p.address]
        out.append(Person(p.name, tuple(idents)))
    return out


def timings_of(section: PresenceSection) -> PresenceTimings:
    from drivers.ble.presence import PresenceTimings

    return PresenceTimings(
        home_rssi=section.home_rssi,
        hysteresis_db=section.hysteresis_db,
        away_after_s=section.away_after_s,
        rssi_alpha=section.rssi_alpha,
    )


class _LiveEffects:
    def __init__(self, owner: Automations) -> None:
        self._owner = owner
        #: perf_counter() when each command was carried out (bench: commit -> command).
        self.command_times: list[float] = []

    async def command(self, device: str, command: Command) -> CommandResult:
        result = await self._owner.service.commands.execute(device, command)
        self.command_times.append(time.perf_counter())
        if len(self.command_times) > 10_000:
            del self.command_times[:5_000]
        return result

    def record(self, trace: Trace, action: str, message: str = "") -> None:
        svc = self._owner.service
        if svc.ingest is None or svc.store is None:
            return
        svc.store.add_event(
            Event(
                device_id=f"automation-{trace.automation}",
                event="message" if action == "message" else "automation",
                action=message if action == "message" else action,
                stamp=svc.ingest.stamp(),
                source=SOURCE,
                properties=(("run", trace.run),),
            )
        )

    def trace_done(self, trace: Trace) -> None:
        self._owner.save_trace(trace)


class Automations:
    """The live automation engine and presence tracker of a service."""

    name = "automations"

    def __init__(self, service: Service) -> None:
        self.service = service
        self.engine: Engine | None = None
        self.effects = _LiveEffects(self)
        self.tracker: PresenceTracker | None = None
        self._journal: Journal | None = None
        #: Commits (their readings and events are the inputs, taken in order) and other
        #: inputs; None wakes the loop (a spawned run set a timer).
        self._queue: asyncio.Queue[Commit | Input | None] = asyncio.Queue()
        self._instance = f"{time.time():.6f}"
        self._automations = service.config.automations
        self._presence = service.config.presence
        self._location = service.config.location
        self._saved_timers: list[dict[str, Any]] = []
        self._uplink_seen: bool | None = None
        self.counters: dict[str, int] = {"inputs": 0, "presence_changes": 0}
        self.reason = ""

    # -------------------------------------------------------------- public (API, CLI)

    def health(self) -> DriverHealth:
        engine = self.engine
        counters = dict(self.counters)
        if engine is not None:
            counters.update(engine.counters)
            counters["running"] = engine.running()
        info = {"automations": str(len(self.service.config.automations))}
        if self.tracker is not None:
            info["people_home"] = ",".join(
                p.name for p in self.tracker.people if self.tracker.is_home(p.name)
            )
        health = Health.DEGRADED if self.reason else Health.OK
        return DriverHealth(health=health, reason=self.reason, counters=counters, info=info)

    def listing(self) -> list[dict[str, Any]]:
        engine = self.engine
        out: list[dict[str, Any]] = []
        for auto in self.service.config.automations:
            traces = list(engine.traces.get(auto.id, ())) if engine else []
            last = next((t for t in reversed(traces) if t.outcome == "fired"), None)
            out.append(
                {
                    "id": auto.id,
                    "name": auto.name,
                    "enabled": engine.enabled.get(auto.id, auto.enabled)
                    if engine
                    else auto.enabled,
                    "triggers": [t.type for t in auto.triggers],
                    "last_fired": engine.last_fired.get(auto.id) if engine else None,
                    "last_trigger": last.trigger if last else None,
                }
            )
        return out

    def traces(self, automation: str, limit: int = 20) -> list[Trace]:
        if self._journal is not None:
            return self._journal.traces(automation, limit)
        return []

    def set_enabled(self, automation: str, on: bool) -> None:
        if self.engine is None:
            raise KeyError(automation)
        self.engine.set_enabled(automation, on)
        if self._journal is not None:
            self._journal.set_enabled(automation, on)

    def save_trace(self, trace: Trace) -> None:
        if self._journal is not None:
            try:
                self._journal.save_trace(self._instance, trace)
            except Exception as exc:  # noqa: BLE001 - a full disk must not stop automations
                self.reason = f"cannot write traces: {exc}"

    # -------------------------------------------------------------- run

    async def run(self) -> None:
        svc = self.service
        store = svc.store
        assert store is not None
        self._journal = Journal.open(svc.state_dir / FILE_NAME)
        engine = Engine(self._automations, self.effects, location=self._location, start=time.time())
        for device in await store.devices():
            for metric, (value, _unit, ts, _seq) in (await store.state(device.id)).items():
                engine.seed(device.id, metric, value, ts)
        for aid, on in self._journal.enabled().items():
            with contextlib.suppress(KeyError):
                engine.set_enabled(aid, on)
        for note in engine.restore(self._journal.timers()):
            _LOGGER.warning("automations after a restart: %s", note)
        self.engine = engine
        self._setup_presence()
        self._saved_timers = engine.timers()
        unsubscribe = store.subscribe(self._on_commit)
        unhook = self._hook_ble()
        try:
            async with asyncio.TaskGroup() as tg:
                engine.spawn = _spawner(tg)  # commands run as tasks of this group
                engine.on_change = lambda: self._queue.put_nowait(None)  # a new deadline
                tg.create_task(self._loop(engine), name="automations-engine")
                if self.tracker is not None:
                    tg.create_task(self._presence_loop(), name="automations-presence")
                if svc.demo is not None and self.tracker is not None:
                    tg.create_task(self._demo_phone(), name="automations-demo-phone")
        finally:
            unsubscribe()
            unhook()
            self._journal.close()
            self._journal = None

    async def _loop(self, engine: Engine) -> None:
        next_poll = 0.0
        saved_version = engine.version
        queue = self._queue
        while True:
            item: Commit | Input | None = None
            if not queue.empty():  # a burst of commits: no timeout to arm per item
                item = queue.get_nowait()
            else:
                deadline = engine.next_deadline()
                wait = POLL_S if deadline is None else deadline + LIVE_LAG_S - time.time()
                try:
                    async with asyncio.timeout(max(0.0, min(wait, POLL_S))):
                        item = await queue.get()
                except TimeoutError:
                    pass
            if isinstance(item, Input):
                await self._input(engine, item)
            elif item is not None:
                await self._commit(engine, item)
            await engine.advance(time.time() - LIVE_LAG_S)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + POLL_S
                self._poll_uplink()
                self._follow_config(engine)
            if engine.version != saved_version:  # timers or runs changed: save if they differ
                saved_version = engine.version
                timers = engine.timers()
                if timers != self._saved_timers and self._journal is not None:
                    self._saved_timers = timers
                    self._journal.save_timers(timers)

    async def _input(self, engine: Engine, inp: Input) -> None:
        self.counters["inputs"] += 1
        if inp.kind != "reading":
            self._journal_input(inp)
        await engine.handle(inp)

    async def _commit(self, engine: Engine, commit: Commit) -> None:
        """A commit's readings, then its events (not the automations' own), as inputs."""
        for r in commit.readings:
            self.counters["inputs"] += 1
            await engine.reading(r.stamp.wall, r.device_id, r.metric, r.value, r.seq)
        for e in commit.events:
            if e.source != SOURCE:
                inp = Input(e.stamp.wall, "event", e.device_id, e.event, e.action, e.button, e.seq)
                await self._input(engine, inp)

    def _journal_input(self, inp: Input) -> None:
        if self._journal is not None:
            try:
                self._journal.add_input(inp)
            except Exception as exc:  # noqa: BLE001 - replay data only; keep reacting
                self.reason = f"cannot write automations.db: {exc}"

    def _on_commit(self, commit: Commit) -> None:
        if commit.readings or commit.events:
            self._queue.put_nowait(commit)  # its inputs are made as the loop takes them

    def _poll_uplink(self) -> None:
        link = getattr(self.service.sync, "upstream", None)
        if link is None:
            return
        up = bool(getattr(link, "connected", False))
        if up != self._uplink_seen:
            self._uplink_seen = up
            self._queue.put_nowait(Input(time.time(), "uplink", value=up))

    def _follow_config(self, engine: Engine) -> None:
        cfg = self.service.config
        if cfg.automations != self._automations or cfg.location != self._location:
            self._automations, self._location = cfg.automations, cfg.location
            engine.location = cfg.location
            dropped = engine.load(cfg.automations)
            _LOGGER.info(
                "automations reloaded: %d defined%s",
                len(cfg.automations),
                f"; pending work dropped for {', '.join(dropped)}" if dropped else "",
            )
        if cfg.presence != self._presence:
            self._presence = cfg.presence
            self._setup_presence()

    # -------------------------------------------------------------- presence

    def _setup_presence(self) -> None:
        section = self._presence
        if not section.people:
            self.tracker = None
            return
        from drivers.ble.presence import PresenceTracker

        self.tracker = PresenceTracker(people_of(section), timings_of(section))
        svc = self.service
        if svc.ingest is None:
            return
        sink = svc.ingest.sink_for("presence")
        for p in self.tracker.people:
            sink.device(
                DeviceUpdate(
                    id=PERSON_PREFIX + p.name,
                    transport=Transport.BLE,
                    model="presence",
                    name=p.name,
                    manufacturer="migw",
                )
            )

    def _hook_ble(self) -> Callable[[], None]:
        ble = self.service.driver("ble")
        listeners: list[Callable[[Advertisement], None]] | None = getattr(
            ble, "advert_listeners", None
        )
        if listeners is None:
            return lambda: None
        listeners.append(self.on_advert)
        return lambda: listeners.remove(self.on_advert)

    def on_advert(self, adv: Advertisement) -> None:
        tracker = self.tracker
        if tracker is not None:
            self._presence_changes(tracker.observe(adv, time.monotonic()))

    def _presence_changes(self, changes: list[PresenceChange]) -> None:
        svc = self.service
        if not changes or svc.ingest is None:
            return
        sink = svc.ingest.sink_for("presence")
        for ch in changes:
            self.counters["presence_changes"] += 1
            _LOGGER.info("%s is %s", ch.person, "home" if ch.home else "away")
            sink.reading(PERSON_PREFIX + ch.person, PRESENCE_METRIC, ch.home)

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_TICK_S)
            if self.tracker is not None:
                self._presence_changes(self.tracker.tick(time.monotonic()))

    async def _demo_phone(self) -> None:
        """Demo: a simulated phone with a rotating private address leaves and arrives."""
        from hw_mocks.phone import DEMO_IRK, SimulatedPhone

        phone = SimulatedPhone(bytes.fromhex(DEMO_IRK))
        ble = self.service.driver("ble")
        while True:
            adv = phone.advert(time.monotonic())
            if adv is not None:
                handle = getattr(ble, "handle", None)
                if handle is not None:
                    handle(adv)  # through the BLE driver, as the scanner delivers it
                else:
                    self.on_advert(adv)
            await asyncio.sleep(1.0)


def _spawner(tg: asyncio.TaskGroup) -> Callable[[Coroutine[Any, Any, None]], object]:
    count = itertools.count(1)

    def spawn(coro: Coroutine[Any, Any, None]) -> object:
        return tg.create_task(coro, name=f"automations-command-{next(count)}")

    return spawn


def create(service: Service) -> Automations | None:
    cfg = service.config
    if not cfg.automations and not cfg.presence.people:
        return None
    return Automations(service)
