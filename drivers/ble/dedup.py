"""De-duplication of repeated adverts and replay protection for encrypted BTHome. Pure.

Sensors send each frame several times. A repeat is the same (MAC, format, counter, payload)
seen again within the window. Frames without any counter (plain BTHome without packet id)
use a short window, so a real second button press a few seconds later is not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.ble.decoder import FORMATS
from drivers.ble.types import Decoded, mac_digits

#: Repeats of a frame that carries no counter are only dropped within this many seconds.
NO_COUNTER_WINDOW_S = 2.0
#: A BTHome counter below this after one above RESET_FROM is taken as a device reboot.
RESET_BELOW = 100
RESET_FROM = 1000

#: (MAC, service UUID, payload) in one compact bytes object: the sender (:func:`sender_key`),
#: a byte naming the format, the payload. The payload holds the frame/packet counter, so
#: this is the (MAC, format, counter, payload) of the issue, and it can be checked before
#: decoding. At 1,000 sensors the table is full: one bytes object per entry (about 60 B)
#: instead of a tuple of three (about 120 B).
DedupKey = bytes
#: One byte per advert format (its service UUID); another UUID is spelled out.
FORMAT_TAGS = {uuid: bytes([i]) for i, uuid in enumerate(FORMATS)}


def sender_key(mac: str) -> bytes:
    """The sender's part of a key: a MAC's 6 bytes, or another address's text (a macOS
    UUID), after its length (so no key can be read two ways)."""
    digits = mac_digits(mac)
    raw = bytes.fromhex(digits) if digits is not None else mac.encode()
    return bytes([len(raw) & 0xFF]) + raw


def dedup_key(sender: bytes, uuid: str, payload: bytes) -> DedupKey:
    tag = FORMAT_TAGS.get(uuid)
    if tag is None:
        tag = b"\xff" + uuid.encode() + b"\x00"
    return b"".join((sender, tag, payload))


def window_for(result: Decoded, window_s: float) -> float:
    return (
        window_s
        if result.counter is not None or result.replay_counter is not None
        else (min(window_s, NO_COUNTER_WINDOW_S))
    )


@dataclass(slots=True)
class Deduplicator:
    window_s: float = 60.0
    max_entries: int = 16384
    dropped: int = 0
    #: Key -> the end of its window, oldest first (one float per entry, in a plain dict: at
    #: 1,000 sensors the table is full, and an OrderedDict's links cost 1 MB more).
    _seen: dict[DedupKey, float] = field(default_factory=dict)

    def check(self, key: DedupKey, now: float) -> bool:
        """True (and counted) when ``key`` was remembered within its window."""
        until = self._seen.get(key)
        if until is not None and now <= until:
            self.dropped += 1
            return True
        return False

    def remember(self, key: DedupKey, now: float, window: float) -> None:
        self._expire(now)
        seen = self._seen
        seen.pop(key, None)  # again: it moves to the end
        seen[key] = now + window
        if len(seen) > self.max_entries:
            del seen[next(iter(seen))]

    def is_duplicate(self, result: Decoded, now: float) -> bool:
        """Check and remember a decoded frame in one step."""
        key = dedup_key(sender_key(result.mac), result.uuid, result.payload)
        if self.check(key, now):
            return True
        self.remember(key, now, window_for(result, self.window_s))
        return False

    def _expire(self, now: float) -> None:
        """Forget the oldest entries whose window has passed (they can match nothing)."""
        seen = self._seen
        while seen:
            key, until = next(iter(seen.items()))
            if now <= until:
                break
            del seen[key]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(slots=True)
class ReplayGuard:
    """Rejects encrypted BTHome frames whose counter does not move forward (per MAC)."""

    rejected: int = 0
    resets: int = 0
    _last: dict[str, int] = field(default_factory=dict)

    def accept(self, result: Decoded) -> bool:
        counter = result.replay_counter
        if counter is None:
            return True
        last = self._last.get(result.mac)
        if last is not None and counter <= last:
            if counter < RESET_BELOW <= RESET_FROM <= last:
                self.resets += 1  # the device restarted and began counting again
            else:
                self.rejected += 1
                return False
        self._last[result.mac] = counter
        return True
