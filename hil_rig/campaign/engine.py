"""The campaign: a list of Dask futures and a loop over ``as_completed``.

1. The schedules come from :func:`hil_rig.campaign.schedules.generate` (the same list for
   the same campaign file).
2. Each is submitted as a :func:`hil_rig.campaign.worker.run_one` task; results are
   appended to ``results.jsonl`` (flushed and fsynced) as they arrive, so an interrupted
   campaign loses nothing and ``--resume`` skips what is there. A worker that dies has its
   task rescheduled by the Dask scheduler; a task whose workers kept dying is recorded as
   an error. No record is written twice.
3. Each failure is run once more (a ``confirm`` future added to the same ``as_completed``):
   confirmed when it fails the same requirements with the same archive digest; otherwise it
   is a flake (a determinism bug) and is reported, never shrunk. A timeout is a failure of
   its own kind (:func:`signature`): confirmed when it times out again, shrunk to the
   smallest schedule that still times out.
4. Each distinct confirmed failure (the set of failed requirements, or the timeout) is shrunk by
   hypothesis, in its own thread; each shrink step is a run on the cluster. The minimal
   schedule's scenario is written to ``minimal/`` exactly as it ran, and run once more
   (``replay``) to check that it gives the same verdicts and archive digest.
5. ``summary.json``, ``summary.txt`` and ``report.html`` (:mod:`hil_rig.campaign.report`).

Shrinking drives hypothesis through its public API: a ``@given`` test over the same
strategy, settings and ``@seed`` as generation, with the shrink phase on. Its generate
phase draws the campaign's own examples again, in the same order, and answers them from
the results already stored (no run), until the first whose run failed the same way; the
test raises there, and hypothesis's shrinker takes over. Every answer comes from a stored
result, so hypothesis sees a deterministic test and cannot spin on a flake; a shrink has
a budget of new runs (``shrink_runs``), past which new candidates count as passing.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any, TextIO

from hypothesis import Phase, given, seed

from hil_rig.campaign.schedules import (
    Schedule,
    generate,
    hypothesis_settings,
    schedule_key,
    schedules,
)
from hil_rig.campaign.spec import CampaignError, CampaignSpec
from hil_rig.campaign.worker import run_one

FORMAT = 1


#: the statuses that are confirmed and shrunk, each a failure of its own kind: a requirement
#: failed, or the run passed its wall-clock budget
SHRUNK = ("fail", "timeout")


def signature(rec: dict[str, Any]) -> tuple[str, ...]:
    """What makes two runs fail "the same way": ``("fail", *failed requirements)``, or
    ``("timeout",)`` for any run past its budget (whatever it judged before it was
    stopped); ``(status,)`` otherwise."""
    if rec["status"] == "fail":
        return ("fail", *rec["failed"])
    return (rec["status"],)


def describe(sig: tuple[str, ...]) -> str:
    return "the timeout" if sig[0] == "timeout" else f"the failure of {', '.join(sig[1:])}"


class _Reproduced(Exception):
    def __init__(self, schedule: Schedule) -> None:
        super().__init__("the failure reproduces")
        self.schedule = schedule


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80] or "failure"


class Campaign:
    """One campaign on one Dask client (``distributed.Client``)."""

    def __init__(self, spec: CampaignSpec, out: str | os.PathLike[str], client: Any, *,
                 resume: bool = False, log: TextIO | None = None) -> None:
        self.spec = spec
        self.out = pathlib.Path(out).resolve()
        self.client = client
        self.resume = resume
        self.log = log if log is not None else sys.stderr
        self.results_path = self.out / "results.jsonl"
        self.runs_dir = self.out / "runs"
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        #: schedule key -> the first result of a run of that schedule (example or shrink)
        self.by_key: dict[str, dict[str, Any]] = {}
        self.sim_s = 0.0

    # ---- storage ------------------------------------------------------------------
    def _load(self, plan: list[dict[str, Any]]) -> None:
        plan_path = self.out / "schedules.json"
        if self.results_path.exists() or plan_path.exists():
            if not self.resume:
                raise CampaignError(f"--out {self.out}: holds a campaign already; give --resume to go on "
                                    f"with it, or another --out")
            try:
                old = json.loads(plan_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CampaignError(f"--out {self.out}: schedules.json unreadable ({exc}); cannot resume") from None
            if old.get("schedules") != plan:
                raise CampaignError(f"--resume: {self.spec.file} does not give the schedules of the campaign in "
                                    f"{self.out} (the file changed); give another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs_dir.mkdir(exist_ok=True)
        if not plan_path.exists():
            tmp = plan_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"format": FORMAT, "campaign": self.spec.name, "file": self.spec.file,
                                       "seed": self.spec.seed, "space": self.spec.space_doc(),
                                       "schedules": plan}), encoding="utf-8")
            os.replace(tmp, plan_path)
        if self.results_path.exists():
            # a line torn by a kill mid-write is cut off: that run is done again
            with open(self.results_path, "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
            with open(self.results_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    self._remember(rec)

    def _remember(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        if rec["phase"] in ("example", "shrink"):
            self.by_key.setdefault(rec["key"], rec)  # any status: a shrink asks only "fails the same way?"

    def _store(self, rec: dict[str, Any]) -> None:
        with self._lock:
            with open(self.results_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._remember(rec)

    def _done(self, phase: str) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.records if r["phase"] == phase}

    # ---- runs ---------------------------------------------------------------------
    def _submit(self, text: str, name: str) -> Any:
        return self.client.submit(run_one, text, name, str(self.runs_dir),
                                  self.spec.timeout_for(self.sim_s), pure=False)

    def _result(self, fut: Any, meta: dict[str, Any]) -> dict[str, Any]:
        try:
            rec = fut.result()
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: recorded, never lost
            rec = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "failed": [], "verdicts": [],
                   "digest": None}
        return {**meta, **rec}

    def _say(self, text: str) -> None:
        print(f"hil campaign: {text}", file=self.log, flush=True)

    # ---- the campaign -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from distributed import as_completed

        t_start = time.monotonic()
        from hil_rig.run import build_orbit
        from hil_rig.scenario import parse_scenario

        probe = parse_scenario(self.spec.scenario_text([], "probe"), file=self.spec.file)
        self.sim_s = probe.duration.to_ns(build_orbit(probe).period_s) / 1e9
        plan = generate(self.spec)
        self._load(plan)
        texts = {i: self.spec.scenario_text(s, f"{self.spec.name}-{i:05d}") for i, s in enumerate(plan)}
        done = self._done("example")
        confirmed = self._done("confirm")
        link = getattr(self.client, "dashboard_link", None)
        self._say(f"{len(plan)} schedules ({len(done)} done before), {self.spec.duration} each, "
                  f"budget {self.spec.timeout_for(self.sim_s):.0f} s wall per run; scheduler "
                  f"{self.client.scheduler.address}" + (f"; dashboard {link}" if link else ""))
        meta: dict[Any, dict[str, Any]] = {}
        for i, s in enumerate(plan):
            if i not in done:
                fut = self._submit(texts[i], f"{self.spec.name}-{i:05d}")
                meta[fut] = {"phase": "example", "id": i, "key": schedule_key(s), "schedule": s}
        for i, rec in done.items():  # failures whose confirmation was lost with the interruption
            if rec["status"] in SHRUNK and i not in confirmed:
                fut = self._submit(texts[i], f"{self.spec.name}-{i:05d}")
                meta[fut] = {"phase": "confirm", "id": i, "key": rec["key"], "schedule": rec["schedule"]}
        counts = Counter(r["status"] for r in done.values())
        n = len(done)
        ac = as_completed(list(meta))
        for fut in ac:
            m = meta.pop(fut)
            rec = self._result(fut, m)
            self._store(rec)
            fut.release()
            if m["phase"] == "example":
                n += 1
                counts[rec["status"]] += 1
                self._say(f"[{n}/{len(plan)}] {rec.get('name', m['id'])} {rec['status'].upper()}"
                          + (f" ({', '.join(rec['failed'])})" if rec["failed"] else "")
                          + (f": {rec['error']}" if rec.get("error") else "")
                          + f"  {rec.get('wall_s', 0):.1f} s;  pass {counts['pass']} fail {counts['fail']} "
                          f"timeout {counts['timeout']} error {counts['error']}")
                if rec["status"] in SHRUNK:
                    cf = self._submit(texts[m["id"]], f"{self.spec.name}-{m['id']:05d}")
                    meta[cf] = {**m, "phase": "confirm"}
                    ac.add(cf)
        groups = self._failure_groups()
        minimal = self._shrink_all(groups)
        summary = self._summary(plan, groups, minimal, time.monotonic() - t_start)
        self._write_summary(summary)
        self._write_report()
        return summary

    # ---- failures -----------------------------------------------------------------------
    def _failure_groups(self) -> dict[tuple[str, ...], dict[str, Any]]:
        """Confirmed failures and flakes, by :func:`signature`: the set of failed
        requirements, or ``("timeout",)`` for every run past its budget."""
        ex = self._done("example")
        conf = self._done("confirm")
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        for i in sorted(ex):
            rec = ex[i]
            if rec["status"] not in SHRUNK:
                continue
            sig = signature(rec)
            g = groups.setdefault(sig, {"status": rec["status"], "failed": list(sig[1:]), "examples": [],
                                        "confirmed": [], "flakes": []})
            g["examples"].append(i)
            c = conf.get(i)
            if c is None:
                continue
            if signature(c) == sig and c["digest"] == rec["digest"]:
                g["confirmed"].append(i)
            else:
                g["flakes"].append({"id": i, "first": [rec["status"], rec["failed"], rec["digest"]],
                                    "again": [c["status"], c["failed"], c["digest"]]})
        return groups

    def _evaluate(self, schedule: Schedule, budget: dict[str, int]) -> dict[str, Any] | None:
        key = schedule_key(schedule)
        with self._lock:
            rec = self.by_key.get(key)
        if rec is not None:
            return rec
        if budget["left"] <= 0:
            return None
        budget["left"] -= 1
        budget["runs"] += 1
        name = f"{self.spec.name}-k{key}"
        text = self.spec.scenario_text(schedule, name)
        fut = self._submit(text, name)
        rec = self._result(fut, {"phase": "shrink", "id": key, "key": key, "schedule": schedule})
        self._store(rec)
        return rec

    def shrink(self, sig: tuple[str, ...]) -> tuple[Schedule | None, int]:
        """The smallest schedule hypothesis finds whose run ends with :func:`signature`
        ``sig`` (fails exactly those requirements, or times out); the number of new runs
        that took."""
        budget = {"left": self.spec.shrink_runs, "runs": 0}

        @hypothesis_settings(self.spec, [Phase.generate, Phase.shrink])
        @seed(self.spec.seed)
        @given(schedules(self.spec))
        def fails_the_same_way(schedule: Schedule) -> None:
            rec = self._evaluate(schedule, budget)
            if rec is not None and signature(rec) == sig:
                raise _Reproduced(schedule)

        try:
            fails_the_same_way()
        except _Reproduced as exc:
            return exc.schedule, budget["runs"]
        return None, budget["runs"]

    def _shrink_one(self, sig: tuple[str, ...], group: dict[str, Any]) -> dict[str, Any]:
        self._say(f"shrinking {describe(sig)} ({len(group['confirmed'])} confirmed example(s))")
        found, runs = self.shrink(sig)
        ex = self._done("example")
        if found is None:  # hypothesis did not meet it again: report the first confirmed example as it is
            found = ex[group["confirmed"][0]]["schedule"]
        key = schedule_key(found)
        rec = self.by_key.get(key) or ex[group["confirmed"][0]]
        text = pathlib.Path(rec["scenario_file"]).read_text(encoding="utf-8") if rec.get("scenario_file") and \
            pathlib.Path(rec["scenario_file"]).exists() else self.spec.scenario_text(found, rec.get("name", key))
        mdir = self.out / "minimal"
        mdir.mkdir(exist_ok=True)
        # the file's name as it ran: the archive records it (meta scenario_file)
        path = mdir / f"{rec.get('name') or _slug('-'.join(sig))}.toml"
        path.write_text(text, encoding="utf-8")
        replay = self._result(self._submit(text, rec.get("name", key)),
                              {"phase": "replay", "id": str(path.name), "key": key, "schedule": found})
        self._store(replay)
        if sig[0] == "timeout":  # no archive digest: the run was killed
            same = replay["status"] == "timeout"
        else:
            same = (replay["status"] == rec["status"] and replay["failed"] == rec["failed"]
                    and replay["digest"] == rec["digest"] and rec["digest"] is not None)
        self._say(f"minimal: {path} ({len(found)} fault(s), {runs} shrink run(s)); replay "
                  + ("identical" if same else "DIFFERS"))
        return {"status": sig[0], "failed": list(sig[1:]), "file": str(path), "faults": found, "shrink_runs": runs,
                "verdicts": [v for v in rec["verdicts"] if not v["passed"]], "run_dir": rec.get("run_dir"),
                "digest": rec["digest"], "replay_run_dir": replay.get("run_dir"), "replay_identical": same}

    def _shrink_all(self, groups: dict[tuple[str, ...], dict[str, Any]]) -> list[dict[str, Any]]:
        todo = [(sig, g) for sig, g in groups.items() if g["confirmed"]]
        if not todo:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="shrink") as pool:
            return list(pool.map(lambda sg: self._shrink_one(*sg), todo))

    # ---- summary ----------------------------------------------------------------------
    def _summary(self, plan: list[Schedule], groups: dict[tuple[str, ...], dict[str, Any]],
                 minimal: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
        ex = self._done("example")
        counts = Counter(r["status"] for r in ex.values())
        phases = Counter(r["phase"] for r in self.records)
        # coverage: fault kind x trigger event, with how many schedules holding one failed
        cover: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: {"runs": 0, "failed": 0}))
        for rec in ex.values():
            for f in rec["schedule"]:
                event = f["at"].split()[0] if not f["at"].split()[0][0].isdigit() else "t"
                cell = cover[f["kind"]][event]
                cell["runs"] += 1
                cell["failed"] += rec["status"] == "fail"
        space_kinds = [s.kind for s in self.spec.space]
        return {
            "format": FORMAT, "campaign": self.spec.name, "file": self.spec.file, "seed": self.spec.seed,
            "base_scenario": str(self.spec.base_path), "duration": self.spec.duration,
            "schedules": len(plan), "results": dict(counts), "runs_by_phase": dict(phases),
            "wall_s": round(wall_s, 1),
            "failures": [{"status": g["status"], "failed": g["failed"], "examples": g["examples"], "confirmed": g["confirmed"],
                          "flakes": g["flakes"]} for g in groups.values()],
            "minimal": minimal,
            "timeouts": [{"id": r["id"], "run_dir": r.get("run_dir"), "error": r.get("error")}
                         for r in ex.values() if r["status"] == "timeout"],
            "errors": [{"id": r["id"], "error": r.get("error")} for r in ex.values() if r["status"] == "error"],
            "coverage": {k: dict(cover[k]) for k in space_kinds},
            "kinds_never_drawn": [k for k in space_kinds if k not in cover],
        }

    def _write_report(self) -> None:
        from hil_rig.campaign.report import write_campaign_report

        self._say(f"report: {write_campaign_report(self.out)}")

    def _write_summary(self, s: dict[str, Any]) -> None:
        (self.out / "summary.json").write_text(json.dumps(s, indent=2) + "\n", encoding="utf-8")
        (self.out / "summary.txt").write_text(summary_text(s), encoding="utf-8")


def summary_text(s: dict[str, Any]) -> str:
    r = s["results"]
    lines = [f"campaign {s['campaign']} ({s['file']}, seed {s['seed']}): {s['schedules']} schedules on "
             f"{pathlib.Path(s['base_scenario']).name}, {s['duration']} each, {s['wall_s']} s",
             f"  pass {r.get('pass', 0)}  fail {r.get('fail', 0)}  timeout {r.get('timeout', 0)}  "
             f"error {r.get('error', 0)}   runs: " + ", ".join(f"{k} {v}" for k, v in s["runs_by_phase"].items())]
    for f in s["failures"]:
        what = "TIMEOUT" if f.get("status") == "timeout" else f"FAILURE {', '.join(f['failed'])}"
        lines.append(f"{what}: {len(f['examples'])} example(s), "
                     f"{len(f['confirmed'])} confirmed, {len(f['flakes'])} flake(s)")
        for fl in f["flakes"]:
            lines.append(f"  FLAKE example {fl['id']}: first {fl['first'][0]} {fl['first'][1]}, "
                         f"again {fl['again'][0]} {fl['again'][1]} (a determinism bug; not shrunk)")
    for m in s["minimal"]:
        lines.append(f"MINIMAL{' TIMEOUT' if m.get('status') == 'timeout' else ''} {m['file']}: {len(m['faults'])} fault(s) after {m['shrink_runs']} shrink run(s); "
                     f"replay {'identical' if m['replay_identical'] else 'DIFFERS'}")
        for f in m["faults"]:
            lines.append("  fault " + ", ".join(f"{k} = {v}" for k, v in f.items()))
        for v in m["verdicts"]:
            lines.append(f"  FAIL {v['name']}: {v['detail']}")
    for t in s["timeouts"]:
        lines.append(f"TIMEOUT example {t['id']}: {t['error']} ({t['run_dir']})")
    for e in s["errors"]:
        lines.append(f"ERROR example {e['id']}: {e['error']}")
    lines.append("coverage (fault kind x trigger event: runs / failed):")
    for kind, cells in s["coverage"].items():
        lines.append(f"  {kind:16s} " + "  ".join(f"{ev} {c['runs']}/{c['failed']}" for ev, c in cells.items()))
    if s["kinds_never_drawn"]:
        lines.append("  never drawn: " + ", ".join(s["kinds_never_drawn"]))
    return "\n".join(lines) + "\n"
