"""The host side of the payload link: one :class:`Link` per board.

>>> with Link("/dev/serial/by-id/usb-FTDI_board0", 921600) as link:   # doctest: +SKIP
...     link.ping()
...     hk = link.housekeeping()
...     job = link.start_job("matmul", {"n": 64, "steps": 500}, deadline_s=60)

Thread-safe: any number of threads may issue commands concurrently. A reader
thread decodes every incoming packet; replies wake their request, housekeeping
and events go to the telemetry queue (``link.telemetry``) and to the optional
``on_telemetry`` callback (called on the reading thread: keep it short, and do
not issue commands from it).

With ``read_on_wait=True`` there is no reader thread: a thread waiting for a
reply reads the port itself (one at a time; what it reads for other requests
wakes them), and so do :meth:`Link.poll` and :meth:`Link.events`. That saves a
thread hand-off per reply, for a caller that talks to the board all the time
(the runner syncs every board every simulated second); telemetry, ``link_down``
and reconnects then happen only while some thread waits, polls or begins a
command. A command either returns its result or raises a
:class:`LinkError` subclass naming the command: it is never lost silently.
Retries resend the identical packet (same APID and sequence count), and the
agent replays its cached reply instead of executing twice.
"""

from __future__ import annotations

import binascii
import os
import queue
import random
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import serial

from . import protocol as P
from .commands import COMMANDS, plain_call
from .framing import Deframer, frame

try:  # a plain posix serial port (device path, pty): read and write its fd directly
    from serial.serialposix import Serial as _PosixSerial
except ImportError:  # pragma: no cover - not posix
    _PosixSerial = None

_READ_CHUNK = 65536
_READ_TURN_S = 0.05  # longest a read_on_wait waiter reads before letting another thread read
#: ORBIT_HIL_LINK_PIPELINE=0 in the environment: links send no time sync ahead (Link.idle)
PIPELINE_ENV = "ORBIT_HIL_LINK_PIPELINE"


class LinkError(Exception):
    """Base class of everything the link raises."""


class LinkTimeout(LinkError):
    """No reply after all retries (the command may or may not have executed)."""

    def __init__(self, command: str, attempts: int, timeout_s: float) -> None:
        super().__init__(f"{command}: no reply after {attempts} attempt(s) of {timeout_s:g} s")
        self.command = command


class CommandRejected(LinkError):
    """The board refused the command at acceptance (TM[1,2]); it did not execute."""

    def __init__(self, command: str, code: int, message: str) -> None:
        super().__init__(f"{command} rejected: {P.ERROR_NAMES.get(code, code)}: {message}")
        self.command, self.code, self.message = command, code, message


class CommandFailed(LinkError):
    """The board accepted the command but could not complete it (TM[1,8])."""

    def __init__(self, command: str, code: int, message: str) -> None:
        super().__init__(f"{command} failed: {P.ERROR_NAMES.get(code, code)}: {message}")
        self.command, self.code, self.message = command, code, message


@dataclass
class Telemetry:
    """One asynchronous item: ``kind`` is "hk", "event" or "link"."""

    kind: str
    name: str
    data: dict
    time_ns: int = 0
    apid: int = 0
    seq: int = 0


@dataclass
class LinkStats:
    commands: int = 0
    completed: int = 0
    failed: int = 0  # rejected or failed by the board
    timeouts: int = 0
    retries: int = 0  # retransmissions after a timeout
    fast_retransmits: int = 0  # retransmissions right after a corrupted frame arrived
    late_replies: int = 0  # replies that arrived after their request gave up, or duplicates
    crc_errors: int = 0  # packets that failed decoding (CRC, length, header)
    framing_errors: int = 0  # COBS errors and oversize runs
    reconnects: int = 0
    disconnects: int = 0
    syncs_ahead: int = 0  # time syncs sent ahead (see Link.idle) ...
    syncs_ahead_used: int = 0  # ... whose reply answered the caller's time sync
    tm_seq_gaps: int = 0  # TM packets missing according to per-APID sequence counts
    tm_seq_gaps_by_apid: dict = field(default_factory=dict)
    telemetry_dropped: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    last_error: str = ""


class _Flag:
    """A set/clear/wait flag for one waiter on a bare lock (held = clear): what
    threading.Event does for this use, without a Condition per request."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def clear(self) -> None:
        self._lock.acquire(False)

    def is_set(self) -> bool:
        return not self._lock.locked()

    def wait(self, timeout: float) -> bool:
        if not self._lock.acquire(True, timeout):
            return False
        self.set()  # stays set (a concurrent set() may already have released it)
        return True


class _Pending:
    """One request awaiting its reply (a plain class: one is made per command)."""

    __slots__ = ("event", "reply", "nudged")

    def __init__(self) -> None:
        self.event = _Flag()
        self.reply: P.Packet | None = None
        self.nudged = False  # a corrupted frame arrived: probably our reply; resend now


DEFAULT_TIMEOUTS = {"checkpoint": 10.0, "suspend": 10.0, "inject_seu": 10.0}


class PendingRequest:
    """A TC sent by :meth:`Link.begin`; :meth:`wait` (once) returns its reply packet,
    or what ``then`` makes of it, or raises the request's error. The link may have
    awaited the reply already (:meth:`Link.quiesce`): it is kept for :meth:`wait`."""

    def __init__(self, link: Link, command: str, apid: int, seq: int, pending: _Pending,
                 wire: bytes, timeout_s: float, retries: int) -> None:
        self.link, self.command, self.apid, self.seq = link, command, apid, seq
        self.pending, self.wire, self.timeout_s, self.retries = pending, wire, timeout_s, retries
        self.expires = 0.0
        self.then: Callable[[P.Packet], Any] | None = None
        self._outcome: tuple[bool, Any] | None = None  # (replied, reply or error), once awaited

    def settle(self) -> None:
        """Await the reply (or the error) now and keep it for :meth:`wait`."""
        if self._outcome is None:
            try:
                self._outcome = (True, self.link._finish(self))
            except LinkError as exc:
                self._outcome = (False, exc)

    def wait(self) -> Any:
        self.settle()
        replied, reply = self._outcome  # type: ignore[misc]
        if not replied:
            raise reply
        return reply if self.then is None else self.then(reply)


class Link:
    def __init__(
        self,
        url: str,
        baud: int = 921600,
        *,
        timeout_s: float = 0.25,
        retries: int = 4,
        exclusive: bool = True,
        reconnect: bool = True,
        reconnect_interval_s: float = 0.05,
        on_telemetry: Callable[[Telemetry], None] | None = None,
        telemetry_queue_size: int = 10000,
        source_id: int | None = None,
        fast_retransmit: bool = True,
        read_on_wait: bool = False,
        pipeline: bool | None = None,
    ) -> None:
        self.url, self.baud = url, baud
        #: send the next time sync ahead to a board on a virtual clock (see :meth:`idle`);
        #: None: unless the environment sets ORBIT_HIL_LINK_PIPELINE=0
        self.pipeline = os.environ.get(PIPELINE_ENV, "1") != "0" if pipeline is None else pipeline
        self.board_clock = ""  # "virtual" or "real", as the board's board_info says
        self._ahead: tuple[int, PendingRequest] | None = None  # (t_ns, time sync sent ahead)
        self._reported = False  # the latest time sync was answered with a report
        self._begun: dict[int, PendingRequest] = {}  # id -> begun, not yet awaited
        self.timeout_s, self.retries = timeout_s, retries
        self.exclusive = exclusive
        self.reconnect = reconnect
        self.reconnect_interval_s = reconnect_interval_s
        self.on_telemetry = on_telemetry
        self.telemetry: queue.Queue[Telemetry] = queue.Queue(telemetry_queue_size)
        # a per-session source ID keeps this session's (apid, seq) keys apart from an
        # earlier session's in the agent's duplicate cache
        self.source_id = source_id if source_id is not None else random.SystemRandom().randrange(1, 0xFFFF)
        self.stats = LinkStats()
        self.fast_retransmit = fast_retransmit
        self.hk_layouts: dict[int, tuple[list[str], list[str]]] = {}
        self._layout_retry_at = 0.0
        self.history: list[tuple[int, int, str, str]] | None = None  # (apid, seq, cmd, outcome)
        self._seq = {P.APID_AGENT: 0, P.APID_JOBS: 0}
        self._tm_seq: dict[int, int] = {}
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._connected = threading.Event()
        self._deframer = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
        self._rx_lock = threading.Lock()  # one thread reads and dispatches at a time
        self._reopen_at = 0.0
        self._ser = self._open()  # the first open must succeed: a bad URL is an error
        self._connected.set()
        self._reader: threading.Thread | None = None
        if not read_on_wait:
            self._reader = threading.Thread(target=self._read_loop, name=f"link-{url}",
                                            daemon=True)
            self._reader.start()

    # -- port handling
    def _open(self):
        try:
            # pyserial's rfc2217:// refuses a write timeout (NotImplementedError at open)
            write_timeout = None if self.url.startswith("rfc2217://") else 1.0
            ser = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.05,
                                        write_timeout=write_timeout, exclusive=self.exclusive)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open {self.url}: {exc}") from None
        try:
            ser.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass
        ser.write(b"\x00")  # resync the board's receiver
        return ser

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _lost(self, why: str) -> None:
        if not self._connected.is_set():
            return
        self._connected.clear()
        self.stats.disconnects += 1
        self.stats.last_error = why
        try:
            self._ser.close()
        except Exception:  # noqa: BLE001
            pass
        self._emit(Telemetry("link", "link_down", {"url": self.url, "reason": why}))

    def _read_loop(self) -> None:
        while not self._closed:
            with self._rx_lock:
                self._pump(_READ_TURN_S)

    def _pump(self, timeout_s: float) -> None:
        """Read what the port has within ``timeout_s`` and dispatch it, or try to
        reopen a lost port. The caller holds ``_rx_lock``."""
        if self._closed:
            return
        if not self._connected.is_set():
            self._reopen(timeout_s)
            return
        try:
            ser = self._ser
            if type(ser) is _PosixSerial:
                data = _read_posix(ser, timeout_s)
            else:  # other pyserial URLs (socket://, rfc2217://, loop://, ...)
                data = ser.read(1)
                if data:
                    n = ser.in_waiting
                    if n:
                        data += ser.read(n)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            if not self._closed:
                self._lost(f"{type(exc).__name__}: {exc}")
            return
        if not data:
            if _vanished(self.url):
                self._lost("port vanished")
            return
        self.stats.rx_bytes += len(data)
        d = self._deframer
        before_pkt, before_frm = d.stats.packet_errors, d.stats.cobs_errors + d.stats.oversize
        pkts = d.feed(data)
        bad = (d.stats.packet_errors - before_pkt,
               d.stats.cobs_errors + d.stats.oversize - before_frm)
        if bad[0] or bad[1]:
            self.stats.crc_errors += bad[0]
            self.stats.framing_errors += bad[1]
            if self.fast_retransmit:
                self._nudge()
        for pkt in pkts:
            self._on_packet(pkt)

    def _reopen(self, timeout_s: float) -> None:
        """Open the lost port again (at most every ``reconnect_interval_s``), or wait
        up to ``timeout_s`` for the next try."""
        now = time.monotonic()
        if self.reconnect and now >= self._reopen_at:
            try:
                self._ser = self._open()
            except LinkError:
                self._reopen_at = now + self.reconnect_interval_s
            else:
                self._deframer = Deframer(P.decode_packet, P.MAX_PACKET_BYTES)
                self.stats.reconnects += 1
                self._connected.set()
                self._emit(Telemetry("link", "link_up", {"url": self.url}))
                return
        wait = timeout_s if not self.reconnect else min(timeout_s, self._reopen_at - now)
        if wait > 0:
            time.sleep(wait)

    def poll(self, timeout_s: float = 0.0) -> None:
        """With ``read_on_wait``: read and dispatch what the board sent (waiting up to
        ``timeout_s`` for something), so that telemetry, late replies and a lost
        port are noticed between commands. Without it, the reader thread does this."""
        if self._reader is not None or self._closed:
            return
        if self._rx_lock.acquire(True, max(0.0, timeout_s)):
            try:
                self._pump(timeout_s)
            finally:
                self._rx_lock.release()

    def _on_packet(self, pkt: P.Packet) -> None:
        if pkt.ptype != P.TM:
            return
        last = self._tm_seq.get(pkt.apid)
        if last is not None:
            gap = (pkt.seq - last - 1) % P.SEQ_MODULO
            if gap < P.SEQ_MODULO // 2:  # a big "gap" is a replayed (older) packet
                if gap:
                    self.stats.tm_seq_gaps += gap
                    by = self.stats.tm_seq_gaps_by_apid
                    by[pkt.apid] = by.get(pkt.apid, 0) + gap
                self._tm_seq[pkt.apid] = pkt.seq
        else:
            self._tm_seq[pkt.apid] = pkt.seq
        if pkt.apid == P.APID_HK and pkt.kind == P.TM_HK_REPORT:
            try:
                hk = P.decode_hk(pkt.data, self.hk_layouts)
            except P.PacketError:
                self.stats.crc_errors += 1
                return
            self._emit(Telemetry("hk", "housekeeping", hk, pkt.time_ns, pkt.apid, pkt.seq))
            return
        if pkt.apid == P.APID_EVENTS and pkt.service == P.ST_EVENT:
            try:
                name, details = P.decode_event(pkt.data)
            except P.PacketError:
                self.stats.crc_errors += 1
                return
            severity = {v: k for k, v in P.EVENT_SEVERITY_SUBTYPES.items()}.get(pkt.subtype, "info")
            if name == "boot":  # the board restarted its sequence counts
                self._tm_seq = {pkt.apid: pkt.seq}
            self._emit(Telemetry("event", name, {**details, "severity": severity}, pkt.time_ns,
                                 pkt.apid, pkt.seq))
            return
        if pkt.kind in (P.TM_ACCEPT_OK, P.TM_START_OK):
            return  # intermediate verification reports: the final one wakes the request
        try:
            apid, seq, _ = P.split_request_id(pkt.data)
        except P.PacketError:
            return
        with self._lock:
            pending = self._pending.get((apid, seq))
            if pending is None or pending.reply is not None:
                self.stats.late_replies += 1
                return
            pending.reply = pkt
        pending.event.set()

    def _nudge(self) -> None:
        """A frame was lost to corruption: wake requests that have waited a little."""
        with self._lock:
            for p in self._pending.values():
                if p.reply is None:
                    p.nudged = True
                    p.event.set()

    def _emit(self, item: Telemetry) -> None:
        if self.on_telemetry is not None:
            try:
                self.on_telemetry(item)
            except Exception as exc:  # noqa: BLE001 - a bad callback must not kill the reader
                self.stats.last_error = f"on_telemetry raised {exc!r}"
        try:
            self.telemetry.put_nowait(item)
        except queue.Full:
            self.stats.telemetry_dropped += 1

    def _write(self, data: bytes) -> bool:
        if not self._connected.is_set():
            return False
        with self._write_lock:
            try:
                ser = self._ser
                if type(ser) is _PosixSerial:
                    _write_posix(ser, data)
                else:
                    ser.write(data)
                self.stats.tx_bytes += len(data)
                return True
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                self._lost(f"write: {type(exc).__name__}: {exc}")
                return False

    # -- request/response
    def request(self, command: str, apid: int, kind: tuple[int, int], data: bytes = b"",
                *, timeout_s: float | None = None, retries: int | None = None) -> P.Packet:
        """Send one TC and wait for its final report. Returns the reply packet."""
        return self.begin(command, apid, kind, data, timeout_s=timeout_s, retries=retries).wait()

    def begin(self, command: str, apid: int, kind: tuple[int, int], data: bytes = b"",
              *, timeout_s: float | None = None, retries: int | None = None) -> PendingRequest:
        """Send one TC now and return at once; :meth:`PendingRequest.wait` gets the reply
        (with the same timeouts and retries as :meth:`request`, counted from now).
        Several requests begun on several links run concurrently without a thread
        each. Every begun request must be waited for."""
        if self._closed:
            raise LinkError(f"{command}: link to {self.url} is closed")
        if self._ahead is not None and command != "time_sync":
            self._drop_ahead()  # any other command lands after the sync sent ahead
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        retries = self.retries if retries is None else retries
        with self._lock:
            seq = self._seq[apid]
            self._seq[apid] = (seq + 1) % P.SEQ_MODULO
            pending = _Pending()
            self._pending[(apid, seq)] = pending
        try:
            wire = frame(P.encode_tc(apid, seq, kind[0], kind[1], data, P.ACK_COMPLETION,
                                     self.source_id))
        except BaseException:
            with self._lock:
                self._pending.pop((apid, seq), None)
            raise
        req = PendingRequest(self, command, apid, seq, pending, wire, timeout_s, retries)
        self.stats.commands += 1
        if self._reader is None and not self._connected.is_set():
            self.poll()  # no reader thread reopens the port: try now rather than time out
        self._write(req.wire)
        req.expires = time.monotonic() + timeout_s
        self._begun[id(req)] = req
        return req

    def _finish(self, req: PendingRequest) -> P.Packet:
        pending, timeout_s, retries = req.pending, req.timeout_s, req.retries
        outcome = "timeout"
        self._begun.pop(id(req), None)
        try:
            attempt = 0  # timed-out transmissions (bounded by retries)
            fast = 0  # extra fast retransmissions after a corrupted frame (bounded by retries)
            expires = req.expires
            while True:
                if self._await(pending, expires):
                    with self._lock:
                        nudged = pending.reply is None and pending.nudged and not self._closed
                        if nudged:
                            pending.nudged = False
                            pending.event.clear()
                    if not nudged:
                        break
                    if fast >= retries:
                        continue  # budget spent: wait out the current timeout instead
                    fast += 1
                    self.stats.fast_retransmits += 1
                elif self._closed:
                    break
                else:
                    attempt += 1
                    if attempt > retries:
                        break
                    self.stats.retries += 1
                # leading delimiter flushes any partial frame at the receiver
                self._write(b"\x00" + req.wire)
                expires = time.monotonic() + timeout_s
            if pending.reply is None and not self._closed:
                self.stats.timeouts += 1
                raise LinkTimeout(req.command, retries + 1, timeout_s)
            if pending.reply is None:
                raise LinkError(f"{req.command}: link to {self.url} closed while waiting")
            reply = pending.reply
            if reply.kind in (P.TM_ACCEPT_FAIL, P.TM_COMPLETE_FAIL):
                outcome = "failed"
                self.stats.failed += 1
                code, msg = P.decode_failure(reply.data[4:])
                exc_type = CommandRejected if reply.kind == P.TM_ACCEPT_FAIL else CommandFailed
                raise exc_type(req.command, code, msg)
            outcome = "completed"
            self.stats.completed += 1
            return reply
        finally:
            with self._lock:
                self._pending.pop((req.apid, req.seq), None)
            if self.history is not None:
                self.history.append((req.apid, req.seq, req.command, outcome))

    def _await(self, pending: _Pending, expires: float) -> bool:
        """Wait until ``pending`` is woken (True) or ``expires`` passes (False). With
        ``read_on_wait`` the waiting thread reads the port itself, a little at a time
        while another thread reads (whose reading may wake this one)."""
        if self._reader is not None:
            return pending.event.wait(max(0.0, expires - time.monotonic()))
        event, lock = pending.event, self._rx_lock
        while not event.is_set():
            left = expires - time.monotonic()
            if left <= 0 or self._closed:
                return event.is_set()
            if lock.acquire(True, min(left, _READ_TURN_S)):
                try:
                    if not event.is_set():
                        self._pump(min(left, _READ_TURN_S))
                finally:
                    lock.release()
        return True

    def call(self, name: str, args: dict | None = None, *, timeout_s: float | None = None,
             retries: int | None = None) -> dict:
        """Invoke a function-management command by name; returns its JSON result."""
        return self.call_begin(name, args, timeout_s=timeout_s, retries=retries).wait()

    def call_begin(self, name: str, args: dict | None = None, *, timeout_s: float | None = None,
                   retries: int | None = None) -> PendingRequest:
        """:meth:`call`, sent now; ``.wait()`` returns its JSON result (or raises)."""
        req = self._call_begin(name, args, timeout_s, retries)
        req.then = lambda reply: self._call_result(name, reply)
        return req

    def _call_begin(self, name: str, args: dict | None, timeout_s: float | None,
                    retries: int | None, data: bytes | None = None) -> PendingRequest:
        """``data``: the TC's application data when the caller encoded ``args`` already."""
        fid, apid, _ = P.FUNCTIONS[name]
        if timeout_s is None:
            timeout_s = max(self.timeout_s, DEFAULT_TIMEOUTS.get(name, 0.0))
        if data is None:
            data = P.encode_function(fid, args or {})
        return self.begin(name, apid, P.TC_FUNCTION, data, timeout_s=timeout_s, retries=retries)

    def _call_result(self, name: str, reply: P.Packet) -> dict:
        if reply.kind != P.TM_FUNCTION_REPORT:
            raise LinkError(f"{name}: unexpected reply ({reply.service},{reply.subtype})")
        try:
            return P.decode_json(reply.data[4:], name)
        except P.PacketError as exc:
            raise LinkError(str(exc)) from None

    # -- the commands (firmware_bridge.commands): those that are not plain calls; the
    # plain calls (set_throttle, job_status, checkpoint, ...) are made from the table
    def ping(self, *, timeout_s: float | None = None) -> float:
        """Round trip in seconds."""
        t0 = time.perf_counter()
        self.request("ping", P.APID_AGENT, P.TC_PING, timeout_s=timeout_s)
        return time.perf_counter() - t0

    def board_info(self) -> dict:
        info = self.call("board_info")
        self.board_clock = str(info.get("clock", ""))
        lay = info.get("hk_layout", {})
        if "layout_id" in lay:
            self.hk_layouts[lay["layout_id"]] = (list(lay["temps"]), list(lay["rails"]))
        return info

    def housekeeping(self) -> dict:
        reply = self.request("housekeeping", P.APID_AGENT, P.TC_HK_ONE_SHOT)
        return self._decode_hk(reply.data[4:], reply.time_ns, "housekeeping")

    def _decode_hk(self, data: bytes, time_ns: int, what: str) -> dict:
        if (len(data) >= 2 and int.from_bytes(data[:2], "big") not in self.hk_layouts
                and time.monotonic() >= self._layout_retry_at):
            try:
                self.board_info()  # learn the names of temperatures and rails
            except LinkError:
                # the report still decodes, with generic names (temp0, rail0, ...)
                self._layout_retry_at = time.monotonic() + 1.0
        try:
            hk = P.decode_hk(data, self.hk_layouts)
        except P.PacketError as exc:
            raise LinkError(f"{what}: {exc}") from None
        hk["time_ns"] = time_ns
        return hk

    def enable_periodic_hk(self, period_s: float) -> None:
        if not self.hk_layouts:
            self.board_info()
        self.request("enable_periodic_hk", P.APID_AGENT, P.TC_HK_ENABLE_PERIODIC,
                     P.json_bytes({"period_s": period_s}))

    def disable_periodic_hk(self) -> None:
        self.request("disable_periodic_hk", P.APID_AGENT, P.TC_HK_DISABLE_PERIODIC)

    def start_job(self, workload: str, params: dict | None = None,
                  deadline_s: float | None = None) -> int:
        res = self.call("start_job", {"workload": workload, "params": params or {},
                                      "deadline_s": deadline_s})
        return int(res["job_id"])

    def wait_job(self, job_id: int, timeout_s: float = 60.0, poll_s: float = 0.05) -> dict:
        """Poll until the job leaves starting/running; raises LinkTimeout after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.job_status(job_id)
            if st["state"] not in ("starting", "running"):
                return st
            if time.monotonic() > deadline:
                raise LinkTimeout(f"wait_job({job_id})", 1, timeout_s)
            time.sleep(poll_s)

    def time_sync(self, t_ns: int, report: bool = True) -> dict:
        """Set the board's clock. With ``report`` (protocol 1.1) the reply also carries
        ``hk`` (decoded, as :meth:`housekeeping` returns it) and ``jobs`` (brief states,
        live jobs first): one round trip per frame. A 1.0 agent ignores the flag."""
        return self.time_sync_begin(t_ns, report).wait()

    def time_sync_begin(self, t_ns: int, report: bool = True) -> PendingRequest:
        """:meth:`time_sync`, sent now; ``.wait()`` returns what :meth:`time_sync` would.
        For syncing several boards at once from one thread. The sync sent ahead for
        ``t_ns`` (:meth:`idle`) is this one, already on its way."""
        if self._closed:
            raise LinkError(f"time_sync: link to {self.url} is closed")
        self._reported = False
        ahead = self._ahead
        if ahead is not None:
            if ahead[0] == t_ns and report:
                self._ahead = None
                self.stats.syncs_ahead_used += 1
                return ahead[1]
            self._drop_ahead()
        return self._sync_begin(t_ns, report)

    def _sync_begin(self, t_ns: int, report: bool) -> PendingRequest:
        req = self._call_begin("time_sync", None, None, None, _time_sync_data(int(t_ns), report))
        req.then = lambda reply: self._time_sync_result(t_ns, self._call_result("time_sync", reply))
        return req

    def idle(self, until_ns: int) -> None:
        """The caller has nothing more for the board until the board's time ``until_ns``
        (its next frame), barring the unforeseen. A pipelined link uses the wait: to a
        board on a virtual clock whose latest time sync was answered with a report,
        it sends the time sync to ``until_ns`` now, so the board computes the coming
        interval while the caller does other things, and :meth:`time_sync` to
        ``until_ns`` takes that reply. Any other command first awaits that sync and
        drops its reply (the command lands after it, and the next :meth:`time_sync`
        goes out afresh), and so does :meth:`quiesce`. A board on a real clock never
        gets a sync ahead: its clock would be set one interval early."""
        if not (self.pipeline and self._reported and self._ahead is None
                and self.board_clock == "virtual") or self._closed:
            return
        self._reported = False
        try:
            self._ahead = (until_ns, self._sync_begin(until_ns, True))
        except LinkError:
            return  # the next time sync goes out the usual way and meets the error
        self.stats.syncs_ahead += 1

    def _drop_ahead(self) -> None:
        """Await the time sync sent ahead and drop its reply (nobody asked for it)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].settle()

    def quiesce(self) -> None:
        """Finish whatever is in flight: await every reply still out, so that the board
        has executed every command sent to it (before the caller cuts its power or its
        line, say). A reply someone began is kept for their ``wait()``; the time sync
        sent ahead is dropped (the caller is about to change what it would report).
        Call it from the thread that begins the board's commands (a run's loop)."""
        self._drop_ahead()
        for req in list(self._begun.values()):
            req.settle()

    def _time_sync_result(self, t_ns: int, res: dict) -> dict:
        hk = res.get("hk")
        if isinstance(hk, str):
            try:
                raw = binascii.a2b_base64(hk, strict_mode=True)  # b64decode(validate=True), without its regex
            except (ValueError, binascii.Error):
                raise LinkError("time_sync: report hk is not base64") from None
            res["hk"] = self._decode_hk(raw, int(res.get("t_ns", t_ns)), "time_sync")
            self._reported = isinstance(res.get("jobs"), list)
        return res

    def test_ledger(self) -> dict:
        """Test mode: every command key the agent executed, (source<<32 | apid<<16 | seq)."""
        keys: list[int] = []
        while True:
            page = self.call("test_ledger", {"offset": len(keys)})
            keys += page["keys"]
            if not page["keys"] or len(keys) >= page["total"]:
                return {"total": page["total"], "unique": page["unique"], "keys": keys}

    def events(self, timeout_s: float = 0.0) -> list[Telemetry]:
        """Drain the telemetry queue (waiting up to ``timeout_s`` for the first item).
        With ``read_on_wait``, reads the port for it first."""
        if self._reader is None:
            deadline = time.monotonic() + timeout_s
            self.poll()
            while self.telemetry.empty() and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.poll(min(left, _READ_TURN_S))
            timeout_s = 0.0
        out = []
        try:
            out.append(self.telemetry.get(timeout=timeout_s) if timeout_s > 0
                       else self.telemetry.get_nowait())
            while True:
                out.append(self.telemetry.get_nowait())
        except queue.Empty:
            pass
        return out

    # -- lifetime
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            for p in self._pending.values():
                p.event.set()
        if self._reader is not None:
            self._reader.join(timeout=2)
        held = self._rx_lock.acquire(True, 2)  # no thread reads a port being closed
        try:
            self._ser.close()
        except Exception:  # noqa: BLE001
            pass
        finally:
            if held:
                self._rx_lock.release()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


for _cmd in COMMANDS:  # the plain calls' methods, from the one table of commands
    if _cmd.call:
        setattr(Link, _cmd.name, plain_call(_cmd))
        if _cmd.begin:
            setattr(Link, f"{_cmd.name}_begin", plain_call(_cmd, begin=True))


def _vanished(url: str) -> bool:
    """A device path (or symlink such as /dev/serial/by-id/...) that no longer resolves."""
    if "://" in url:
        return False
    return not os.path.exists(url)


_TIME_SYNC_FID = P.FUNCTIONS["time_sync"][0].to_bytes(2, "big")


def _time_sync_data(t_ns: int, report: bool) -> bytes:
    """``P.encode_function(time_sync, {"t_ns": t_ns[, "report": true]})``, the same
    bytes (sorted keys, no spaces), formatted directly: one per board per frame."""
    if report:
        return _TIME_SYNC_FID + b'{"report":true,"t_ns":%d}' % t_ns
    return _TIME_SYNC_FID + b'{"t_ns":%d}' % t_ns


def _read_posix(ser, timeout_s: float) -> bytes:
    """What a posix serial port has waiting within ``timeout_s``: one select and one
    read, instead of pyserial's read(1) + in_waiting + read(n). Errors as pyserial's."""
    fd = ser.fd
    if fd is None:
        raise serial.PortNotOpenError()
    if not select.select([fd], [], [], timeout_s)[0]:
        return b""
    try:
        data = os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return b""  # readiness without data (raced): look again
    if not data:
        raise serial.SerialException("device reports readiness to read but returned no data "
                                     "(device disconnected or multiple access on port?)")
    return data


def _write_posix(ser, data: bytes) -> None:
    """One write straight to the fd; whatever the port did not take at once (a full
    buffer) goes through pyserial's write, with its write timeout."""
    fd = ser.fd
    if fd is None:
        raise serial.PortNotOpenError()
    try:
        n = os.write(fd, data)
    except BlockingIOError:
        n = 0
    if n < len(data):
        ser.write(data[n:])
