"""What a report reads from one run directory: the archive (``load_run``),
``summary.json`` and, in real time, ``lateness.json``; and what it derives from
them (eclipses, faults, mode segments, where each failed requirement failed)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any

import numpy as np

from hil_rig.archive import ArchiveError, load_run
from hil_rig.constants import NS_PER_S as NS

#: events drawn as flight-software markers on the plots (the rest are in the table only)
FSW_MARKED = frozenset({"mode_transition", "mode_refused", "payload_suspended", "payload_resumed",
                        "seu_detected", "watchdog_expired", "job_failed", "health_missed", "overrun"})
#: the rig's eclipse events: "eclipse 2: umbra entry 7481.250 s, exit 9536.468 s"; an entry
#: before the run's start or an exit after its end is "before start" (no time)
_ECLIPSE = re.compile(r"umbra entry (?:([-0-9.]+) s|[a-z ]+), exit (?:([-0-9.]+) s|[a-z ]+)")
_AT = re.compile(r"t = ([0-9.]+) s")


class ReportError(Exception):
    """A run directory the report cannot read (names the directory and what is missing)."""


@dataclasses.dataclass
class RunData:
    path: pathlib.Path
    run: Any  # hil_rig.archive.RunArchive
    summary: dict[str, Any]
    lateness: dict[str, Any] | None
    t_s: np.ndarray
    eclipses: list[tuple[float, float]]

    @property
    def meta(self) -> dict[str, str]:
        return self.run.meta

    @property
    def tm(self) -> np.ndarray:
        return self.run["telemetry"]

    @property
    def label(self) -> str:
        return f"{self.meta.get('scenario', '?')} seed {self.meta.get('seed', '?')} ({self.path.name})"

    @property
    def end_s(self) -> float:
        return float(self.t_s[-1]) if len(self.t_s) else 0.0

    @property
    def boards(self) -> list[str]:
        return list(dict.fromkeys(self.run["payload"]["board"].tolist()))

    def board_rows(self, board: str) -> np.ndarray:
        p = self.run["payload"]
        return p[p["board"] == board]

    def link_rows(self, board: str) -> np.ndarray:
        """A board link's retries and errors since the start, a row where they changed."""
        ls = self.run["link_stats"]
        return ls[ls["board"] == board] if len(ls) else ls

    def col(self, name: str) -> np.ndarray:
        tm = self.tm
        if tm.dtype.names is None or name not in tm.dtype.names:
            return np.full(len(self.t_s), np.nan)
        return tm[name].astype(float)

    def requirements(self) -> list[dict[str, Any]]:
        try:
            return json.loads(self.meta.get("requirements", "[]"))
        except json.JSONDecodeError:
            return []

    def requirement_param(self, kind: str, key: str) -> float | None:
        for r in self.requirements():
            if r.get("kind") == kind and key in r.get("params", {}):
                try:
                    return float(r["params"][key])
                except (TypeError, ValueError):
                    return None
        return None

    def verdicts(self) -> list[dict[str, Any]]:
        if self.summary.get("requirements"):
            return list(self.summary["requirements"])
        # no summary.json (a run killed with SIGKILL): the verdict events, if any
        out = []
        ev = self.run["events"]
        for d in ev["detail"][ev["kind"] == "verdict"].tolist():
            name, _, rest = d.partition(": ")
            status, _, detail = rest.partition(": ")
            out.append({"name": name, "kind": "", "passed": status == "PASS", "detail": detail, "measured": {}})
        return out

    def events(self) -> np.ndarray:
        return self.run["events"]

    def faults(self) -> list[tuple[float, str]]:
        ev = self.events()
        sel = ev[ev["source"] == "fault"]
        return [(t / NS, f"{k}: {d}") for t, k, d in zip(sel["t_ns"].tolist(), sel["kind"].tolist(),
                                                         sel["detail"].tolist(), strict=True)]

    def fsw_marks(self) -> list[tuple[float, str]]:
        ev = self.events()
        out = []
        for t, s, k, d in zip(ev["t_ns"].tolist(), ev["source"].tolist(), ev["kind"].tolist(),
                              ev["detail"].tolist(), strict=True):
            if s == "fsw" and (k in FSW_MARKED or k.startswith("fdir")):
                out.append((t / NS, f"{k} {_short(d)}"))
            elif s == "control":
                out.append((t / NS, f"{k} {d}"))
        return out

    def segments(self, channel: str) -> list[tuple[float, float, str]]:
        """Runs of equal values of an enumerated channel, by name (the ``enums`` table)."""
        names = self.run.enum_names(channel)
        v = self.col(channel)
        t = self.t_s
        out: list[tuple[float, float, str]] = []
        if not len(v):
            return out
        cut = np.flatnonzero(np.r_[True, (v[1:] != v[:-1]) & ~(np.isnan(v[1:]) & np.isnan(v[:-1]))])
        for i, s in enumerate(cut):
            e = cut[i + 1] if i + 1 < len(cut) else len(v) - 1
            code = v[s]
            name = "?" if code != code else names.get(int(code), str(int(code)))
            out.append((float(t[s]), float(t[e]) if e > s else float(t[s]) + 1.0, name))
        return out

    def failure_time(self, verdict: dict[str, Any]) -> float | None:
        """Where a failed requirement failed (s), from its measured figures or its detail."""
        m = verdict.get("measured") or {}
        for key in ("at_s", "t_s", "first_s"):
            if isinstance(m.get(key), int | float):
                return float(m[key])
        hit = _AT.search(verdict.get("detail", ""))
        return float(hit.group(1)) if hit else None


def _short(detail: str) -> str:
    try:
        d = json.loads(detail)
    except (json.JSONDecodeError, TypeError):
        return detail
    if isinstance(d, dict):
        if "frm" in d and "to" in d:
            return f"{d['frm']} -> {d['to']} ({d.get('cause', '')})"
        return ", ".join(f"{k}={v}" for k, v in d.items())
    return detail


def load(run_dir: str | pathlib.Path) -> RunData:
    path = pathlib.Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: not a run directory")
    try:
        run = load_run(path)
    except ArchiveError as exc:
        raise ReportError(str(exc)) from None
    summary: dict[str, Any] = {}
    sp = path / "summary.json"
    if sp.exists():
        try:
            summary = json.loads(sp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReportError(f"{sp}: not readable JSON: {exc}") from None
    lateness = None
    lp = path / "lateness.json"
    if lp.exists():
        try:
            lateness = json.loads(lp.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            lateness = None
    tm = run["telemetry"]
    t_s = tm["t_ns"].astype(float) / NS if len(tm) else np.zeros(0)
    end = float(t_s[-1]) if len(t_s) else 0.0
    eclipses = []
    ev = run["events"]
    for d in ev["detail"][ev["kind"] == "eclipse_predicted_truth"].tolist():
        m = _ECLIPSE.search(d)
        if m:
            a = float(m.group(1)) if m.group(1) else 0.0
            b = float(m.group(2)) if m.group(2) else end
            if a < end:
                eclipses.append((a, min(b, end)))
    return RunData(path, run, summary, lateness, t_s, eclipses)
