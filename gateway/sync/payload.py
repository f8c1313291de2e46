"""The MQTT wire contract of the sync agent as pure code: topics, batch payloads, commands.

No asyncio, no sockets, no SQLite: outbox rows in, bytes out (and back, for consumers and
tests). docs/mqtt.md is the prose version of this module; keep them in step.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store import OUTBOX_EVENT, OutboxRow

#: MQTT 5 content types of a telemetry batch (the ``Content Type`` property).
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_ZLIB = "application/zlib"
#: Payload bytes beyond which zlib is worth its CPU (smaller batches go out plain).
COMPRESS_MIN_BYTES = 512


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one gateway. ``prefix`` may contain '/', ``gateway`` may not."""

    prefix: str
    gateway: str
    discovery_prefix: str = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.gateway}"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def commands(self) -> str:
        """The subscription filter for commands."""
        return f"{self.base}/cmd/#"

    def command(self, device: str) -> str:
        return f"{self.base}/cmd/{device}/set"

    def result(self, device: str) -> str:
        """Default response topic (when the command carried no MQTT 5 response topic)."""
        return f"{self.base}/result/{device}"

    def state(self, device: str) -> str:
        return f"{self.base}/state/{device}"

    def availability(self, device: str) -> str:
        return f"{self.base}/availability/{device}"

    def event(self, device: str) -> str:
        return f"{self.base}/event/{device}"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def parse_command_topic(self, topic: str) -> str | None:
        """The device id of ``{base}/cmd/{device}/set``, else None."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head) or not topic.endswith("/set"):
            return None
        device = topic[len(head) : -len("/set")]
        if not device or "/" in device or "+" in device or "#" in device:
            return None
        return device


# ---------------------------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class ClockFix:
    """What it takes to re-stamp a row taken before NTP sync: this boot's id, and the
    offset ``wall - mono`` of a synchronised clock (None while unsynchronised)."""

    boot: str
    offset: float | None

    def restamp(self, row: OutboxRow) -> tuple[float, bool]:
        """(timestamp to publish, trustworthy?) for a row."""
        if row.synced:
            return row.ts, True
        if self.offset is not None and row.boot == self.boot:
            return self.offset + row.mono, True
        return row.ts, False


class RowError(ValueError):
    """An outbox row whose body is not the JSON object the store writes (never published)."""


#: Keys the splicing puts around a stored body: a stored key of that name is dropped.
SPLICED_KEYS = frozenset({"seq", "ts", "boot", "mono", "clock"})


def item_json(row: OutboxRow, fix: ClockFix) -> str:
    """One reading or event of a batch, spliced from the stored body.

    The body is a JSON object written by the store (``{"device":..,"metric":..,"value":..}``
    plus an optional ``"unit"``); its keys go between ``seq`` and ``ts``. A ``,"`` can only
    occur outside JSON strings (inside, quotes are escaped), so the unit test is exact.
    A reading's body has fixed keys and is not re-parsed; an event's body (``device``,
    ``event``, ``action``, optional ``button``, then the event's properties) is: a
    property named like a spliced key (:data:`SPLICED_KEYS`) or repeating an earlier key
    is dropped, so the published object never has a duplicate key.
    """
    body = row.body
    if len(body) < 2 or body[0] != "{" or body[-1] != "}":
        raise RowError(f"outbox row {row.seq} has a corrupt body")
    ts, trusted = fix.restamp(row)
    inner = _event_inner(row) if row.kind == OUTBOX_EVENT else body[1:-1]
    unit = ',"unit":null' if row.kind != OUTBOX_EVENT and ',"unit":' not in inner else ""
    sep = "," if inner else ""
    clock = "" if trusted else ',"clock":"unsynced"'
    return (
        f'{{"seq":{row.seq}{sep}{inner}{unit},"ts":{_num(ts)},"boot":{_boot_json(row.boot)}'
        f',"mono":{_num(row.mono)}{clock}}}'
    )


def _event_inner(row: OutboxRow) -> str:
    """The members of an event body without spliced keys and repeated keys (first wins)."""
    top: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        top[:] = [pairs]  # the outermost object is decoded last
        return dict(pairs)

    try:
        json.loads(row.body, object_pairs_hook=hook)
    except ValueError:
        raise RowError(f"outbox row {row.seq} has a corrupt body") from None
    pairs = top[0] if top else []
    seen: set[str] = set()
    members: list[str] = []
    for key, value in pairs:
        if key in SPLICED_KEYS or key in seen:
            continue
        seen.add(key)
        members.append(f"{_dumps(key)}:{_dumps(value)}")
    return ",".join(members)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def is_corrupt(row: OutboxRow) -> bool:
    """Whether :func:`item_json` refuses the row (it is dead-lettered, never published)."""
    body = row.body
    if len(body) < 2 or body[0] != "{" or body[-1] != "}":
        return True
    if row.kind == OUTBOX_EVENT:
        try:
            _event_inner(row)
        except RowError:
            return True
    return False


@functools.lru_cache(maxsize=16)
def _boot_json(boot: str) -> str:
    return json.dumps(boot)


def _num(value: float) -> str:
    if not math.isfinite(value):  # never in our store
        return "null"
    return repr(value) if type(value) is float else repr(float(value))


@dataclass(frozen=True, slots=True)
class Encoded:
    payload: bytes
    content_type: str
    #: Size of the JSON before compression.
    raw_size: int


def encode_batch(
    gateway: str,
    batch: int,
    rows: Sequence[OutboxRow],
    fix: ClockFix,
    *,
    backlog: bool = False,
    compress: bool = False,
) -> Encoded:
    """The telemetry payload of ``rows`` (in seq order). Raises RowError on a corrupt row."""
    readings: list[str] = []
    events: list[str] = []
    for row in rows:
        (events if row.kind == OUTBOX_EVENT else readings).append(item_json(row, fix))
    head = json.dumps(
        {"gateway": gateway, "batch": batch, "backlog": backlog},
        separators=(",", ":"),
        ensure_ascii=False,
    )[:-1]
    text = f'{head},"readings":[{",".join(readings)}],"events":[{",".join(events)}]}}'
    raw = text.encode("utf-8")
    if compress and len(raw) >= COMPRESS_MIN_BYTES:
        return Encoded(zlib.compress(raw, 6), CONTENT_TYPE_ZLIB, len(raw))
    return Encoded(raw, CONTENT_TYPE_JSON, len(raw))


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded telemetry payload (for consumers, tests and ``migw`` tooling)."""

    gateway: str
    batch: int
    backlog: bool
    readings: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]

    def seqs(self) -> list[int]:
        return sorted(int(i["seq"]) for i in (*self.readings, *self.events))


def decode_batch(payload: bytes, content_type: str | None = None) -> Batch:
    """Inverse of :func:`encode_batch`. ``content_type`` None: sniffed (MQTT 3.1.1 has no
    content type; JSON starts with ``{``, zlib with 0x78). Raises ValueError."""
    if content_type == CONTENT_TYPE_ZLIB or (content_type is None and payload[:1] == b"\x78"):
        try:
            payload = zlib.decompress(payload)
        except zlib.error as exc:
            raise ValueError(f"bad zlib payload: {exc}") from None
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("a batch is a JSON object")  # noqa: TRY004 - one error type for bad input
    try:
        return Batch(
            gateway=str(data["gateway"]),
            batch=int(data["batch"]),
            backlog=bool(data.get("backlog", False)),
            readings=tuple(data["readings"]),
            events=tuple(data["events"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a migw batch: {exc}") from None


# ---------------------------------------------------------------------------------- acks


class Refusal(enum.Enum):
    """What to do when the broker answers a PUBLISH with an MQTT 5 failure reason code."""

    MESSAGE = "message"  # this message is the problem: split it, dead-letter a single row
    TRANSIENT = "transient"  # the broker is busy: reconnect with backoff, resend
    CONFIG = "config"  # not authorised / bad topic: needs a human, keep the data


#: MQTT 5 PUBACK reason codes >= 0x80 (section 3.4.2.1) and how we treat them.
REFUSALS: dict[int, Refusal] = {
    0x80: Refusal.MESSAGE,  # unspecified error
    0x83: Refusal.MESSAGE,  # implementation specific error (plugin refused the message)
    0x87: Refusal.CONFIG,  # not authorized
    0x90: Refusal.CONFIG,  # topic name invalid
    0x91: Refusal.TRANSIENT,  # packet identifier in use
    0x95: Refusal.MESSAGE,  # packet too large
    0x97: Refusal.TRANSIENT,  # quota exceeded
    0x99: Refusal.MESSAGE,  # payload format invalid
}


def classify_refusal(code: int) -> Refusal | None:
    """None for success codes (< 0x80, including 0x10 "no matching subscribers")."""
    if code < 0x80:
        return None
    return REFUSALS.get(code, Refusal.MESSAGE)


# ---------------------------------------------------------------------------------- commands

_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def split_command_body(payload: bytes) -> tuple[Any, str | None]:
    """(command body for :func:`gateway.commands.parse_command`, request id or None).

    The body is JSON; a bare word (``on``) is accepted too. An ``"id"`` field is taken out
    and echoed in the response (MQTT 3.1.1 has no correlation data). Raises ValueError.
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("command is not UTF-8") from None
    if not text:
        raise ValueError("empty command")
    if text[0] not in '{["' and re.fullmatch(r"[A-Za-z]{1,16}", text):
        return text.lower(), None  # ON / OFF as Home Assistant and zigbee2mqtt send them
    try:
        body = json.loads(text)
    except ValueError:
        raise ValueError("command is not valid JSON") from None
    request_id: str | None = None
    if isinstance(body, dict) and "id" in body:
        body = dict(body)
        rid = body.pop("id")
        if (
            not isinstance(rid, str | int)
            or isinstance(rid, bool)
            or not _ID_RE.fullmatch(str(rid))
        ):
            raise ValueError("'id' must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        request_id = str(rid)
    return body, request_id


def result_payload(
    device: str,
    status: str,
    detail: str = "",
    state: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> bytes:
    body: dict[str, Any] = {"device": device, "status": status, "ok": status == "ok"}
    if detail:
        body["detail"] = detail
    body["state"] = state or {}
    if request_id is not None:
        body["id"] = request_id
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
