"""De-duplication of repeated adverts and replay protection for encrypted BTHome and
MiBeacon v4/v5 frames. Pure.

Sensors send each frame several times. A repeat is the same (MAC, format, counter, payload)
seen again within the window. Frames without any counter (plain BTHome without packet id)
use a short window, so a real second button press a few seconds later is not dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.ble.decoder import FORMATS
from drivers.ble.types import Decoded

#: Repeats of a frame that carries no counter are only dropped within this many seconds.
NO_COUNTER_WINDOW_S = 2.0
#: A counter below this after one of at least RESET_FROM is taken as a device reboot.
RESET_BELOW = 100
RESET_FROM = 1000

#: One small int per advert format (its service UUID; ints below 257 are shared objects, so
#: a remembered frame's format costs one list slot). Another UUID is kept as its text.
FORMAT_INDEX: dict[str, int] = {uuid: i for i, uuid in enumerate(FORMATS)}

#: A format as remembered: its :data:`FORMAT_INDEX`, or the UUID text of another.
FormatId = int | str


def format_id(uuid: str) -> FormatId:
    return FORMAT_INDEX.get(uuid, uuid)


def window_for(result: Decoded, window_s: float) -> float:
    return (
        window_s
        if result.counter is not None or result.replay_counter is not None
        else (min(window_s, NO_COUNTER_WINDOW_S))
    )


#: One sender's remembered frames, flat and oldest first: ``[format, payload, until, ...]``
#: (:data:`FormatId`, ``bytes``, ``float``; one list instead of a tuple or object per frame).
Frames = list[Any]


@dataclass(slots=True)
class Deduplicator:
    """Recent frames per sender: a repeat is a (sender, format, payload) remembered within
    its window.

    Each sender's frames are one flat list (:data:`Frames`): about 80 B a frame (its payload
    bytes and the window's end) instead of a joined key, a float and a dict slot (about
    160 B). A repeat usually follows its frame: it is found by comparing the sender's newest
    frame first, without building a key.

    Bounds: ``max_entries`` frames in all (the oldest frame of the sender that remembered
    one least recently goes first), and, when set, ``per_sender`` frames per sender (its
    oldest goes first: that sender has sent ``per_sender`` newer frames since). A frame
    whose window passed matches nothing; :meth:`expire` forgets those.
    """

    window_s: float = 60.0
    max_entries: int = 16384
    per_sender: int | None = None
    dropped: int = 0
    #: Sender -> its frames; the sender that remembered a frame least recently first.
    _senders: dict[str, Frames] = field(default_factory=dict)
    _count: int = 0

    def check(self, sender: str, fmt: FormatId, payload: bytes, now: float) -> bool:
        """True (and counted) when ``sender`` sent this payload of this format within its
        window. (The newest matching frame decides: one remembered again after its window
        passed is there twice, the older one stale.)"""
        frames = self._senders.get(sender)
        if frames is None:
            return False
        i = len(frames) - 2
        while i > 0:  # newest first: a repeat usually follows its frame
            if frames[i] == payload and frames[i - 1] == fmt:
                if now <= frames[i + 1]:
                    self.dropped += 1
                    return True
                return False
            i -= 3
        return False

    def remember(
        self, sender: str, fmt: FormatId, payload: bytes, now: float, window: float
    ) -> None:
        senders = self._senders
        frames = senders.pop(sender, None)  # it moves to the end: the most recent sender
        if frames is None:
            frames = []
        frames += (fmt, payload, now + window)
        self._count += 1
        per_sender = self.per_sender
        if per_sender is not None and len(frames) > 3 * per_sender:
            del frames[:3]
            self._count -= 1
        senders[sender] = frames
        while self._count > self.max_entries:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Forget the oldest frame of the sender that remembered one least recently."""
        senders = self._senders
        sender = next(iter(senders))
        frames = senders[sender]
        del frames[:3]
        if not frames:
            del senders[sender]
        self._count -= 1

    def expire(self, now: float) -> int:
        """Forget every frame whose window has passed (they can match nothing), and the
        senders left with none; returns how many frames were forgotten."""
        gone = 0
        senders = self._senders
        for sender, frames in list(senders.items()):
            kept = [
                x
                for i in range(0, len(frames), 3)
                if now <= frames[i + 2]
                for x in frames[i : i + 3]
            ]
            if len(kept) != len(frames):
                gone += (len(frames) - len(kept)) // 3
                if kept:
                    frames[:] = kept
                else:
                    del senders[sender]
        self._count -= gone
        return gone

    def is_duplicate(self, result: Decoded, now: float) -> bool:
        """Check and remember a decoded frame in one step."""
        fmt = format_id(result.uuid)
        if self.check(result.mac, fmt, result.payload, now):
            return True
        self.remember(result.mac, fmt, result.payload, now, window_for(result, self.window_s))
        return False

    def __len__(self) -> int:
        """Frames remembered (those whose window passed too, until :meth:`expire`)."""
        return self._count


@dataclass(slots=True)
class ReplayGuard:
    """Rejects encrypted frames (BTHome, MiBeacon v4/v5) whose authenticated counter does
    not move forward (per MAC)."""

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
