"""MT/ZNP frame codec and stream framer (pure: bytes in, frozen values out).

Wire layout (TI Z-Stack Monitor and Test API)::

    SOF 0xFE | LEN u8 | CMD0 u8 | CMD1 u8 | DATA (LEN bytes) | FCS u8

``FCS`` is the XOR of LEN, CMD0, CMD1 and every DATA byte. ``CMD0`` is
``(type << 5) | subsystem``. ``LEN`` is at most 250.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.errors import ParseError

SOF = 0xFE
MAX_DATA_LEN = 250
#: SOF + LEN + CMD0 + CMD1 + FCS
OVERHEAD = 5


@dataclass(frozen=True, slots=True)
class Frame:
    """One MT frame: the header split into its parts, and the raw payload."""

    type: int  # types.CommandType value (raw 3 bits; unknown values kept as numbers)
    subsystem: int  # types.Subsystem value (raw 5 bits)
    cmd_id: int
    data: bytes = b""

    @property
    def cmd0(self) -> int:
        return ((self.type & 0x07) << 5) | (self.subsystem & 0x1F)

    @property
    def header(self) -> tuple[int, int]:
        return (self.cmd0, self.cmd_id)

    @classmethod
    def from_header(cls, cmd0: int, cmd1: int, data: bytes = b"") -> Frame:
        return cls(cmd0 >> 5, cmd0 & 0x1F, cmd1, data)


def fcs(body: bytes | bytearray | memoryview) -> int:
    """XOR checksum over LEN, CMD0, CMD1 and DATA.

    Computed by folding the bytes as one integer (halves XORed until one byte is left):
    a handful of big-integer operations instead of a Python loop per byte.
    """
    x = int.from_bytes(body, "little")
    nbytes = len(body)
    while nbytes > 1:
        half = (nbytes + 1) // 2
        x = (x & ((1 << (8 * half)) - 1)) ^ (x >> (8 * half))
        nbytes = half
    return x


def encode(frame: Frame) -> bytes:
    """Serialize a frame with SOF and FCS. ``ValueError`` for an oversized payload (our bug)."""
    n = len(frame.data)
    if n > MAX_DATA_LEN:
        raise ValueError(f"MT payload of {n} bytes exceeds {MAX_DATA_LEN}")
    body = bytes((n, frame.cmd0, frame.cmd_id)) + frame.data
    return b"\xfe" + body + bytes((fcs(body),))


def decode(raw: bytes) -> Frame:
    """Decode exactly one whole frame (SOF .. FCS). Anything else is a :class:`ParseError`."""
    if len(raw) < OVERHEAD:
        raise ParseError(f"MT frame too short: {len(raw)} bytes")
    if raw[0] != SOF:
        raise ParseError(f"MT frame does not start with SOF 0xFE but 0x{raw[0]:02X}")
    n = raw[1]
    if n > MAX_DATA_LEN:
        raise ParseError(f"MT length {n} exceeds {MAX_DATA_LEN}")
    if len(raw) != n + OVERHEAD:
        raise ParseError(f"MT length byte says {n + OVERHEAD} bytes, got {len(raw)}")
    body = raw[1:-1]
    want = fcs(body)
    if want != raw[-1]:
        raise ParseError(f"MT FCS mismatch: got 0x{raw[-1]:02X}, computed 0x{want:02X}")
    return Frame.from_header(raw[2], raw[3], bytes(raw[4:-1]))


class Framer:
    """Buffers a byte stream and cuts it into frames.

    * bytes before a SOF are dropped (counted in ``garbage_bytes``);
    * a frame that is not complete yet stays buffered ("incomplete, wait");
    * a malformed frame (length > 250 or FCS mismatch) is dropped up to the next SOF after
      its own SOF and counted in ``bad_frames`` ("malformed, resync");
    * an incomplete frame that stays incomplete (a corrupted length byte claims more bytes
      than the stick sends) holds the frames behind it hostage: whoever owns the clock calls
      :meth:`expire` once it waited too long, and it is dropped as malformed the same way.
    """

    __slots__ = ("_buf", "_offset", "bad_frames", "frames", "garbage_bytes")

    #: Bytes kept at most while waiting (a whole frame is 255): guards against a flood.
    MAX_BUFFER = 4096

    def __init__(self) -> None:
        self._buf = bytearray()
        #: Stream offset of ``_buf[0]`` (tells one incomplete frame from the next).
        self._offset = 0
        self.frames = 0
        self.bad_frames = 0
        self.garbage_bytes = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def waiting_at(self) -> int | None:
        """Stream offset of the incomplete frame kept waiting (None: nothing buffered)."""
        return self._offset if self._buf else None

    def reset(self) -> None:
        self._offset += len(self._buf)
        self._buf.clear()

    def expire(self) -> list[Frame]:
        """The buffered incomplete frame will not complete: drop its SOF as malformed
        (counted in ``bad_frames``) and return the frames found in the bytes after it."""
        if not self._buf:
            return []
        self.bad_frames += 1
        del self._buf[:1]
        self._offset += 1
        return self.feed(b"")

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        buf = self._buf
        buf += chunk
        out: list[Frame] = []
        pos = 0
        end = len(buf)
        while pos < end:
            if buf[pos] != SOF:
                nxt = buf.find(SOF, pos)
                if nxt < 0:
                    self.garbage_bytes += end - pos
                    pos = end
                    break
                self.garbage_bytes += nxt - pos
                pos = nxt
            if end - pos < 2:
                break  # incomplete: need the length byte
            n = buf[pos + 1]
            if n > MAX_DATA_LEN:
                self.bad_frames += 1
                pos += 1  # resync to the next SOF
                continue
            total = n + OVERHEAD
            if end - pos < total:
                break  # incomplete: wait for more bytes
            if fcs(buf[pos + 1 : pos + total - 1]) != buf[pos + total - 1]:
                self.bad_frames += 1
                pos += 1
                continue
            out.append(
                Frame(
                    buf[pos + 2] >> 5,
                    buf[pos + 2] & 0x1F,
                    buf[pos + 3],
                    bytes(buf[pos + 4 : pos + total - 1]),
                )
            )
            pos += total
        if pos:
            del buf[:pos]
            self._offset += pos
        if len(buf) > self.MAX_BUFFER:  # cannot happen with valid lengths; belt and braces
            self.garbage_bytes += len(buf)
            self.reset()
        self.frames += len(out)
        return out
