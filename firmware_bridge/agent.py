"""The board agent: the program on the payload board, serving the link protocol.

Run on a Jetson or Raspberry Pi (only Python, pyserial and numpy needed)::

    python -m firmware_bridge.agent --port /dev/ttyTHS1 --baud 921600

The same :class:`Agent` serves the emulator (``firmware_bridge.emulator``) with a
simulated board. One thread, one select loop: serial input, job worker pipes,
periodic housekeeping and the clock tick.
"""

from __future__ import annotations

import argparse
import errno
import heapq
import os
import select
import sys
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from . import protocol as P
from .framing import Deframer, frame
from .jobs import LIVE_STATES, JobError, RealTimeJobs, VirtualTimeJobs, by_job_id
from .ratings import RATINGS
from .sensors import SysfsSensors

AGENT_VERSION = "0.1.0"
REPLY_CACHE_SIZE = 1024
THERMAL_LIMIT_K = 358.15  # 85 degC: the agent's governor halves the duty cycle above this
THERMAL_CLEAR_K = 353.15  # ... and restores it below 80 degC
TICK_S = 0.05
#: Emulated job throughput (floating-point operations per simulated second) of a
#: virtual-clock agent when none is given: see ``firmware_bridge.workloads.nominal_rate_usteps``.
DEFAULT_VIRTUAL_FLOPS_S = 1_000_000
#: A time-sync report lists at most this many jobs: the live ones (``LIVE_STATES``), newest
#: first, then at most ``REPORT_MAX_ENDED`` of the newest ended ones.
REPORT_MAX_JOBS = 16
#: Ended jobs (done, failed, cancelled, deadline_missed) a time-sync report lists at most:
#: the newest one, which the host learns of in the first report after it ended (a board
#: runs its jobs one after another); one that ended longer ago, or a second one that
#: ended in the same interval, is still answered by ``job_status``.
REPORT_MAX_ENDED = 1
#: function id -> (name, the Agent method that serves it, test mode only)
_FUNCTIONS = {fid: (name, f"_fn_{name}", test_only)
              for name, (fid, _apid, test_only) in P.FUNCTIONS.items()}


class _Request:
    """One telecommand under way and its PUS-C verification reports (service 1).

    Acceptance (TM[1,1]) and start of execution (TM[1,3]) are reported, as the TC's
    flags ask, once every acceptance check has passed: just before the first effect
    the command has (its final report, an event or report it causes) or, for one
    that waits on a job worker, when its dispatch returns. A failed check is TM[1,2]
    and nothing else. Success ends with the data report (TM[17,2], TM[3,25],
    TM[8,130]), which is the completion report, or TM[1,7] for a request without one
    if the completion flag is set; an execution failure with TM[1,8]. Failure
    reports go out whatever the flags. Every report sent is kept for the reply
    cache, which replays them for a repeat of the TC."""

    __slots__ = ("agent", "key", "crc", "rid", "apid", "dest", "ack", "accepted", "ended", "sent")

    def __init__(self, agent: Agent, key: tuple, crc: bytes, rid: bytes, apid: int, dest: int,
                 ack: int) -> None:
        self.agent, self.key, self.crc, self.rid = agent, key, crc, rid
        self.apid, self.dest, self.ack = apid, dest, ack
        self.accepted = self.ended = False
        self.sent = b""

    def _send(self, kind: tuple[int, int], data: bytes = b"") -> None:
        out = self.agent._tm(self.apid, kind, self.rid + data, self.dest)
        self.sent += out
        self.agent.send(out)

    def accept(self) -> None:
        """Every acceptance check passed; execution starts (reported once)."""
        if self.accepted or self.ended:
            return
        self.accepted = True
        if self.ack & P.ACK_ACCEPTANCE:
            self._send(P.TM_ACCEPT_OK)
        if self.ack & P.ACK_START:
            self._send(P.TM_START_OK)

    def complete(self, kind: tuple[int, int], data: bytes = b"") -> None:
        """Success: the data report ``kind``, or TM[1,7] if the completion flag asks."""
        if self.ended:
            return
        self.accept()
        if kind != P.TM_COMPLETE_OK or self.ack & P.ACK_COMPLETION:
            try:
                self._send(kind, data)
            except P.PacketError as exc:  # a result that does not fit in a packet
                return self.fail(P.ERR_INTERNAL, f"{kind} report not sent: {exc}")
        self._end()

    def result(self, res) -> None:
        """A function's success: its result (a dict, or its JSON already encoded) in TM[8,130]."""
        self.complete(P.TM_FUNCTION_REPORT, res if isinstance(res, bytes) else P.json_bytes(res))

    def reject(self, code: int, message: str) -> None:
        """An acceptance check failed: TM[1,2], nothing executed. (Once acceptance is
        decided a failure is an execution failure: a report is never contradicted.)"""
        if self.accepted:
            return self.fail(code, message)
        if self.ended:
            return
        self.agent.stats["rejected"] += 1
        self._send(P.TM_ACCEPT_FAIL, P.encode_failure(code, message))
        self._end()

    def fail(self, code: int, message: str) -> None:
        """Execution failed: TM[1,8] (after the acceptance and start reports)."""
        if self.ended:
            return
        self.accept()
        self.agent.stats["rejected"] += 1
        self._send(P.TM_COMPLETE_FAIL, P.encode_failure(code, message))
        self._end()

    def _end(self) -> None:
        self.ended = True
        self.agent._replied(self)


class _Reject(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- clocks -------------------------------------------------------------------------


class RealClock:
    """Monotonic time since agent boot, shifted by the last time sync."""

    virtual = False

    def __init__(self) -> None:
        self._offset = -time.monotonic_ns()

    def now_ns(self) -> int:
        return time.monotonic_ns() + self._offset

    def sync(self, t_ns: int) -> None:
        self._offset = t_ns - time.monotonic_ns()


class VirtualClock:
    """Simulation time: moves only when the link sends a time sync."""

    virtual = True

    def __init__(self) -> None:
        self._t = 0

    def now_ns(self) -> int:
        return self._t

    def sync(self, t_ns: int) -> None:
        self._t = t_ns


# --- transports ---------------------------------------------------------------------


class FdTransport:
    """An inherited file descriptor (the master side of a pty)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.dropped_bytes = 0

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        """Bytes available now; None when nobody holds the other end (pty EIO)."""
        try:
            return os.read(self.fd, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return None
            raise

    def write(self, data: bytes) -> None:
        try:
            n = os.write(self.fd, data)  # a whole frame, as a rule
        except BlockingIOError:
            n = 0
        except OSError as exc:
            if exc.errno == errno.EIO:
                self.dropped_bytes += len(data)
                return
            raise
        if n < len(data):
            self._write_rest(memoryview(data)[n:])

    def _write_rest(self, view: memoryview) -> None:
        """What the pty did not take at once: written as it drains, dropped if it
        would block for longer than 0.2 s."""
        deadline = None  # 0.2 s from the first time the pty would block
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                if deadline is None:
                    deadline = time.monotonic() + 0.2
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [self.fd], [], left)[1]:
                    self.dropped_bytes += len(view)  # nobody reads: a UART drops it too
                    return
            except OSError as exc:
                if exc.errno == errno.EIO:
                    self.dropped_bytes += len(view)
                    return
                raise

    def close(self) -> None:
        pass  # the fd belongs to whoever passed it in


class SerialTransport:
    """A serial port opened with pyserial (device path, pty slave, socket://...)."""

    def __init__(self, url: str, baud: int) -> None:
        import serial

        self._serial = serial
        self.url, self.baud = url, baud
        self.ser = None
        self.dropped_bytes = 0
        self._open()

    def _open(self) -> None:
        try:
            self.ser = self._serial.serial_for_url(
                self.url, baudrate=self.baud, timeout=0, write_timeout=0.5, exclusive=True
            )
        except (self._serial.SerialException, OSError, ValueError):
            self.ser = None

    def fileno(self) -> int | None:
        if self.ser is None:
            self._open()
        try:
            return self.ser.fileno() if self.ser is not None else None
        except (AttributeError, OSError, self._serial.SerialException):
            return None

    def read(self) -> bytes | None:
        if self.ser is None:
            return None
        try:
            return self.ser.read(self.ser.in_waiting or 1)
        except (self._serial.SerialException, OSError):
            self.ser.close()
            self.ser = None
            return None

    def write(self, data: bytes) -> None:
        if self.ser is None:
            self.dropped_bytes += len(data)
            return
        try:
            self.ser.write(data)
        except (self._serial.SerialException, OSError):
            self.dropped_bytes += len(data)

    def close(self) -> None:
        if self.ser is not None:
            self.ser.close()


# --- boards -------------------------------------------------------------------------


class SysfsBoard:
    """A real board: sensors from sysfs/procfs under ``root``."""

    def __init__(self, root: str = "/") -> None:
        self.sensors = SysfsSensors(root)
        self.kind = self.sensors.kind()
        self.model = self.sensors.model()
        self.temp_names = self.sensors.temp_names
        self.rail_names = self.sensors.rail_names
        self._cache: tuple[float, dict] | None = None

    def read(self, now_ns: int) -> dict:
        t = time.monotonic()
        if self._cache is not None and t - self._cache[0] < 0.01:
            return self._cache[1]
        s = self.sensors
        total, avail = s.memory_kib()
        out = {
            "temps_k": s.temperatures_k(),
            "rails": s.rails(),
            "cpu_load": s.cpu_load(),
            "mem_total_kib": total,
            "mem_available_kib": avail,
            "power_w": s.power_w(),
            "pi_throttled": s.pi_throttled(),
        }
        self._cache = (t, out)
        return out

    def advance(self, now_ns: int, load: float, throttle: float) -> None:
        pass  # real physics happens by itself


# --- the agent ------------------------------------------------------------------------


class Agent:
    def __init__(
        self,
        transport,
        board,
        *,
        clock=None,
        name: str = "board",
        test_mode: bool = False,
        state_dir: str | None = None,
        on_tick: Callable[[Agent], None] | None = None,
        max_job_dim: int | None = None,
        job_flops_s: int | None = None,
        seed: int | None = None,
        ordered_replies: bool = False,
        hold_pace: float = 0.0,
    ) -> None:
        self.transport = transport
        self.ordered_replies = ordered_replies  # virtual clock: see _holding()
        self.board = board
        self.clock = clock or RealClock()
        self.name = name
        self.test_mode = test_mode
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="orbit-hil-agent-")
        self.on_tick = on_tick
        self.max_job_dim = max_job_dim
        if self.clock.virtual:
            self.job_flops_s: int | None = job_flops_s or DEFAULT_VIRTUAL_FLOPS_S
        else:  # real time: paced at the board kind's rated throughput (0: free-running)
            rated = RATINGS.get(board.kind)
            self.job_flops_s = (job_flops_s if job_flops_s is not None
                                else rated.rated_flops if rated is not None else 0) or None
        self.hold_pace = hold_pace  # real time: share of a paced step held busy (workers.worker_main)
        self.seed = seed
        self.deframer = Deframer(self._decode, P.MAX_PACKET_BYTES)
        self._inbox: deque = deque()  # commands read, not yet executed (see _serve_inbox)
        self.running = True
        self.stats = {"commands": 0, "duplicates": 0, "replies": 0, "tx_dropped_bytes": 0,
                      "rejected": 0, "idle": 0, "ignored_tm": 0, "foreign_apid": 0,
                      "internal_errors": 0}
        self._executing: _Request | None = None  # the TC being dispatched (see _unsolicited)
        self._hk_encode = P.hk_encoder(tuple(board.temp_names), tuple(board.rail_names))
        self._boot()

    # -- state that a reboot resets
    def _boot(self) -> None:
        self.boot_mono = time.monotonic()
        self.cache: OrderedDict = OrderedDict()
        self.tm_seq: dict[int, int] = {}
        self.msg_counters: dict[tuple[int, int], int] = {}
        self.throttle = 1.0
        self.thermal_throttle = False
        self.hk_period_s: float | None = None
        self.next_hk = 0.0
        self.next_hk_ns: int | None = None  # virtual clock: periodic HK paced by sim time
        self.boot_sim_ns: int | None = None  # virtual clock: sim time of the first sync
        self.hung_until: float | None = None
        self.ledger: list[int] = []
        self.ledger_set: set[int] = set()
        self._brief_json: dict[int, tuple[tuple, bytes]] = {}  # ended job id -> (fields, JSON)
        jobs_dir = os.path.join(self.state_dir, "jobs")
        if self.clock.virtual:
            self.jobs = VirtualTimeJobs(jobs_dir, self.event, max_dim=self.max_job_dim,
                                        flops_s=self.job_flops_s, seed=self.seed)
        else:
            # a real board's checkpoints go to its disk before they are acknowledged
            self.jobs = RealTimeJobs(jobs_dir, self.event, max_dim=self.max_job_dim, flops_s=self.job_flops_s,
                                     durable=isinstance(self.board, SysfsBoard), hold_pace=self.hold_pace)
        self._last_tick_ns = self.clock.now_ns()
        self._peer_absent_until = 0.0

    @property
    def effective_throttle(self) -> float:
        return self.throttle * (0.5 if self.thermal_throttle else 1.0)

    @property
    def load(self) -> float:
        return 1.0 if self.jobs.running_count() else 0.0

    def uptime_s(self) -> float:
        if self.clock.virtual:  # simulation time since the first time sync after boot
            b = self.boot_sim_ns
            return 0.0 if b is None else max(0, self.clock.now_ns() - b) / 1e9
        return time.monotonic() - self.boot_mono

    # -- sending
    def _tm(self, apid: int, kind: tuple[int, int], data: bytes, dest: int = 0) -> bytes:
        """One framed TM; the stream's sequence count and the message type counter move
        only once the packet is built (a packet that cannot be built uses up no count)."""
        seq = self.tm_seq.get(apid, 0)
        mc = self.msg_counters.get(kind, 0)
        out = frame(P.encode_tm(apid, seq, kind[0], kind[1], data, dest, mc, self.clock.now_ns()))
        self.tm_seq[apid] = (seq + 1) % P.SEQ_MODULO
        self.msg_counters[kind] = (mc + 1) & 0xFFFF
        return out

    def send(self, data: bytes) -> None:
        if self.hung_until is not None:
            return
        self.transport.write(data)

    def _unsolicited(self, apid: int, kind: tuple[int, int], data: bytes) -> None:
        """A TM no request asked for (an event, a periodic housekeeping report). One that a
        command causes goes out after that command's acceptance and start reports."""
        if self._executing is not None:
            self._executing.accept()
        self.send(self._tm(apid, kind, data))

    def event(self, name: str, details: dict, severity: str = "info") -> None:
        sub = P.EVENT_SEVERITY_SUBTYPES[severity]
        self._unsolicited(P.APID_EVENTS, (P.ST_EVENT, sub), P.encode_event(name, details))

    def _hk_bytes(self) -> bytes:
        """The housekeeping record (``P.encode_hk``): the board's reading and the agent's
        state, encoded by the board layout's encoder without a housekeeping dict."""
        r = self.board.read(self.clock.now_ns())
        jobs = self.jobs.jobs  # job id -> job
        flags = (P.HK_FLAG_THERMAL_THROTTLE if self.thermal_throttle else 0) | (
            P.HK_FLAG_TEST_MODE if self.test_mode else 0)
        pi = r.get("pi_throttled", 0)
        if pi:
            flags |= P.pack_pi_throttled(pi) << P.HK_FLAG_PI_SHIFT
        if jobs:
            last = jobs[max(jobs)]
            job_id, state, progress = last.job_id, last.state, last.step / last.params["steps"]
        else:
            job_id, state, progress = 0, "none", 0.0
        return self._hk_encode(r, self.uptime_s(), self.effective_throttle, self.throttle,
                               self.jobs.running_count(), job_id, state, progress, flags)

    # -- receiving
    @staticmethod
    def _decode(raw: bytes):
        return P.decode_packet(raw), raw

    def _replied(self, req: _Request) -> None:
        """``req`` has sent its last report: a repeat of it now replays them all."""
        hit = self.cache.get(req.key)
        if hit is not None and hit[0] == req.crc:  # (an entry keeps its place in the order)
            self.cache[req.key] = (req.crc, req.sent)
        self.stats["replies"] += 1

    def _on_packet(self, pkt: P.Packet, raw: bytes) -> None:
        """One packet from the link. Only a TC on a command APID executes: an idle packet
        is discarded (CCSDS 133.0-B-2), and so is a TM (a board takes no telemetry); a TC
        on any other APID is refused with TM[1,2] on the agent APID, so that no other
        stream's sequence count moves and a reply never goes out on an APID the board
        does not send on."""
        if pkt.ptype != P.TC:
            self.stats["ignored_tm"] += 1
            return
        if pkt.apid not in P.COMMAND_APIDS:
            if pkt.apid == P.APID_IDLE:
                self.stats["idle"] += 1
                return
            self.stats["foreign_apid"] += 1
            self.stats["rejected"] += 1
            msg = (f"APID 0x{pkt.apid:03x} takes no telecommands (command APIDs: "
                   + ", ".join(f"0x{a:03x} {P.APID_NAMES[a]}" for a in P.COMMAND_APIDS) + ")")
            self.send(self._tm(P.APID_AGENT, P.TM_ACCEPT_FAIL,
                               raw[:4] + P.encode_failure(P.ERR_UNKNOWN_APID, msg), pkt.source_id))
            return
        key = (pkt.source_id, pkt.apid, pkt.seq)
        crc = raw[-2:]
        hit = self.cache.get(key)
        if hit is not None and hit[0] == crc:
            self.stats["duplicates"] += 1
            if hit[1]:
                self.send(hit[1])  # replay the reports; do not execute again
            return  # still executing (its reports will follow), or nothing to report
        self.cache[key] = (crc, None)
        if hit is not None:  # the same key, another command: now the newest entry
            self.cache.move_to_end(key)
        while len(self.cache) > REPLY_CACHE_SIZE:
            self.cache.popitem(last=False)
        self.stats["commands"] += 1
        if self.test_mode:
            k = (pkt.source_id << 32) | (pkt.apid << 16) | pkt.seq
            self.ledger.append(k)
            self.ledger_set.add(k)
        req = _Request(self, key, crc, raw[:4], pkt.apid, pkt.source_id, pkt.ack)
        self._executing = req
        try:
            self._dispatch(pkt, req)
        except _Reject as exc:
            req.reject(exc.code, str(exc))
        except JobError as exc:
            if exc.code == P.ERR_BAD_ARGUMENTS:
                req.reject(exc.code, str(exc))
            else:
                req.fail(exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bad command must not kill the agent
            req.fail(P.ERR_INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            self._executing = None
        req.accept()  # still executing (it waits on a job worker): accepted and started

    def _dispatch(self, pkt: P.Packet, req: _Request) -> None:
        """Check and execute one TC. A failed acceptance check raises ``_Reject`` (or a
        ``JobError`` with code 3) before the command takes any effect."""
        kind = pkt.kind
        ok = req.complete
        if kind == P.TC_FUNCTION:  # the common case (a time sync every frame) first
            data = pkt.data
            if data[:_SYNC_HEAD_LEN] == _SYNC_HEAD:  # a time sync: its exact arguments, read directly
                sync = _sync_args(data)
                if sync is not None:
                    return self._time_sync(sync[0], sync[1], req.result)
            return self._function(data, req)
        if kind == P.TC_PING:
            return ok(P.TM_PING)
        if kind == P.TC_HK_ONE_SHOT:
            return ok(P.TM_HK_REPORT, self._hk_bytes())
        if kind == P.TC_HK_ENABLE_PERIODIC:
            args = _json(pkt.data, "enable periodic housekeeping")
            period = args.get("period_s")
            if not isinstance(period, int | float) or not 1e-4 <= period <= 3600:
                raise _Reject(P.ERR_BAD_ARGUMENTS, "period_s must be a number in 0.0001..3600")
            self.hk_period_s = float(period)
            self.next_hk = time.monotonic()
            self.next_hk_ns = None
            return ok(P.TM_COMPLETE_OK)
        if kind == P.TC_HK_DISABLE_PERIODIC:
            self.hk_period_s = None
            return ok(P.TM_COMPLETE_OK)
        raise _Reject(P.ERR_UNKNOWN_SERVICE, f"unsupported service ({kind[0]},{kind[1]})")

    def _function(self, data: bytes, req: _Request) -> None:
        """A TC[8,1]: function id, then its JSON arguments."""
        if len(data) < 2:
            raise _Reject(P.ERR_BAD_ARGUMENTS, "function management TC without a function id")
        fid = int.from_bytes(data[:2], "big")
        fn = _FUNCTIONS.get(fid)
        if fn is None:
            raise _Reject(P.ERR_UNKNOWN_FUNCTION, f"unknown function id {fid}")
        name, method, test_only = fn
        if test_only and not self.test_mode:
            raise _Reject(P.ERR_NOT_TEST_MODE, f"{name} is accepted only in test mode")
        args = _json(data[2:], name)
        getattr(self, method)(args, req.result, req.fail)

    # -- functions: each gets (args, done(result), failed(code, msg))
    def _fn_board_info(self, args, done, failed) -> None:
        done({
            "name": self.name,
            "kind": self.board.kind,
            "model": self.board.model,
            "machine": os.uname().machine,  # the CPU architecture the agent runs on (aarch64, x86_64)
            "agent_version": AGENT_VERSION,
            "protocol_version": P.PROTOCOL_VERSION,
            "protocol_minor": P.PROTOCOL_MINOR,
            "uptime_s": self.uptime_s(),
            "capabilities": sorted(["ping", "housekeeping", "jobs:matmul", "jobs:mlp",
                                    "checkpoint", "throttle", "time_sync", "time_sync_report",
                                    "reboot"]
                                   + (["inject"] if self.test_mode else [])),
            "test_mode": self.test_mode,
            "clock": "virtual" if self.clock.virtual else "real",
            "job_flops_s": self.job_flops_s,  # a job's pace at throttle 1 (None: free-running)
            "hold_pace": self.hold_pace,  # share of a paced step held busy (0: sleeps what it saves)
            "hk_layout": {"temps": self.board.temp_names, "rails": self.board.rail_names,
                          "layout_id": P.layout_id(self.board.temp_names, self.board.rail_names)},
            "max_packet_bytes": P.MAX_PACKET_BYTES,
        })

    def _fn_set_throttle(self, args, done, failed) -> None:
        x = args.get("throttle")
        if isinstance(x, bool) or not isinstance(x, int | float) or not 0.0 <= x <= 1.0:
            raise _Reject(P.ERR_BAD_ARGUMENTS, f"throttle must be a number in 0..1, got {x!r}")
        changed = float(x) != self.throttle
        self.throttle = float(x)
        self.jobs.set_throttle(self.effective_throttle)
        self._tick()
        if changed:
            self.event("throttle_changed", {"throttle": self.throttle,
                                            "effective_throttle": self.effective_throttle})
        done({"throttle": self.throttle, "effective_throttle": self.effective_throttle})

    def _fn_reboot(self, args, done, failed) -> None:
        done({"rebooting": True})
        self._pending_reboot = True

    def _fn_time_sync(self, args, done, failed) -> None:
        t = args.get("t_ns")
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2**63:
            raise _Reject(P.ERR_BAD_ARGUMENTS, f"t_ns must be a non-negative integer, got {t!r}")
        report = args.get("report", False)
        if not isinstance(report, bool):
            raise _Reject(P.ERR_BAD_ARGUMENTS, f"report must be true or false, got {report!r}")
        self._time_sync(t, report, done)

    def _time_sync(self, t: int, report: bool, done) -> None:
        """The checked time sync to ``t``: the clock moves, then the reply (``done``)."""
        prev = self.clock.now_ns()
        if not self.clock.virtual:
            self.clock.sync(t)
            self._last_tick_ns = t
            done(self._sync_reply(t, prev, report))
            return
        # virtual clock: the jobs compute what they earned up to t (at the throttle held
        # since the last sync), then the board model is integrated up to t, then the reply
        throttle = self.effective_throttle
        if self.boot_sim_ns is None:
            self.boot_sim_ns = t
        self.clock.sync(t)

        def finish() -> None:
            self._tick(t)  # integrate the board model up to t with the power it had
            if self.hk_period_s is not None and (self.next_hk_ns is None or t >= self.next_hk_ns):
                self._unsolicited(P.APID_HK, P.TM_HK_REPORT, self._hk_bytes())
                self.next_hk_ns = t + int(self.hk_period_s * 1e9)
            done(self._sync_reply(t, prev, report))

        self.jobs.advance(t, throttle, finish)

    def _report_jobs(self) -> list:
        """The jobs a time-sync report lists: live ones newest first, then at most
        ``REPORT_MAX_ENDED`` ended ones, newest first; ``REPORT_MAX_JOBS`` in all."""
        live, ended = [], []
        for j in self.jobs.jobs.values():
            (live if j.state in LIVE_STATES else ended).append(j)
        if len(live) > 1:
            live.sort(key=by_job_id, reverse=True)
        if ended:  # the newest REPORT_MAX_ENDED, newest first (no sort of all kept jobs)
            live += heapq.nlargest(REPORT_MAX_ENDED, ended, key=by_job_id)
        return live[:REPORT_MAX_JOBS]

    def _sync_reply(self, t: int, prev: int, report: bool) -> bytes:
        """The time sync's result (``P.encode_time_sync_reply``); with a report, an ended
        job's brief encoded once (it does not change), a live one's at every sync."""
        if not report:
            return P.encode_time_sync_reply(t, prev)
        cache = self._brief_json
        if len(cache) > 4 * REPORT_MAX_JOBS:
            cache.clear()
        briefs = []
        for j in self._report_jobs():
            fields = (j.job_id, j.state, j.step, j.checkpoint_step, j.digest, j.error)
            if j.state in LIVE_STATES:
                briefs.append(P.encode_job_brief(*fields))
                continue
            hit = cache.get(j.job_id)
            if hit is None or hit[0] != fields:
                hit = cache[j.job_id] = (fields, P.encode_job_brief(*fields))
            briefs.append(hit[1])
        return P.encode_time_sync_reply(t, prev, self._hk_bytes(), briefs)

    def _fn_start_job(self, args, done, failed) -> None:
        job = self.jobs.start(args.get("workload"), args.get("params", {}), args.get("deadline_s"),
                              self.clock.now_ns())
        self._tick()
        done({"job_id": job.job_id, "state": job.state})

    def _fn_job_status(self, args, done, failed) -> None:
        done(self.jobs._job(args.get("job_id")).status())

    def _fn_checkpoint(self, args, done, failed) -> None:
        self.jobs.checkpoint(args.get("job_id"), _cb(done, failed))

    def _fn_suspend(self, args, done, failed) -> None:
        self.jobs.checkpoint(args.get("job_id"), _cb(done, failed), stop=True)

    def _fn_resume(self, args, done, failed) -> None:
        job = self.jobs.resume(args.get("job_id"), self.clock.now_ns())
        done({"job_id": job.job_id, "state": job.state})

    def _fn_cancel(self, args, done, failed) -> None:
        job = self.jobs.cancel(args.get("job_id"))
        self._tick()
        done({"job_id": job.job_id, "state": job.state})

    def _fn_inject_seu(self, args, done, failed) -> None:
        idx, bit = args.get("index"), args.get("bit")
        for k, v in (("index", idx), ("bit", bit)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise _Reject(P.ERR_BAD_ARGUMENTS, f"{k} must be a non-negative integer")
        self.jobs.request(args.get("job_id"), "seu", (idx, bit), _cb(done, failed))

    def _fn_inject_hang(self, args, done, failed) -> None:
        d = args.get("duration_s", 0)
        if isinstance(d, bool) or not isinstance(d, int | float) or d < 0:
            raise _Reject(P.ERR_BAD_ARGUMENTS, "duration_s must be >= 0 (0 = until power cycle)")
        done({"hang": True, "duration_s": d})
        self.hung_until = float("inf") if d == 0 else time.monotonic() + d
        self.jobs.freeze()  # the whole board hangs, its compute included

    def _fn_test_ledger(self, args, done, failed) -> None:
        off = args.get("offset", 0)
        if isinstance(off, bool) or not isinstance(off, int) or off < 0:
            raise _Reject(P.ERR_BAD_ARGUMENTS, "offset must be a non-negative integer")
        done({"total": len(self.ledger), "unique": len(self.ledger_set),
              "keys": self.ledger[off:off + 150]})

    # -- the loop
    def _tick(self, until_ns: int | None = None) -> None:
        """Advance the board model to ``until_ns`` (default: now) and run the governor."""
        now = self.clock.now_ns() if until_ns is None else until_ns
        self.board.advance(now, self.load, self.effective_throttle)
        self._last_tick_ns = now
        temps = [t for t in self.board.read(now)["temps_k"].values() if t == t]  # not NaN
        tmax = max(temps) if temps else 0.0
        was = self.thermal_throttle
        if not was and tmax > THERMAL_LIMIT_K:
            self.thermal_throttle = True
        elif was and tmax < THERMAL_CLEAR_K:
            self.thermal_throttle = False
        if was != self.thermal_throttle:
            self.jobs.set_throttle(self.effective_throttle)
            self.event("thermal_throttle", {"active": self.thermal_throttle, "temp_k": tmax},
                       "medium" if self.thermal_throttle else "info")
        if self.on_tick is not None:
            self.on_tick(self)

    def step(self, timeout_s: float = TICK_S) -> None:
        mono = time.monotonic()
        if self.hung_until is not None and mono >= self.hung_until:
            self.hung_until = None
            self.jobs.thaw()
        wait = timeout_s
        periodic = self.hk_period_s is not None and not self.clock.virtual
        if periodic and self.hung_until is None:
            wait = min(wait, max(0.0, self.next_hk - mono))
        rlist = self.jobs.fds()  # a new list
        fd = None
        holding = self.ordered_replies and self._holding()  # a command waits on a job worker:
        # read no more until it is answered
        if self._inbox and not holding:
            wait = 0.0  # commands read earlier wait: poll, then execute them
        if not holding and mono >= self._peer_absent_until:
            fd = self.transport.fileno()
            if fd is None:  # the serial device is not there (yet): look again shortly
                self._peer_absent_until = mono + 0.2
        if fd is not None:
            rlist.append(fd)
        elif not holding:
            wait = min(wait, max(0.0, self._peer_absent_until - mono) + 1e-3)
        if rlist:
            ready = select.select(rlist, [], [], wait)[0]
        else:
            time.sleep(wait)
            ready = []
        if fd is not None and fd in ready:
            ready.remove(fd)  # the rest are workers' pipes
            data = self.transport.read()
            if data is None:
                self._peer_absent_until = time.monotonic() + 0.02
            elif data:
                pkts = self.deframer.feed(data)
                if self.hung_until is None:  # a hung board executes nothing it hears
                    self._inbox.extend(pkts)
        self._serve_inbox()
        self.jobs.poll(ready, self.clock.now_ns())
        self._serve_inbox()  # a worker's answer may have ended a hold
        period = self.hk_period_s  # again: a command in this step may have turned it off
        if periodic and period is not None and self.hung_until is None:
            mono = time.monotonic()
            if mono >= self.next_hk:
                self._unsolicited(P.APID_HK, P.TM_HK_REPORT, self._hk_bytes())
                self.next_hk += period
                if self.next_hk < mono - 0.1:  # fell far behind: do not burst to catch up
                    self.next_hk = mono
        if not self.clock.virtual:
            self._tick()
        elif self.on_tick is not None:
            self.on_tick(self)

    def _holding(self) -> bool:
        """With ``ordered_replies`` (virtual clock): a command is waiting on a job worker
        (a checkpoint, a suspend, an SEU, the time sync that finishes a job). The agent
        then executes no further command until it is answered, so replies go out in the
        order the commands came in, whatever the workers' timing: the bytes on the link
        are then a function of the commands alone, and a noisy link
        (``proxy.FaultProxy``) damages the same frames in every run. It costs time (a
        time sync sent right after a checkpoint waits for the save), so it is for links
        with faults; otherwise the replies' order does not change what the host sees."""
        return self.ordered_replies and self.clock.virtual and self.jobs.awaited()

    def _serve_inbox(self) -> None:
        """Execute the commands read so far, in order, until one waits on a worker."""
        inbox = self._inbox
        while inbox and not (self.ordered_replies and self._holding()):
            pkt, raw = inbox.popleft()
            self._pending_reboot = False
            if self.hung_until is None:  # (a command before it may have hung the board)
                try:
                    self._on_packet(pkt, raw)
                except Exception as exc:  # noqa: BLE001 - the last guard: no packet stops the agent
                    self._executing = None
                    self.stats["internal_errors"] += 1
                    print(f"agent {self.name}: internal error on TC[{pkt.service},{pkt.subtype}] "
                          f"APID 0x{pkt.apid:03x}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if self._pending_reboot:
                self.reboot()
                self._pending_reboot = False

    def reboot(self) -> None:
        self.jobs.shutdown()
        self._boot()
        self._tick()
        self.event("boot", {"name": self.name, "reason": "reboot"})

    def serve_forever(self) -> None:
        self._tick()
        self.event("boot", {"name": self.name, "reason": "power_on"})
        try:
            while self.running:
                self.step()
        finally:
            self.jobs.shutdown()

    _pending_reboot = False


def _json(data: bytes, what: str) -> dict:
    try:
        return P.decode_json(data, what)
    except P.PacketError as exc:
        raise _Reject(P.ERR_BAD_ARGUMENTS, str(exc)) from None


#: A time sync's data as the link sends it (``link._time_sync_data``): the function id,
#: then ``{"report":true,"t_ns":N}`` or ``{"t_ns":N}``
_SYNC_FID = P.FUNCTIONS["time_sync"][0].to_bytes(2, "big")
_SYNC_HEAD = _SYNC_FID + b'{"'
_SYNC_HEAD_LEN = len(_SYNC_HEAD)
_SYNC_REPORT = _SYNC_FID + b'{"report":true,"t_ns":'
_SYNC_PLAIN = _SYNC_FID + b'{"t_ns":'


def _sync_args(data: bytes) -> tuple[int, bool] | None:
    """``(t_ns, report)`` of a time sync's data in exactly one of the link's two forms
    with a valid ``t_ns`` (an integer in 0..2**63-1 written as JSON writes it: digits,
    no leading zero), which ``json.loads`` would read as the same arguments; None for
    any other data (the general path then reads it, and refuses it if it is bad)."""
    if data[-1:] != b"}":
        return None
    if data.startswith(_SYNC_REPORT):
        digits, report = data[len(_SYNC_REPORT):-1], True
    elif data.startswith(_SYNC_PLAIN):
        digits, report = data[len(_SYNC_PLAIN):-1], False
    else:
        return None
    if not digits.isdigit() or (digits[0] == 48 and len(digits) > 1):  # 48: "0"
        return None
    t = int(digits)
    return (t, report) if t < 1 << 63 else None


def _cb(done, failed):
    def cb(ok: bool, result) -> None:
        if ok:
            done(result)
        else:
            failed(P.ERR_BAD_STATE, str(result))
    return cb


def _share(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = float("nan")
    if not 0.0 < x <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {text!r}")
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_bridge.agent",
                                 description="orbit-hil board agent (runs on the payload board)")
    ap.add_argument("--port", required=True, help="serial device or pyserial URL, e.g. /dev/ttyTHS1")
    ap.add_argument("--baud", type=int, default=921600)
    ap.add_argument("--name", default=os.uname().nodename)
    ap.add_argument("--sensor-root", default="/", help="root of sysfs/procfs (tests: a recorded tree)")
    ap.add_argument("--state-dir", default=None, help="where job checkpoints are kept")
    ap.add_argument("--test-mode", action="store_true", help="accept inject commands (SEU, hang)")
    ap.add_argument("--rated-flops", type=int, default=None,
                    help="pace jobs at this many FLOP/s x throttle (default: the board kind's rating in "
                         "firmware_bridge.ratings; 0: free-running)")
    ap.add_argument("--hold-pace", type=_share, nargs="?", const=1.0, default=0.0, metavar="SHARE",
                    help="keep the CPU busy for SHARE (0 < SHARE <= 1, default 1) of a paced job step's rated time "
                         "instead of sleeping what a faster CPU saves (a board whose draw is read from its CPU use, "
                         "such as a QEMU board)")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.sensor_root):
        ap.error(f"--sensor-root {a.sensor_root!r} is not a directory")
    agent = Agent(SerialTransport(a.port, a.baud), SysfsBoard(a.sensor_root), name=a.name,
                  test_mode=a.test_mode, state_dir=a.state_dir, job_flops_s=a.rated_flops,
                  hold_pace=a.hold_pace)
    # one line on stdout (the journal, on a board under systemd) once the agent serves its port
    print(f"firmware_bridge.agent: serving {a.port} as {a.name} ({agent.board.kind}, {agent.board.model}"
          f"{', test mode' if a.test_mode else ''})", flush=True)
    try:
        agent.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
