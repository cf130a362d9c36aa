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

import dataclasses
import json
import math
import pathlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from hil_rig.faults import FaultAction, OrbitEvents
from hil_rig.scenario import RequirementSpec

NS = 1_000_000_000
HEALTHY_STATES = frozenset({"idle", "running", "suspended", "ready", "ok", "busy", "throttled"})


@dataclasses.dataclass
class Sample:
    """What the judges see once per simulated second."""

    t_ns: int
    soc: float
    illumination: float
    sun_err_deg: float
    payload_temp_c: Mapping[str, float]
    board_state: Mapping[str, str]
    jobs_done: int
    seu_detected: int = 0

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

    def observe(self, s: Sample) -> None:  # pragma: no cover - overridden
        pass

    def verdict(self, end_ns: int) -> Verdict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _v(self, passed: bool, detail: str, **measured: Any) -> Verdict:
        return Verdict(self.spec.name, self.spec.kind, bool(passed), detail, measured)


class SocFloor(Judge):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.min_soc, self.t_min = math.inf, 0

    def observe(self, s: Sample) -> None:
        if s.soc < self.min_soc:
            self.min_soc, self.t_min = s.soc, s.t_ns

    def verdict(self, end_ns: int) -> Verdict:
        if not math.isfinite(self.min_soc):
            return self._v(False, "no SOC sample was seen")
        ok = self.min_soc >= self.p["min"]
        return self._v(ok, f"lowest SOC {self.min_soc:.3f} at t = {self.t_min / NS:.0f} s "
                           f"({'>=' if ok else '<'} floor {self.p['min']:.3f})",
                       min_soc=round(self.min_soc, 6), at_s=self.t_min / NS)


class PayloadTempMax(Judge):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.max_c, self.board, self.t_max = -math.inf, "", 0

    def observe(self, s: Sample) -> None:
        for b, c in s.payload_temp_c.items():
            if c > self.max_c:
                self.max_c, self.board, self.t_max = c, b, s.t_ns

    def verdict(self, end_ns: int) -> Verdict:
        if not math.isfinite(self.max_c):
            return self._v(False, "no payload temperature sample was seen")
        ok = self.max_c <= self.p["max_c"]
        return self._v(ok, f"hottest payload {self.max_c:.1f} °C ({self.board}) at t = "
                           f"{self.t_max / NS:.0f} s ({'<=' if ok else '>'} limit {self.p['max_c']:.1f} °C)",
                       max_c=round(self.max_c, 3), board=self.board, at_s=self.t_max / NS)


class HangRecovered(Judge):
    """Each injected hang: the board goes unhealthy, then healthy again within N s."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.hangs = [[f.t_ns, f.target, False, None] for f in self.faults
                      if f.kind == "payload_hang" and f.phase == "start"]

    def observe(self, s: Sample) -> None:
        for h in self.hangs:
            t0, board, seen_down, t_rec = h
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
        for t0, board, seen_down, t_rec in self.hangs:
            if t_rec is None:
                why = "never went unhealthy (hang not detected)" if not seen_down else "never recovered"
                return self._v(False, f"hang of {board} at t = {t0 / NS:.0f} s: {why}")
            times.append((t_rec - t0) / NS)
        worst = max(times)
        ok = worst <= lim
        return self._v(ok, f"{len(times)} hang(s) recovered, slowest in {worst:.0f} s "
                           f"({'<=' if ok else '>'} {lim:.0f} s)", recovery_s=times)


class SunPointing(Judge):
    """From ``within_min`` after each eclipse exit until the next entry, the sun
    pointing error stays within ``within_deg``."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.worst, self.t_worst, self.checked = 0.0, 0, 0
        settle = int(self.p["within_min"] * 60 * NS)
        exits = self.orbit.exits()
        entries = self.orbit.entries()
        self.windows = []
        for x in exits:
            nxt = [e for e in entries if e > x]
            self.windows.append((x + settle, nxt[0] if nxt else self.orbit.duration_ns + 1))

    def observe(self, s: Sample) -> None:
        for a, b in self.windows:
            if a <= s.t_ns < b and s.illumination >= 0.999:
                self.checked += 1
                if s.sun_err_deg > self.worst or math.isnan(s.sun_err_deg):
                    self.worst, self.t_worst = s.sun_err_deg, s.t_ns
                break

    def verdict(self, end_ns: int) -> Verdict:
        if not self.checked:
            return self._v(False, "no sunlit sample after an eclipse exit: requirement not exercised")
        ok = self.worst <= self.p["within_deg"]
        return self._v(ok, f"worst sun pointing error {self.worst:.2f}° at t = {self.t_worst / NS:.0f} s "
                           f"over {self.checked} s checked ({'<=' if ok else '>'} {self.p['within_deg']}° "
                           f"from {self.p['within_min']} min after each eclipse exit)",
                       worst_deg=round(self.worst, 4), checked_s=self.checked)


class JobsPerOrbit(Judge):
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
        counts = []
        for k in range(full):
            a = self.at_boundary.get(k, 0)
            b = self.at_boundary.get(k + 1, self.last_jobs)
            counts.append(b - a)
        ok = min(counts) >= self.p["min"]
        return self._v(ok, f"jobs per complete orbit {counts} ({'all >=' if ok else 'not all >='} "
                           f"{self.p['min']})", per_orbit=counts)


class SeuDetected(Judge):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.injected = sum(int(f.param("count", 1)) for f in self.faults
                            if f.kind == "seu" and f.phase == "start")
        self.detected = 0

    def observe(self, s: Sample) -> None:
        self.detected = s.seu_detected

    def verdict(self, end_ns: int) -> Verdict:
        if not self.injected:
            return self._v(False, "no seu fault was injected: requirement not exercised")
        ok = self.detected >= self.injected
        return self._v(ok, f"{self.detected} corrupted result(s) caught of {self.injected} injected",
                       injected=self.injected, detected=self.detected)


JUDGES: dict[str, type[Judge]] = {
    "soc_floor": SocFloor,
    "payload_temp_max": PayloadTempMax,
    "hang_recovered": HangRecovered,
    "sun_pointing": SunPointing,
    "jobs_per_orbit": JobsPerOrbit,
    "seu_detected": SeuDetected,
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
