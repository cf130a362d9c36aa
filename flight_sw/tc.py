"""Authenticated telecommands, in the manner of CCSDS SDLS (authentication only).

Packet layout (big-endian)::

    primary header   6 bytes  version 0, type TC, APID TC_APID, sequence count
    security header  6 bytes  SPI u16, anti-replay sequence number (ARSN) u32
    data            n bytes   opcode u16 (bits 15-12: acknowledgement flags, PUS-C's
                              order, acceptance = bit 12; bits 11-0: the dictionary's
                              opcode), arguments as the dictionary encodes them
    security trailer 16 bytes HMAC-SHA256 over header + security header + data,
                              truncated to 128 bits (SDLS MAC truncation)

Security associations: each SPI has its own anti-replay counter, as in SDLS. SPI
``SPI_ONBOARD`` (1) is for senders inside the spacecraft's own process (the rig's
``Run.command``); SPI ``SPI_GROUND`` (2) is for ground clients on the ground port
(``hil console``). Two senders under one key therefore never take each other's
ARSNs. The SPI is inside the MAC, so a packet cannot be moved to another SA.

Acknowledgements: a TC whose flags ask for them gets PUS service 1 success reports
on the ground port's downlink (acceptance, start, completion:
``flight_sw.dictionary.encode_verification``); an authentic TC that is refused
(replay, window, opcode, arguments) or fails in execution gets a failure report
whatever its flags, as PUS-C has it. A packet whose MAC does not verify gets
none: its flags cannot be trusted (its ``tc_rejected`` event is on the downlink).

Anti-replay: the receiver keeps the last accepted ARSN (per SPI) and accepts a packet only
if its ARSN is ahead of it by 1..``window``, counted modulo 2**32 (serial-number
arithmetic, RFC 1982). So ``0xFFFFFFFF`` is followed by ``0`` (the wrap), a
replayed or older ARSN is refused, and a packet too far ahead is refused. The
MAC is checked before the ARSN, so a forger cannot move the window.

The key lives in a file that the repository never holds (``*.key`` is in
``.gitignore``); :func:`load_key` refuses a missing, short or group/other
readable key file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import stat
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flight_sw.dictionary import (
    COMMAND_BY_NAME,
    COMMAND_BY_OPCODE,
    TC_APID,
    DictionaryError,
    decode_args,
    encode_args,
    parse_primary_header,
    primary_header,
)

MAC_LEN = 16
SEC_HDR_LEN = 6
TC_MAX_PACKET = 2048
ARSN_MOD = 1 << 32
DEFAULT_WINDOW = 1024
#: the security association of in-process senders (the rig's Run.command)
SPI_ONBOARD = 1
#: the security association of ground clients on the ground port (hil console)
SPI_GROUND = 2


class KeyFileError(ValueError):
    """The TC key file is missing, malformed or too widely readable."""


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a TC authentication key: hex text (>= 64 hex digits) or >= 32 raw bytes."""
    p = pathlib.Path(path)
    try:
        st = p.stat()
        raw = p.read_bytes()
    except OSError as e:
        raise KeyFileError(f"TC key file {p}: {e.strerror or e}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"TC key file {p}: readable by group or others (mode {stat.S_IMODE(st.st_mode):o});"
            " run chmod 600 on it"
        )
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) < 32:
        raise KeyFileError(f"TC key file {p}: key is {len(key)} bytes, need at least 32")
    return key


def write_key(path: str | os.PathLike[str]) -> bytes:
    """Generate a random 256-bit key into ``path`` (mode 600) and return it."""
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


class TcRejected(Exception):
    """A telecommand refused by the interface; ``reason`` is a short tag. ``request``
    is (request ID, SPI, ARSN) once the packet proved authentic (its MAC verified),
    else None: only an authentic TC gets a verification report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.request: tuple[bytes, int, int] | None = None


@dataclass(frozen=True)
class Telecommand:
    name: str
    args: dict[str, Any]
    arsn: int
    spi: int = SPI_ONBOARD
    #: acknowledgement flags (flight_sw.dictionary.ACK_*)
    ack: int = 0
    #: PUS-C request ID: the packet's first 4 bytes (packet ID, sequence control)
    request_id: bytes = b""


def _mac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()[:MAC_LEN]


class TcSender:
    """Ground side: builds authenticated TC packets with increasing ARSN."""

    def __init__(self, key: bytes, spi: int = 1, first_arsn: int = 1) -> None:
        self._key = key
        self.spi = spi
        self.arsn = first_arsn % ARSN_MOD
        self._seq = 0

    def build(self, name: str, arsn: int | None = None, ack: int = 0, **args: Any) -> bytes:
        """A TC packet; ``ack``: the acknowledgement flags (flight_sw.dictionary.ACK_*)."""
        cmd = COMMAND_BY_NAME.get(name)
        if cmd is None:
            raise DictionaryError(f"unknown command {name!r}")
        if not 0 <= ack <= 0xF:
            raise DictionaryError(f"acknowledgement flags {ack!r} outside 0..15")
        if arsn is None:
            arsn = self.arsn
            self.arsn = (self.arsn + 1) % ARSN_MOD
        data = struct.pack(">HI", self.spi, arsn) + struct.pack(">H", ack << 12 | cmd.opcode) + encode_args(cmd, args)
        hdr = primary_header(TC_APID, self._seq, len(data) + MAC_LEN, tc=True)
        self._seq = (self._seq + 1) & 0x3FFF
        return hdr + data + _mac(self._key, hdr + data)


class TcVerifier:
    """Flight side: authenticates, checks anti-replay, decodes. Never raises anything
    but :class:`TcRejected` from :meth:`verify`, whatever the bytes."""

    def __init__(self, key: bytes, spi: int = 1, last_arsn: int = 0, window: int = DEFAULT_WINDOW,
                 spis: tuple[int, ...] | None = None) -> None:
        if not 1 <= window < ARSN_MOD // 2:
            raise ValueError(f"anti-replay window {window} outside 1..2**31-1")
        self._key = key
        self.spi = spi
        #: the SPIs accepted, each with its own last accepted ARSN
        self.last_by_spi: dict[int, int] = {s: last_arsn % ARSN_MOD for s in (spis or (spi,))}
        self.window = window
        self.accepted = 0
        self.rejected: Counter[str] = Counter()

    @property
    def last_arsn(self) -> int:
        """The last accepted ARSN of ``spi`` (the first security association)."""
        return self.last_by_spi[self.spi]

    @last_arsn.setter
    def last_arsn(self, value: int) -> None:
        self.last_by_spi[self.spi] = value % ARSN_MOD

    def verify(self, pkt: bytes) -> Telecommand:
        try:
            tc = self._verify(bytes(pkt))
        except TcRejected as e:
            self.rejected[e.reason] += 1
            raise
        except Exception as e:  # defensive: any surprise is a refusal, never a crash
            self.rejected["malformed"] += 1
            raise TcRejected("malformed", repr(e)) from None
        self.accepted += 1
        return tc

    def _verify(self, pkt: bytes) -> Telecommand:
        if len(pkt) > TC_MAX_PACKET:
            raise TcRejected("too_long", f"{len(pkt)} bytes > {TC_MAX_PACKET}")
        try:
            apid, is_tc, _seq, n = parse_primary_header(pkt)
        except DictionaryError as e:
            raise TcRejected("bad_header", str(e)) from None
        if not is_tc or apid != TC_APID:
            raise TcRejected("bad_header", f"apid {apid:#x} tc={is_tc}")
        if n != len(pkt):
            raise TcRejected("bad_length", f"header says {n} bytes, got {len(pkt)}")
        if n < 6 + SEC_HDR_LEN + 2 + MAC_LEN:
            raise TcRejected("too_short", f"{n} bytes")
        body, mac = pkt[:-MAC_LEN], pkt[-MAC_LEN:]
        spi, arsn = struct.unpack_from(">HI", pkt, 6)
        last = self.last_by_spi.get(spi)
        if last is None:
            raise TcRejected("unknown_spi", str(spi))
        if not hmac.compare_digest(mac, _mac(self._key, body)):
            raise TcRejected("bad_mac")
        request_id = pkt[:4]
        try:
            ahead = (arsn - last) % ARSN_MOD
            if ahead == 0 or ahead >= ARSN_MOD // 2:
                raise TcRejected("replay", f"spi {spi} arsn {arsn} not after {last}")
            if ahead > self.window:
                raise TcRejected("outside_window", f"spi {spi} arsn {arsn} is {ahead} ahead of {last}")
            (word,) = struct.unpack_from(">H", pkt, 6 + SEC_HDR_LEN)
            ack, opcode = word >> 12, word & 0x0FFF
            cmd = COMMAND_BY_OPCODE.get(opcode)
            if cmd is None:
                raise TcRejected("unknown_opcode", str(opcode))
            try:
                args = decode_args(cmd, body[6 + SEC_HDR_LEN + 2 :])
            except DictionaryError as e:
                raise TcRejected("bad_args", str(e)) from None
        except TcRejected as e:
            e.request = (request_id, spi, arsn)  # authentic: it gets a failure report
            raise
        # only an authentic, well-formed packet moves the window
        self.last_by_spi[spi] = arsn
        return Telecommand(cmd.name, args, arsn, spi, ack, request_id)
