"""Requirement judges: watch a run from start to end and give one verdict each
(docs/scenarios.md, "Requirements").

A judge sees the 1 Hz :class:`Sample` stream and the run's fault actions and
orbit events; it never reads the wall clock. Verdicts go to ``summary.json``
and ``junit.xml`` (one test case per requirement).

A requirement that the run never exercises (a hang-recovery requirement with no
hang injected, sun pointing with no eclipse exit) fails with that reason: a
verdict is never a pass by default.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from hil_rig.constants import NS_PER_S as NS
from hil_rig.faults import FaultAction, OrbitEvents
from hil_rig.scenario import RequirementSpec

#: The board states (flight_sw.dictionary.BOARD_STATES, lower case) in which the flight
#: software heard from the board this frame: the others are off, fault and isolated.
HEALTHY_STATES = frozenset({"idle", "busy", "suspended"})

#: One recorded event: (t_ns, source, name, detail), a row of the archive's events table.
Event = tuple[int, str, str, str]


@dataclasses.dataclass
class Sample:
    """What the judges see once per simulated second.

    - ``t_ns``: simulation time, ns since the scenario epoch.
    - ``soc``: the battery's state of charge, 0..1 (the plant's truth).
    - ``illumination``: the fraction of the sun's disc the spacecraft sees, 0 (umbra)
      .. 1 (full sun) (the plant's truth).
    - ``sun_err_deg``: the angle between the sun and the main solar panel's normal,
      degrees (the plant's truth); NaN when unknown.
    - ``payload_temp_c``: the plant's payload thermal node(s), °C, by node name
      (``payload_node``).
    - ``board_state``: each board's state as the flight software's housekeeping
      reports it (``flight_sw.dictionary.BOARD_STATES`` in lower case: ``off``,
      ``idle``, ``busy``, ``suspended``, ``fault``, ``isolated``).
    - ``jobs_done``: jobs the flight software has completed and verified so far.
    - ``seu_detected``: corrupted results the flight software has caught so far.
    - ``board_temp_c``: each board's own temperature (its hottest zone), °C, as the
      flight software's housekeeping reports it (channel ``board.<name>.temp_k``
      minus 273.15: the archive's ``payload.temp_k``, in kelvin there); None for a
      board with no reading yet. The whole field None: the run does not report
      board temperatures (``payload_temp_max`` then fails: it cannot judge them).
    - ``mode``: the flight software's mode name (``flight_sw.dictionary.MODE_NAMES``,
      e.g. ``"SAFE"``); ``""``: not reported (``mode_reached`` then fails).
    - ``events``: the events recorded since the previous sample, in order, each
      ``(t_ns, source, name, detail)`` as in the archive's events table: source
      ``"fsw"`` (the flight software's event log; detail its fields as JSON),
      ``"rig"`` or ``"fault"`` (the run's own; detail text). None: the run does not
      report events (``event_seen`` and ``event_never_seen`` then fail).
    """

    t_ns: int
    soc: float
    illumination: float
    sun_err_deg: float
    payload_temp_c: Mapping[str, float]
    board_state: Mapping[str, str]
    jobs_done: int
    seu_detected: int = 0
    board_temp_c: Mapping[str, float | None] | None = None
    mode: str = ""
    events: Sequence[Event] | None = None

    def healthy(self, board: str) -> bool:
        return self.board_state.get(board, "") in HEALTHY_STATES


@dataclasses.dataclass
class Verdict:
    name: str
    kind: str
    passed: bool
    detail: str
    measured: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Judge:
    def __init__(self, spec: RequirementSpec, orbit: OrbitEvents, faults: Sequence[FaultAction]) -> None:
        self.spec, self.orbit, self.faults = spec, orbit, list(faults)
        self.p = spec.params

    def add_faults(self, actions: Sequence[FaultAction]) -> None:
        """Faults injected during the run (``Run.inject``): judged like the scenario's."""
        self.faults.extend(actions)
        self._faults_added(actions)

    def _faults_added(self, actions: Sequence[FaultAction]) -> None:
        pass  # a judge that derives state from its faults at construction updates it here

    def add_yield(self, run_yield: Mapping[str, Any]) -> None:
        """The run's yield against its bound (``summary.json``'s ``yield``), computed at
        the end of the run, before the verdicts; only ``yield_min`` looks at it."""

    def observe(self, s: Sample) -> None:  # pragma: no cover - overridden
        pass

    def verdict(self, end_ns: int) -> Verdict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _v(self, passed: bool, detail: str, **measured: Any) -> Verdict:
        return Verdict(self.spec.name, self.spec.kind, bool(passed), detail, measured)

    def provisional(self, t_ns: int) -> dict[str, Any]:
        """The verdict so far, while the run goes (the console's live verdicts):
        ``state`` ``"pass"`` (it would pass if the run ended now), ``"fail"`` (it
        failed, and nothing later can undo that) or ``"pending"`` (it would fail
        now, but the rest of the run may still satisfy it: a mode not reached yet, a
        window not open yet, an orbit not complete). Reads only; no side effects."""
        v = self.verdict(t_ns)
        state = "pass" if v.passed else "fail" if self._failed_for_good(t_ns) else "pending"
        return {"name": v.name, "kind": v.kind, "state": state, "final": False,
                "detail": v.detail.replace("(run ended at ", "(so far: ")}

    def _failed_for_good(self, t_ns: int) -> bool:
        """A failing verdict at ``t_ns`` that the rest of the run cannot change."""
        return False


def _s(t_ns: int) -> str:
    return f"t = {t_ns / NS:.0f} s"


class SocFloor(Judge):
    """The battery's state of charge (plant truth) never below ``min``; an unknown
    (NaN) SOC is a failure too."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.min_soc, self.t_min = math.inf, 0
        self.nan_s, self.t_nan = 0, 0

    def observe(self, s: Sample) -> None:
        if s.soc != s.soc:
            self.nan_s += 1
            self.t_nan = self.t_nan or s.t_ns
        elif s.soc < self.min_soc:
            self.min_soc, self.t_min = s.soc, s.t_ns

    def _failed_for_good(self, t_ns: int) -> bool:
        return bool(self.nan_s) or self.min_soc < self.p["min"]

    def verdict(self, end_ns: int) -> Verdict:
        if self.nan_s:
            return self._v(False, f"SOC unknown (NaN) for {self.nan_s} s, first at {_s(self.t_nan)}",
                           nan_s=self.nan_s)
        if not math.isfinite(self.min_soc):
            return self._v(False, "no SOC sample was seen")
        ok = self.min_soc >= self.p["min"]
        return self._v(ok, f"lowest SOC {self.min_soc:.3f} at {_s(self.t_min)} "
                           f"({'>=' if ok else '<'} floor {self.p['min']:.3f})",
                       min_soc=round(self.min_soc, 6), at_s=self.t_min / NS)


class PayloadTempMax(Judge):
    """Every payload temperature stays <= ``max_c``: the plant's payload node and each
    board's own temperature as the flight software reports it. A board that never
    reports a temperature, or a run that reports no board temperatures, fails: the
    requirement cannot be judged for it."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.peak: dict[str, tuple[float, int]] = {}  # where -> (hottest °C, when)
        self.boards: set[str] = set()
        self.boards_reported = False
        self.over_s, self.t_over = 0, None

    def _see(self, where: str, c: float | None, t_ns: int) -> bool:
        if c is None or c != c:
            return False
        if where not in self.peak or c > self.peak[where][0]:
            self.peak[where] = (c, t_ns)
        return c > self.p["max_c"]

    def observe(self, s: Sample) -> None:
        over = False
        for node, c in s.payload_temp_c.items():
            over |= self._see(node, c, s.t_ns)
        self.boards.update(s.board_state)
        if s.board_temp_c is not None:
            self.boards_reported = True
            self.boards.update(s.board_temp_c)
            for b, c in s.board_temp_c.items():
                over |= self._see(b, c, s.t_ns)
        if over:
            self.over_s += 1
            if self.t_over is None:
                self.t_over = s.t_ns

    def _failed_for_good(self, t_ns: int) -> bool:
        return self.over_s > 0

    def verdict(self, end_ns: int) -> Verdict:
        lim = self.p["max_c"]
        peaks = {k: round(c, 3) for k, (c, _t) in sorted(self.peak.items())}
        if self.boards and not self.boards_reported:
            return self._v(False, f"the run reported no board temperatures: {', '.join(sorted(self.boards))} "
                                  "not judged", peaks_c=peaks)
        silent = sorted(self.boards - set(self.peak))
        if silent:
            return self._v(False, f"no temperature reading from {', '.join(silent)}: not judged", peaks_c=peaks)
        if not self.peak:
            return self._v(False, "no payload temperature sample was seen")
        where, (hot, t_hot) = max(self.peak.items(), key=lambda kv: kv[1][0])
        ok = hot <= lim
        others = ", ".join(f"{k} {c:.1f}" for k, c in peaks.items())
        detail = (f"hottest {hot:.1f} °C ({where}) at {_s(t_hot)} ({'<=' if ok else '>'} limit {lim:.1f} °C); "
                  f"peaks °C: {others}")
        if not ok:
            detail += f"; above the limit for {self.over_s} s, from {_s(self.t_over or 0)}"
        return self._v(ok, detail, max_c=round(hot, 3), where=where, at_s=t_hot / NS, peaks_c=peaks,
                       over_s=self.over_s)


class HangRecovered(Judge):
    """Each injected hang: the board goes unhealthy, then healthy again within
    ``within_s`` of the fault's start (its state as the flight software reports it).

    With events reported, a hang whose injection never reached the board (no
    ``fault``/``payload_hang_injected`` event whose detail starts with the board's
    name) fails as not exercised, instead of blaming detection."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        # [start, board, seen_down, t_recovered, t_injected]
        self.hangs: list[list[Any]] = []
        self._faults_added(self.faults)
        self.events_reported = False

    def _faults_added(self, actions: Sequence[FaultAction]) -> None:
        self.hangs += [[f.t_ns, f.target, False, None, None] for f in actions
                       if f.kind == "payload_hang" and f.phase == "start"]

    def observe(self, s: Sample) -> None:
        if s.events is not None:
            self.events_reported = True
            for t, src, name, detail in s.events:
                if src == "fault" and name == "payload_hang_injected":
                    for h in self.hangs:
                        if h[4] is None and t >= h[0] and detail.split(" ", 1)[0] == h[1]:
                            h[4] = t
                            break
        for h in self.hangs:
            t0, board, seen_down, t_rec, _ti = h
            if t_rec is not None or s.t_ns <= t0:
                continue
            if not s.healthy(board):
                h[2] = True
            elif seen_down:
                h[3] = s.t_ns

    def verdict(self, end_ns: int) -> Verdict:
        if not self.hangs:
            return self._v(False, "no payload_hang fault was injected: requirement not exercised")
        lim = self.p["within_s"]
        times = []
        for t0, board, seen_down, t_rec, t_inj in self.hangs:
            if self.events_reported and t_inj is None:
                return self._v(False, f"hang of {board} at {_s(t0)}: the injection never reached the board "
                                      "(no payload_hang_injected event): requirement not exercised")
            if t_rec is None:
                why = "never went unhealthy (hang not detected)" if not seen_down else "never recovered"
                return self._v(False, f"hang of {board} at {_s(t0)}: {why}")
            times.append((t_rec - t0) / NS)
        worst = max(times)
        ok = worst <= lim
        return self._v(ok, f"{len(times)} hang(s) recovered, slowest in {worst:.0f} s "
                           f"({'<=' if ok else '>'} {lim:.0f} s)", recovery_s=times)


class SunPointing(Judge):
    """From ``within_min`` after each eclipse exit until the next entry, in full sun,
    the sun pointing error (plant truth) stays within ``within_deg``; an unknown
    (NaN) error there is a failure too."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.worst, self.t_worst, self.checked = 0.0, 0, 0
        self.nan_s, self.t_nan = 0, 0
        settle = int(self.p["within_min"] * 60 * NS)
        exits = self.orbit.exits()
        entries = self.orbit.entries()
        # one window per eclipse exit, up to the next entry: sorted and disjoint (an exit
        # comes after the entry before it), so each sample looks at one window only
        self.windows = []
        for x in exits:
            k = bisect.bisect_right(entries, x)
            self.windows.append((x + settle, entries[k] if k < len(entries) else self.orbit.duration_ns + 1))
        self._w = 0  # the first window that has not ended yet

    def observe(self, s: Sample) -> None:
        w = self.windows
        while self._w < len(w) and w[self._w][1] <= s.t_ns:
            self._w += 1
        if self._w == len(w):
            return
        a, b = w[self._w]
        if a <= s.t_ns < b and s.illumination >= 0.999:
            self.checked += 1
            if s.sun_err_deg != s.sun_err_deg:
                self.nan_s += 1
                self.t_nan = self.t_nan or s.t_ns
            elif s.sun_err_deg > self.worst:
                self.worst, self.t_worst = s.sun_err_deg, s.t_ns

    def verdict(self, end_ns: int) -> Verdict:
        if not self.checked:
            return self._v(False, "no sunlit sample after an eclipse exit: requirement not exercised")
        if self.nan_s:
            return self._v(False, f"sun pointing error unknown (NaN) for {self.nan_s} of {self.checked} s "
                                  f"checked, first at {_s(self.t_nan)}", nan_s=self.nan_s, checked_s=self.checked)
        ok = self.worst <= self.p["within_deg"]
        return self._v(ok, f"worst sun pointing error {self.worst:.2f}° at {_s(self.t_worst)} "
                           f"over {self.checked} s checked ({'<=' if ok else '>'} {self.p['within_deg']}° "
                           f"from {self.p['within_min']} min after each eclipse exit)",
                       worst_deg=round(self.worst, 4), checked_s=self.checked)


class JobsPerOrbit(Judge):
    """Jobs the flight software completed (and verified) in each complete orbit >= ``min``."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.at_boundary: dict[int, int] = {}
        self.last_jobs = 0

    def observe(self, s: Sample) -> None:
        k = s.t_ns // self.orbit.period_ns
        self.at_boundary.setdefault(int(k), s.jobs_done)
        self.last_jobs = s.jobs_done

    def verdict(self, end_ns: int) -> Verdict:
        full = int(end_ns // self.orbit.period_ns)
        if full < 1:
            return self._v(False, "the run is shorter than one orbit: requirement not exercised")
        missing = [k + 1 for k in range(full) if k not in self.at_boundary]
        if missing:
            return self._v(False, f"no sample in orbit(s) {missing}: not judged")
        counts = []
        for k in range(full):
            a = self.at_boundary[k]
            b = self.at_boundary.get(k + 1, self.last_jobs)
            counts.append(b - a)
        ok = min(counts) >= self.p["min"]
        return self._v(ok, f"jobs per complete orbit {counts} ({'all >=' if ok else 'not all >='} "
                           f"{self.p['min']})", per_orbit=counts)


class YieldMin(Judge):
    """The run's work delivered over its bound (``summary.json``'s ``yield.ratio``,
    docs/yield.md) >= ``min``, judged once at the end of the run. A run whose bound
    could not be computed (no scipy, an infeasible problem, no work column) or is
    zero fails, saying why: the ratio is then unknown."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.run_yield: Mapping[str, Any] | None = None

    def add_yield(self, run_yield: Mapping[str, Any]) -> None:
        self.run_yield = run_yield

    def verdict(self, end_ns: int) -> Verdict:
        y, lim = self.run_yield, self.p["min"]
        if y is None:
            return self._v(False, "the run's yield was not computed (the run ended before its conclusion): "
                                  "not judged")
        if "error" in y:
            return self._v(False, f"no bound for this run: {y['error']}: not judged", error=str(y["error"]))
        ratio = y.get("ratio")
        if ratio is None:
            return self._v(False, f"the bound is zero (no work was possible), delivered {y.get('delivered', 0):.4g} "
                                  "FLOP: the ratio is undefined: not judged", bound=y.get("bound"))
        ok = ratio >= lim
        return self._v(ok, f"yield {ratio:.3f} ({y['delivered']:.4g} of a bound of {y['bound']:.4g} FLOP at "
                           f"{y.get('dt_s', 0):g} s steps; {'>=' if ok else '<'} {lim:.3f})",
                       ratio=round(float(ratio), 6), delivered=y["delivered"], bound=y["bound"])


class SeuDetected(Judge):
    """Every injected SEU is caught, and nothing else is flagged.

    With events reported, injections and detections are matched job by job: an
    injection (``fault``/``seu_injected``, detail ``"<board> job <remote id>"``)
    belongs to the flight software's job that runs there (the last ``job_started``
    with that board and remote id at or before the injection: the run records a
    frame's flight-software events after its fault actions, so the same second
    counts); each job must have as many ``seu_detected`` events as SEUs injected
    into it. Scheduled SEUs that never reached a board, an injection into no known
    job, and a detection of a job no SEU touched (a false alarm) all fail. Without
    events only the counts are compared."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.scheduled = 0
        self._faults_added(self.faults)
        self.detected = 0
        self.events_reported = False
        self.starts: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (board, remote id) -> [(t, job)]
        self.injections: list[tuple[int, str, str, str]] = []  # (t, board, remote id, detail)
        self.caught: dict[int, int] = {}  # job -> SEUs the flight software reported on it

    def _faults_added(self, actions: Sequence[FaultAction]) -> None:
        self.scheduled += sum(int(f.param("count", 1)) for f in actions if f.kind == "seu" and f.phase == "start")

    def observe(self, s: Sample) -> None:
        self.detected = s.seu_detected
        if s.events is None:
            return
        self.events_reported = True
        for t, src, name, detail in s.events:
            if src == "fsw" and name in ("job_started", "seu_detected"):
                fields = _fields(detail)
                job = fields.get("job")
                if not isinstance(job, int):
                    continue
                if name == "job_started":
                    key = (str(fields.get("board")), str(fields.get("remote_id")))
                    self.starts.setdefault(key, []).append((t, job))
                else:
                    self.caught[job] = self.caught.get(job, 0) + 1
            elif src == "fault" and name == "seu_injected":
                board, _, rid = detail.partition(" job ")
                self.injections.append((t, board, rid.strip(), detail))

    def verdict(self, end_ns: int) -> Verdict:
        if not self.scheduled:
            return self._v(False, "no seu fault was injected: requirement not exercised")
        if not self.events_reported:
            ok = self.detected >= self.scheduled
            return self._v(ok, f"{self.detected} corrupted result(s) caught of {self.scheduled} scheduled "
                               "(counts only: the run reported no events)",
                           injected=self.scheduled, detected=self.detected)
        injected: dict[int, int] = {}  # job -> SEUs injected into it
        unmatched = []
        for t, board, rid, detail in self.injections:
            jobs = [job for ts, job in self.starts.get((board, rid), []) if ts <= t]
            if jobs:
                injected[jobs[-1]] = injected.get(jobs[-1], 0) + 1
            else:
                unmatched.append(f"{detail} at {_s(t)}")
        delivered = len(self.injections)
        measured = {"scheduled": self.scheduled, "injected": delivered, "detected": self.detected,
                    "by_job": {str(j): [n, self.caught.get(j, 0)] for j, n in sorted(injected.items())}}
        if unmatched:
            return self._v(False, f"SEU injected into no job the flight software ran: {unmatched[0]}", **measured)
        if delivered < self.scheduled:
            return self._v(False, f"only {delivered} of {self.scheduled} scheduled SEU(s) reached a board: "
                                  "requirement not exercised", **measured)
        missed = {j: n - self.caught.get(j, 0) for j, n in injected.items() if self.caught.get(j, 0) < n}
        false = {j: c - injected.get(j, 0) for j, c in self.caught.items() if c > injected.get(j, 0)}
        caught = delivered - sum(missed.values())
        detail = f"{caught} of {delivered} injected SEU(s) caught, matched by job"
        if missed:
            detail += f"; missed in job(s) {sorted(missed)}"
        if false:
            detail += f"; {sum(false.values())} false alarm(s) in job(s) {sorted(false)}"
        return self._v(not missed and not false, detail, **measured)


def _fields(detail: str) -> dict[str, Any]:
    """A flight-software event's fields from its archived detail (JSON); {} if not JSON."""
    try:
        out = json.loads(detail)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


class _Window(Judge):
    """A time window: from ``after`` (a trigger), from the start of fault
    ``after_fault`` (its index in the file, as in ``fault[0]``), or from t = 0; for
    ``within`` (a duration) or to the end of the run. ``self.t0`` is None when the
    window never opens in this run (``self.why`` says why)."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.t0: int | None = 0
        self.start = "the start of the run"
        self.why = ""
        if "after_fault" in self.p:
            i = int(self.p["after_fault"])
            starts = [f for f in self.faults if f.fault_index == i and f.phase == "start"]
            if starts:
                self.t0 = starts[0].t_ns
                self.start = f"fault[{i}] {starts[0].kind} ({_s(self.t0)})"
            else:
                self.t0, self.why = None, f"fault[{i}] is not in this run"
        elif "after" in self.p:
            from hil_rig.faults import FaultScheduleError, resolve_trigger

            trig = self.p["after"]
            try:
                self.t0 = resolve_trigger(trig, self.orbit, where=f"requirement {self.spec.name!r} after")
                self.start = f"{_trigger_text(trig)} ({_s(self.t0)})"
            except FaultScheduleError as exc:
                self.t0, self.why = None, str(exc)
        within = self.p.get("within")
        self.span_ns = None if within is None else within.to_ns(self.orbit.period_ns / NS)
        self.t1 = None if self.t0 is None or self.span_ns is None else self.t0 + self.span_ns

    def _failed_for_good(self, t_ns: int) -> bool:
        # the window never opens in this run, or it has closed
        return self.t0 is None or (self.t1 is not None and t_ns > self.t1)

    def in_window(self, t_ns: int) -> bool:
        return self.t0 is not None and self.t0 <= t_ns and (self.t1 is None or t_ns <= self.t1)

    def window_text(self) -> str:
        if self.span_ns is None:
            return f"from {self.start} to the end of the run"
        return f"within {self.span_ns / NS:.0f} s of {self.start}"


def _trigger_text(trig: Any) -> str:
    if trig.event == "t":
        return f"t = {trig.offset_ns / NS:g} s"
    text = trig.event if trig.index == 1 and trig.event != "orbit" else f"{trig.event} {trig.index}"
    if trig.offset_ns:
        text += f" {'+' if trig.offset_ns > 0 else '-'} {abs(trig.offset_ns) / NS:g} s"
    return text


class ModeReached(_Window):
    """The flight software is in ``mode`` at some sample within the window."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.reported = False
        self.t_reached: int | None = None
        self.last_mode = ""

    def observe(self, s: Sample) -> None:
        if not s.mode:
            return
        self.reported = True
        if self.t0 is not None and s.t_ns >= self.t0 and self.t_reached is None:
            self.last_mode = s.mode
            if s.mode == self.p["mode"]:
                self.t_reached = s.t_ns

    def verdict(self, end_ns: int) -> Verdict:
        mode = self.p["mode"]
        if self.t0 is None:
            return self._v(False, f"{self.why}: requirement not exercised")
        if not self.reported:
            return self._v(False, "the run reported no flight-software mode: not judged")
        if self.t_reached is None:
            return self._v(False, f"{mode} never reached {self.window_text()} (run ended at {_s(end_ns)}, "
                                  f"mode {self.last_mode or 'unknown'})", last_mode=self.last_mode)
        delay = (self.t_reached - self.t0) / NS
        ok = self.in_window(self.t_reached)
        return self._v(ok, f"{mode} reached at {_s(self.t_reached)}, {delay:.0f} s after {self.start}"
                           + ("" if self.span_ns is None else
                              f" ({'<=' if ok else '>'} {self.span_ns / NS:.0f} s)"),
                       at_s=self.t_reached / NS, after_s=delay)


class _EventJudge(_Window):
    """The events named ``event`` (from ``source``, if given) within the window."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.reported = False
        self.hits: list[Event] = []
        self.last_t = 0

    def observe(self, s: Sample) -> None:
        self.last_t = s.t_ns
        if s.events is None:
            return
        self.reported = True
        name, src = self.p["event"], self.p.get("source")
        for ev in s.events:
            if ev[2] == name and (src is None or ev[1] == src) and self.in_window(ev[0]):
                self.hits.append(ev)

    def what(self) -> str:
        src = self.p.get("source")
        return f"{src + ' ' if src else ''}event {self.p['event']!r}"

    def unjudged(self) -> Verdict | None:
        if self.t0 is None:
            return self._v(False, f"{self.why}: requirement not exercised")
        if not self.reported:
            return self._v(False, "the run reported no events: not judged")
        return None

    @staticmethod
    def first(ev: Event) -> str:
        return f"first at {_s(ev[0])} ({ev[1]}: {ev[3][:120]})"


class EventSeen(_EventJudge):
    def verdict(self, end_ns: int) -> Verdict:
        bad = self.unjudged()
        if bad is not None:
            return bad
        if not self.hits:
            return self._v(False, f"{self.what()} never seen {self.window_text()} (run ended at {_s(end_ns)})",
                           count=0)
        return self._v(True, f"{self.what()} seen {len(self.hits)} time(s) {self.window_text()}, "
                             f"{self.first(self.hits[0])}", count=len(self.hits), first_s=self.hits[0][0] / NS)


class EventNeverSeen(_EventJudge):
    def _failed_for_good(self, t_ns: int) -> bool:
        return bool(self.hits) or super()._failed_for_good(t_ns)

    def verdict(self, end_ns: int) -> Verdict:
        bad = self.unjudged()
        if bad is not None:
            return bad
        if self.hits:
            return self._v(False, f"{self.what()} seen {len(self.hits)} time(s) {self.window_text()}, "
                                  f"{self.first(self.hits[0])}", count=len(self.hits), first_s=self.hits[0][0] / NS)
        if self.t1 is not None and self.t1 > end_ns:
            return self._v(False, f"the window ({self.window_text()}) ends at {_s(self.t1)}, after the run "
                                  f"(ended at {_s(end_ns)}): not judged", count=0)
        return self._v(True, f"{self.what()} not seen {self.window_text()}", count=0)


JUDGES: dict[str, type[Judge]] = {
    "soc_floor": SocFloor,
    "payload_temp_max": PayloadTempMax,
    "hang_recovered": HangRecovered,
    "sun_pointing": SunPointing,
    "jobs_per_orbit": JobsPerOrbit,
    "yield_min": YieldMin,
    "seu_detected": SeuDetected,
    "mode_reached": ModeReached,
    "event_seen": EventSeen,
    "event_never_seen": EventNeverSeen,
}


def make_judges(specs: Sequence[RequirementSpec], orbit: OrbitEvents,
                faults: Sequence[FaultAction]) -> list[Judge]:
    return [JUDGES[s.kind](s, orbit, faults) for s in specs]


def write_summary(path: pathlib.Path, verdicts: Sequence[Verdict], **fields: Any) -> dict[str, Any]:
    """``summary.json``: ``passed``, ``sim_seconds``, ``wall_seconds``, ``requirements``..."""
    doc = {"passed": all(v.passed for v in verdicts) and not fields.get("aborted"), **fields,
           "requirements": [v.as_dict() for v in verdicts]}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return doc


def write_junit(path: pathlib.Path, suite: str, verdicts: Sequence[Verdict], sim_seconds: float,
                properties: Mapping[str, str] | None = None, error: str | None = None) -> None:
    """``junit.xml``: one testcase per requirement, failures carry the verdict detail."""
    failures = sum(not v.passed for v in verdicts)
    ts = ET.Element("testsuite", name=suite, tests=str(len(verdicts) + (1 if error else 0)),
                    failures=str(failures), errors=str(1 if error else 0), time=f"{sim_seconds:.3f}")
    props = ET.SubElement(ts, "properties")
    for k, v in (properties or {}).items():
        ET.SubElement(props, "property", name=k, value=str(v))
    for v in verdicts:
        tc = ET.SubElement(ts, "testcase", classname=f"scenario.{suite}", name=v.name)
        if v.passed:
            ET.SubElement(tc, "system-out").text = v.detail
        else:
            ET.SubElement(tc, "failure", message=v.detail, type=v.kind).text = v.detail
    if error:
        tc = ET.SubElement(ts, "testcase", classname=f"scenario.{suite}", name="run")
        ET.SubElement(tc, "error", message=error).text = error
    ET.ElementTree(ts).write(path, encoding="utf-8", xml_declaration=True)
