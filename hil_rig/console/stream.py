"""What the console shows and sends, without the screen: one telemetry stream from
a live run (:class:`LiveSource`: HK and events from the ground port, status and
the rig's events from the control endpoint) or from a finished run's archive
(:class:`ReplaySource`); the command stack that advances on
the flight software's acknowledgements (:class:`CommandStack`). The command line's
grammar and procedures are :mod:`hil_rig.procedure`, shared with the run."""

from __future__ import annotations

import dataclasses
import math
import pathlib
import socket
import sqlite3
import threading
import time
from typing import Any

from flight_sw.dictionary import (
    BOARD_STATES,
    DictionaryError,
    TmCodec,
)
from hil_rig.constants import NS_PER_S as NS
from hil_rig.procedure import Line
from hil_rig.run.control_server import ControlClient, ControlError, Endpoints


# ---- the command stack ---------------------------------------------------------------------
@dataclasses.dataclass
class StackItem:
    n: int
    line: Line
    state: str = "queued"     # queued | sent | accepted | completed | failed | rejected | unsent
    arsn: int | None = None
    t_sent: float | None = None        # wall clock, for the round-trip figure
    t_done: float | None = None
    detail: str = ""
    t_acc_ns: int = -1                 # simulation time of the frame that accepted it
    packet: bytes = b""                # the bytes sent: re-sent as they are after a reconnect
    #: it asked for PUS service 1 reports: they, not the events, advance it
    acked: bool = False
    reports: list[str] = dataclasses.field(default_factory=list)  # "TM[1,1]", ... as they came


#: tc_rejected reasons of a packet that is not authentic: no verification report comes
UNAUTHENTIC = ("bad_mac", "unknown_spi", "bad_header", "bad_length", "too_short", "too_long", "malformed")


class CommandStack:
    """Telecommands go up one at a time: the next is sent only when the one before
    has its acknowledgement from the flight software. A TC that asked for them (the
    console's do) advances on its PUS service 1 reports, matched by SPI and ARSN:
    acceptance (TM[1,1]) or its failure (TM[1,2]), start (TM[1,3]), completion
    (TM[1,7]) or its failure (TM[1,8]); a packet refused as not authentic gets no
    report, so its ``tc_rejected`` event rejects it. Without reports: ``tc_accepted``
    (with its SPI and ARSN), then completion (the next housekeeping frame with no
    ``tc_failed`` for it) or ``tc_failed``; or ``tc_rejected``."""

    def __init__(self) -> None:
        self.items: list[StackItem] = []
        self._n = 0

    def push(self, line: Line) -> StackItem:
        self._n += 1
        it = StackItem(self._n, line)
        self.items.append(it)
        return it

    @property
    def head(self) -> StackItem | None:
        for it in self.items:
            if it.state in ("sent", "accepted", "started"):
                return it
        return None

    def next_to_send(self) -> StackItem | None:
        if self.head is not None:
            return None
        for it in self.items:
            if it.state == "queued":
                return it
        return None

    @property
    def idle(self) -> bool:
        return all(it.state not in ("queued", "sent", "accepted", "started") for it in self.items)

    _REPORT_STATE = {1: "accepted", 2: "rejected", 3: "started", 7: "completed", 8: "failed"}

    def on_report(self, rep: dict[str, Any], spi: int) -> StackItem | None:
        """A PUS service 1 report (``TmCodec.decode``'s ``verification``) for the TC in flight."""
        h = self.head
        if h is None or rep.get("spi") != spi or rep.get("arsn") != h.arsn:
            return None
        sub = int(rep["subtype"])
        h.reports.append(f"TM[1,{sub}]")
        h.state = self._REPORT_STATE[sub]
        if sub in (2, 8):
            h.detail = str(rep.get("reason", ""))
        if sub in (2, 7, 8):
            h.t_done = time.monotonic()
        return h

    def on_event(self, ev: dict[str, Any], spi: int) -> StackItem | None:
        h = self.head
        if h is None:
            return None
        f = ev.get("fields", {})
        name = ev.get("name")
        if h.acked:  # its reports advance it; only a refusal that gets none counts here
            if name == "tc_rejected" and h.state == "sent" and f.get("reason") in UNAUTHENTIC:
                h.state, h.detail, h.t_done = "rejected", str(f.get("reason", "")), time.monotonic()
                return h
            return None
        if name == "tc_accepted" and f.get("spi") == spi and f.get("arsn") == h.arsn:
            h.state, h.t_acc_ns = "accepted", int(ev.get("t_s", 0) * NS)
            return h
        if name == "tc_failed" and h.state == "accepted" and f.get("command") == h.line.name:
            h.state, h.detail, h.t_done = "failed", str(f.get("error", "")), time.monotonic()
            return h
        if name == "tc_rejected" and h.state == "sent":
            h.state, h.detail, h.t_done = "rejected", str(f.get("reason", "")), time.monotonic()
            return h
        return None

    def on_hk(self, t_ns: int) -> StackItem | None:
        """A housekeeping frame after the frame that accepted the head completes it."""
        h = self.head
        if h is not None and not h.acked and h.state == "accepted" and t_ns >= h.t_acc_ns:
            h.state, h.t_done = "completed", time.monotonic()
            return h
        return None


# ---- sources -----------------------------------------------------------------------------------
class Frame:
    """What a source holds for the screen: the last HK, the last status, and what is new."""

    def __init__(self) -> None:
        self.hk: dict[str, Any] = {}
        self.status: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []   # {t_s, source, name, severity, text, fields}
        self.notices: list[str] = []
        self.hk_frames: list[int] = []           # t_ns of every HK frame since the last take
        self.hk_arrived: list[float] = []        # monotonic time each of those reached the console
        self.reconnected = False                 # the ground port's connection was made anew
        self.reports: list[dict[str, Any]] = []  # PUS service 1 reports


class LiveSource:
    """A live run through its two endpoints. Reconnects when a connection drops; the
    console re-sends the TC in flight after a reconnect with the same bytes (the same
    ARSN), so the flight software executes it at most once (a copy that got through
    before the drop makes the re-sent one a refused replay)."""

    live = True

    def __init__(self, endpoints: Endpoints, key: bytes) -> None:
        from flight_sw.tc import SPI_GROUND, TcSender

        self.ep = endpoints
        self._key = key
        self.boards = list(endpoints.boards)
        self.codec = TmCodec(self.boards)
        self.spi = SPI_GROUND
        self._lock = threading.Lock()
        self._frame = Frame()
        self._stop = threading.Event()
        self.ended = False
        self.connected = False
        self.control = ControlClient(endpoints.host, endpoints.control_port, key)
        st = self.control.request("status")
        self._frame.status = st
        self.tx = TcSender(key, spi=SPI_GROUND, first_arsn=int(st.get("ground_last_arsn", 0)) + 1)
        self._ground: socket.socket | None = None
        self._connect_ground()
        self._events_after = 0
        self._threads = [threading.Thread(target=self._ground_reader, daemon=True, name="console-ground"),
                         threading.Thread(target=self._poller, daemon=True, name="console-status")]
        for t in self._threads:
            t.start()

    def _connect_ground(self) -> None:
        try:
            self._ground = socket.create_connection((self.ep.host, self.ep.ground_port), timeout=5)
            self._ground.settimeout(None)
            self.connected = True
        except OSError as exc:
            self._ground = None
            self.connected = False
            raise ControlError(f"ground port {self.ep.host}:{self.ep.ground_port}: {exc.strerror or exc}") from None

    def _ground_reader(self) -> None:
        from flight_sw.ground import read_packet

        while not self._stop.is_set():
            g = self._ground
            pkt = None
            if g is not None:
                try:
                    pkt = read_packet(g)
                except OSError:
                    pkt = None
            if pkt is None:
                if self._stop.is_set() or self.ended:
                    return
                self.connected = False
                time.sleep(0.5)
                try:
                    self._connect_ground()
                    with self._lock:
                        self._frame.reconnected = True
                    self._notice("ground port: reconnected")
                except ControlError:
                    pass
                continue
            try:
                m = self.codec.decode(pkt)
            except (DictionaryError, ValueError):
                continue
            with self._lock:
                if m["kind"] == "verification":
                    self._frame.reports.append(m)
                elif m["kind"] == "hk":
                    self._frame.hk = m
                    self._frame.hk_frames.append(m["t_ns"])
                    self._frame.hk_arrived.append(time.monotonic())
                else:
                    from flight_sw.dictionary import EVENT_BY_NAME

                    sev = EVENT_BY_NAME[m["name"]].severity
                    self._frame.events.append({"t_s": m["t_ns"] / NS, "source": "fsw", "name": m["name"],
                                               "severity": sev, "fields": m["fields"],
                                               "text": " ".join(f"{k}={v}" for k, v in m["fields"].items())})

    def _notice(self, text: str) -> None:
        with self._lock:
            self._frame.notices.append(text)

    def _poller(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                st = self.control.request("status")
                ev = self.control.request("events", after=self._events_after) if n % 4 == 0 else []
            except ControlError as exc:
                if self._stop.is_set():
                    return
                if not self._reconnect_control():
                    with self._lock:
                        if not self.ended:
                            self.ended = True
                            self._frame.status = {**self._frame.status, "ended": True,
                                                  "end_reason": f"the run is gone ({exc})"}
                            self._frame.notices.append(f"the run has ended or is unreachable: {exc}")
                    return
                continue
            with self._lock:
                self._frame.status = st
                for seq, t_s, src, kind, detail in ev:
                    self._events_after = max(self._events_after, seq)
                    sev = "security" if kind.startswith("control_auth") else \
                        "warning" if kind.endswith(("_start", "aborted")) or src == "fault" else "info"
                    self._frame.events.append({"t_s": t_s, "source": src, "name": kind, "severity": sev,
                                               "fields": {}, "text": detail})
                if st.get("ended") and not self.ended:
                    self.ended = True
                    self._frame.notices.append(f"the run has ended: {st.get('end_reason')}")
            n += 1
            self._stop.wait(0.25)

    def _reconnect_control(self) -> bool:
        for _ in range(6):
            if self._stop.is_set():
                return False
            try:
                c = ControlClient(self.ep.host, self.ep.control_port, self._key)
            except ControlError:
                time.sleep(0.5)
                continue
            old, self.control = self.control, c
            old.close()
            self._notice("control endpoint: reconnected")
            return True
        return False

    def take(self) -> Frame:
        with self._lock:
            f = self._frame
            nf = Frame()
            nf.hk, nf.status = f.hk, f.status
            self._frame = nf
            return f

    def send_tc(self, name: str, args: dict[str, Any]) -> tuple[int, bytes]:
        """Send a TC asking for every verification report; returns (ARSN, the bytes)."""
        from flight_sw.dictionary import ACK_ALL

        arsn = self.tx.arsn
        pkt = self.tx.build(name, ack=ACK_ALL, **args)
        self.resend(pkt)
        return arsn, pkt

    def resend(self, pkt: bytes) -> None:
        g = self._ground
        if g is None:
            raise ControlError("ground port: not connected")
        try:
            g.sendall(pkt)
        except OSError as exc:
            raise ControlError(f"ground port: {exc.strerror or exc}") from None

    def request(self, op: str, **kw: Any) -> Any:
        return self.control.request(op, **kw)

    def close(self) -> None:
        self._stop.set()
        if self._ground is not None:
            try:
                self._ground.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._ground.close()
        self.control.close()


class ReplaySource:
    """A finished (or running) run's archive played through the same panels, with
    pause, seek and speed (``hil console --replay RUN_DIR``)."""

    live = False

    def __init__(self, run_dir: str | pathlib.Path, speed: float = 10.0) -> None:
        from hil_rig.archive import ArchiveError, _archive_path

        try:
            path = _archive_path(run_dir)
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except (ArchiveError, sqlite3.Error) as exc:
            raise ControlError(f"--replay {run_dir}: {exc}") from None
        try:
            cur = db.execute("SELECT * FROM telemetry ORDER BY t_ns")
            cols = [d[0] for d in cur.description]
            self.rows = cur.fetchall()
            self.cols = {c: i for i, c in enumerate(cols)}
            payload = db.execute("SELECT t_ns, board, state, power_w, temp_k, jobs_done FROM payload "
                                 "ORDER BY t_ns").fetchall()
            self.events_rows = db.execute("SELECT t_ns, source, kind, detail FROM events ORDER BY seq").fetchall()
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise ControlError(f"--replay {run_dir}: not a readable orbit-hil archive: {exc}") from None
        finally:
            db.close()
        if not self.rows:
            raise ControlError(f"--replay {run_dir}: the archive holds no telemetry")
        self.meta = meta
        self.boards = [b.split(":")[0] for b in meta.get("boards", "").split(",") if b]
        self.payload: dict[int, dict[str, tuple]] = {}
        for t, b, st, pw, tk, jobs in payload:
            self.payload.setdefault(t, {})[b] = (st, pw, tk, jobs)
        self.times = [r[0] for r in self.rows]
        self.i = 0
        self.t_ns = self.times[0]
        self.speed = speed
        self.paused = False
        self.ended = False
        self._wall = time.monotonic()
        self._ev_i = 0
        self.spi = 0

    def _index(self, t_ns: int) -> int:
        import bisect

        return max(0, bisect.bisect_right(self.times, t_ns) - 1)

    def seek(self, delta_s: float) -> None:
        self.t_ns = int(min(max(self.t_ns + delta_s * NS, self.times[0]), self.times[-1]))
        self._ev_i = 0
        while self._ev_i < len(self.events_rows) and self.events_rows[self._ev_i][0] <= self.t_ns:
            self._ev_i += 1

    def take(self) -> Frame:
        now = time.monotonic()
        if not self.paused:
            self.t_ns = min(self.t_ns + int((now - self._wall) * self.speed * NS), self.times[-1])
        self._wall = now
        f = Frame()
        row = self.rows[self._index(self.t_ns)]
        c = self.cols
        hk: dict[str, Any] = {"kind": "hk", "t_ns": row[0]}
        for name, i in c.items():
            if name.startswith("fsw_"):
                v = row[i]
                hk[name[4:]] = math.nan if v is None else v
        boards_state = {}
        for b, (st, pw, tk, _jobs) in self.payload.get(row[0], {}).items():
            hk[f"board.{b}.state"] = BOARD_STATES.index(st) if st in BOARD_STATES else 0
            hk[f"board.{b}.power_w"] = math.nan if pw is None else pw
            hk[f"board.{b}.temp_k"] = math.nan if tk is None else tk
            boards_state[b] = st
        f.hk = hk
        f.hk_frames = [row[0]]
        f.status = {"t_s": row[0] / NS, "orbit": row[c["orbit"]], "sunlit": (row[c["illumination"]] or 0) > 0.5,
                    # (archives from before the beta angle was stored have no such column)
                    "beta_deg": row[c["beta_deg"]] if "beta_deg" in c else None,
                    "paused": self.paused, "speed": self.speed, "clock": "replay", "boards": boards_state,
                    "duration_s": self.times[-1] / NS, "ended": False}
        while self._ev_i < len(self.events_rows) and self.events_rows[self._ev_i][0] <= self.t_ns:
            t, src, kind, detail = self.events_rows[self._ev_i]
            f.events.append({"t_s": t / NS, "source": src, "name": kind, "severity": "info", "fields": {},
                             "text": detail})
            self._ev_i += 1
        return f

    def request(self, op: str, **kw: Any) -> Any:
        if op == "pause":
            self.paused = True
        elif op == "resume":
            self.paused = False
        elif op == "speed":
            self.speed = float(kw["speed"])
        elif op == "step":
            from hil_rig.scenario import parse_duration

            self.paused = True
            self.seek(parse_duration(kw.get("duration", "1 s"), "step").to_ns(None) / NS)
        elif op == "seek":
            self.seek(float(kw["delta_s"]))
        else:
            raise ControlError(f"{op}: not in a replay")
        return None

    def close(self) -> None:
        pass
