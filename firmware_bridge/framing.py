"""COBS framing with 0x00 delimiters, stdlib only.

A frame on the wire is ``cobs(packet) + b"\\x00"``. COBS (Consistent Overhead
Byte Stuffing, Cheshire & Baker 1999) removes every zero byte from the packet, so
the delimiter can never appear inside a frame and a receiver resynchronizes at
the next zero after any garbage. Each run between zeros of L bytes costs
L // 254 + 1 code bytes and each zero none: n bytes grow by at most n // 254 + 1
(254 zero-free bytes take two code bytes: 0xFF, the run, then 0x01, as in the
reference code; decoders also take the form without that last 0x01).

>>> cobs_encode(b"\\x11\\x00\\x22")
b'\\x02\\x11\\x02"'
>>> cobs_decode(cobs_encode(b"\\x00" * 3))
b'\\x00\\x00\\x00'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DELIMITER = b"\x00"


class FramingError(ValueError):
    """A frame is not valid COBS."""


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data`` (no delimiter appended). Output contains no zero byte."""
    out = bytearray()
    for seg in bytes(data).split(b"\x00"):
        while len(seg) >= 254:
            out.append(0xFF)
            out += seg[:254]
            seg = seg[254:]
        out.append(len(seg) + 1)
        out += seg
    return bytes(out)


def cobs_decode(enc: bytes) -> bytes:
    """Decode one COBS block (without its delimiter). Raises FramingError if invalid."""
    n = len(enc)
    if n == 0:
        raise FramingError("empty COBS frame")
    if b"\x00" in enc:
        raise FramingError("zero byte inside a COBS frame")
    out = bytearray()
    i = 0
    while i < n:
        code = enc[i]
        j = i + code
        if j > n:
            raise FramingError(f"COBS code {code} at offset {i} runs past the frame end ({n} bytes)")
        out += enc[i + 1 : j]
        i = j
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def frame(packet: bytes) -> bytes:
    """One wire frame: COBS(packet) followed by the 0x00 delimiter."""
    return cobs_encode(packet) + DELIMITER


def max_frame_bytes(max_packet_bytes: int) -> int:
    """Worst-case wire size of a frame for a packet of ``max_packet_bytes``."""
    return max_packet_bytes + max_packet_bytes // 254 + 1 + 1


@dataclass
class DeframerStats:
    frames: int = 0  # frames handed to the packet decoder successfully
    cobs_errors: int = 0
    packet_errors: int = 0  # COBS fine, packet rejected (CRC, length, header)
    oversize: int = 0  # delimiter missing for longer than the largest frame
    empty: int = 0  # back-to-back delimiters (harmless; idle fill / resync)
    bytes_in: int = 0

    @property
    def errors(self) -> int:
        return self.cobs_errors + self.packet_errors + self.oversize


class Deframer:
    """Incremental receiver: bytes in, decoded items out. Never raises on input.

    ``decode`` turns the de-stuffed packet bytes into an item; it raises
    ``ValueError`` for an invalid packet, which is counted, not propagated.
    """

    def __init__(self, decode: Callable[[bytes], object], max_packet_bytes: int) -> None:
        self._decode = decode
        self._max_frame = max_frame_bytes(max_packet_bytes)
        self._buf = b""
        self._discarding = False
        self.stats = DeframerStats()
        self.last_error = ""

    def feed(self, data: bytes) -> list:
        self.stats.bytes_in += len(data)
        if b"\x00" not in data:
            if not self._discarding:
                self._buf += data
                if len(self._buf) > self._max_frame:
                    self._buf = b""
                    self._discarding = True
                    self.stats.oversize += 1
            return []
        parts = (self._buf + data).split(b"\x00")
        self._buf = parts.pop()
        if self._discarding:
            parts[0] = b""  # the tail of the oversize run: drop it, resync here
            self._discarding = False
        if len(self._buf) > self._max_frame:
            self._buf = b""
            self._discarding = True
            self.stats.oversize += 1
        out = []
        st = self.stats
        for part in parts:
            if not part:
                st.empty += 1
                continue
            if len(part) > self._max_frame:
                st.oversize += 1
                continue
            try:
                raw = cobs_decode(part)
            except FramingError as exc:
                st.cobs_errors += 1
                self.last_error = str(exc)
                continue
            try:
                out.append(self._decode(raw))
            except ValueError as exc:
                st.packet_errors += 1
                self.last_error = str(exc)
                continue
            st.frames += 1
        return out
