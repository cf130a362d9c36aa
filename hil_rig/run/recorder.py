"""What a run leaves behind and shows while it runs: the telemetry archive, the
event log, the requirement judges, the live status and the progress display.

Once per simulated second :meth:`Recorder.second` writes one telemetry row (rig
truth, the work delivered, then the flight software's housekeeping), one payload
row per board and the new flight-software events, commits, feeds every judge one
:class:`hil_rig.requirements.Sample`, and refreshes the status.

**Work delivered** (docs/yield.md) is counted in FLOP from what the flight
software knows: each board's job reports (the time-sync reply's job states, kept
by the payload manager) give the step each run has reached; a run's work is its
highest step reported times ``step_flops`` of the params the board runs (the
scenario's params completed with their defaults, size params capped for an
emulated board as its agent caps them). A step computed twice (a run resumed from
an older checkpoint) counts once; a run's partial progress counts.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from hil_rig.archive import ARCHIVE_NAME, Archive, Column
from hil_rig.constants import NS_PER_S as NS
from hil_rig.constants import ZERO_CELSIUS_K
from hil_rig.requirements import Sample

if TYPE_CHECKING:
    from hil_rig.run.builder import RunParts
    from hil_rig.run.progress import Progress

#: Telemetry columns: rig truth first, then the flight software's housekeeping.
TRUTH_CHANNELS: tuple[Column, ...] = (
    Column("orbit", "1", "orbit number (1 at t = 0, +1 every orbital period)", "INTEGER"),
    Column("illumination", "1", "sunlit fraction of the solar disc (rig truth, conical shadow)"),
    Column("beta_deg", "deg", "the orbit's beta angle: the Sun's elevation above the orbit plane (rig truth)"),
    Column("sun_err_deg", "deg", "angle between the main array normal and the sun (rig truth)"),
    Column("soc_true", "1", "battery state of charge (plant truth)"),
    Column("battery_v_true", "V", "battery terminal voltage (plant truth)"),
    Column("solar_power_w_true", "W", "array power (plant truth)"),
    Column("load_power_w_true", "W", "bus load incl. payloads (plant truth)"),
    Column("payload_power_w_meas", "W", "payload boards' draw measured by the bench supply"),
    Column("temp_payload_k_true", "K", "payload thermal node (plant truth)"),
    Column("temp_battery_k_true", "K", "battery thermal node (plant truth)"),
    Column("temp_radiator_k_true", "K", "radiator thermal node (plant truth)"),
    Column("temp_structure_k_true", "K", "structure thermal node (plant truth)"),
    Column("rate_norm_rad_s_true", "rad/s", "body rate magnitude (plant truth)"),
    Column("wheel_x_rad_s_true", "rad/s", "reaction wheel x speed (plant truth)"),
    Column("wheel_y_rad_s_true", "rad/s", "reaction wheel y speed (plant truth)"),
    Column("wheel_z_rad_s_true", "rad/s", "reaction wheel z speed (plant truth)"),
    Column("wheel_momentum_nms_true", "N m s", "magnitude of the wheels' angular momentum (plant truth)"),
    Column("momentum_nms_true", "N m s", "magnitude of the total angular momentum, body and wheels (plant truth)"),
    Column("q_bi_w_true", "1", "attitude quaternion inertial to body, scalar part (plant truth)"),
    Column("q_bi_x_true", "1", "attitude quaternion, x part (plant truth)"),
    Column("q_bi_y_true", "1", "attitude quaternion, y part (plant truth)"),
    Column("q_bi_z_true", "1", "attitude quaternion, z part (plant truth)"),
    Column("work_flop", "FLOP", "work delivered by all boards since t = 0 (job reports, docs/yield.md)"),
)

#: The names of the flight software's enumerated housekeeping (stored in the archive's
#: ``enums`` table): the flight mode, and the C core's EPS power mode (OHIL_EPS_MODE_*
#: in native/include/ohil_eps.h).
EPS_MODE_NAMES = ("NOMINAL", "LOW", "CRITICAL")


def _enum_names(hk_name: str) -> tuple[str, ...]:
    from flight_sw.dictionary import MODE_NAMES

    return {"mode": MODE_NAMES, "eps_mode": EPS_MODE_NAMES}.get(hk_name, ())


def work_channel(board: str) -> str:
    """The telemetry column of one board's work delivered (FLOP since t = 0)."""
    return "work_flop_" + re.sub(r"[^a-z0-9_]", "_", board.lower())


class WorkCounter:
    """Work delivered, per board, from the payload manager's job reports (see the
    module's doc): ``observe`` once a simulated second."""

    def __init__(self, boards: list[str]) -> None:
        self.by_board: dict[str, float] = dict.fromkeys(boards, 0.0)
        self._runs: dict[tuple[str, Any], list[float]] = {}  # (board, remote id) -> [highest step, FLOP/step]

    def started(self, board: str, remote_id: Any, resumed: bool, flop_per_step: float) -> None:
        """A ``job_started`` event: a fresh run counts from step 0; a resumed one keeps its count."""
        key = (board, remote_id)
        if not resumed or key not in self._runs:
            self._runs[key] = [0.0, flop_per_step]

    def observe(self, t_ns: int, payload: Any) -> None:
        for name, b in payload.boards.items():
            if b.report_ns != t_ns:
                continue
            for rid, rep in b.job_report.items():
                run = self._runs.get((name, rid))
                step = rep.get("step") if isinstance(rep, dict) else getattr(rep, "step", None)
                if run is None or step is None or step <= run[0]:
                    continue
                self.by_board[name] = self.by_board.get(name, 0.0) + (step - run[0]) * run[1]
                run[0] = float(step)

    @property
    def total(self) -> float:
        return sum(self.by_board.values())


def flop_per_step(workload: str, params: dict, max_dim: int | None) -> float:
    """FLOP of one step of a job as a board runs it: params completed with their
    defaults, size params capped at ``max_dim`` (an emulated board's agent)."""
    from firmware_bridge.workloads import SIZE_PARAMS, step_flops, validate

    try:
        p = validate(workload, dict(params))
    except ValueError:
        return 0.0  # the board refuses the job: it never computes a step
    if max_dim is not None:
        p = {k: min(v, max_dim) if k in SIZE_PARAMS else v for k, v in p.items()}
    return float(step_flops(workload, p))


def fsw_channels(boards: list[str]) -> list[Column]:
    """The flight software's housekeeping as telemetry columns (per-board channels
    go to the payload table)."""
    from flight_sw.dictionary import hk_channels

    out = []
    for c in hk_channels(boards):
        if c.name.startswith("board."):
            continue
        kind = "REAL" if c.fmt in ("d", "f") else "INTEGER"
        out.append(Column(f"fsw_{c.name}", c.unit, f"flight software HK: {c.desc or c.name}", kind,
                           _enum_names(c.name)))
    return out


def fmt_s(t: int | None) -> str:
    return "before start" if t is None else f"{t / NS:.3f} s"


_INFINITIES = (math.inf, -math.inf)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class Recorder:
    """The archive and event log of one run directory, the judges and the status."""

    def __init__(self, run_dir: pathlib.Path, boards: list[str], meta: dict[str, Any],
                 judges: list[Any], progress: Progress | None = None) -> None:
        from flight_sw.dictionary import BOARD_STATES, board_channel_names

        self.run_dir = run_dir
        self.work_channels = [Column(work_channel(n), "FLOP", f"work delivered by board {n} since t = 0")
                              for n in boards]
        self.channels = list(TRUTH_CHANNELS) + self.work_channels + fsw_channels(boards)
        self.work = WorkCounter(boards)
        self.work_by_orbit: list[float] = []  # FLOP delivered in orbit 1, 2, ...
        self.judges = judges
        self.progress = progress
        self.archive = Archive(run_dir / ARCHIVE_NAME, self.channels, meta)
        try:
            self.log: TextIO | None = (run_dir / "events.log").open("w", encoding="utf-8")
        except BaseException:
            self.archive.close()
            raise
        self.status: dict[str, Any] = {}
        self._since_sample: list[tuple[int, str, str, str]] = []  # events for the judges' next sample
        self._link_counts: dict[str, tuple[int, int]] = {}  # board -> (retries, errors) last written
        self._fsw_event_idx = 0
        self._jobs_seen = 0
        self._jobs_by_board: dict[str, int] = {}
        self._board_states = BOARD_STATES
        # (hk key, int or float) per flight-software column; (board, its hk keys)
        hk_cols = self.channels[len(TRUTH_CHANNELS) + len(boards):]
        self._hk_keys = [c.name[4:] for c in hk_cols]
        self._hk_nums = [int if c.kind == "INTEGER" else float for c in hk_cols]
        self._board_keys = []
        self._board_names = list(boards)
        for n in boards:
            temp_key, power_key, state_key, throttle_key = board_channel_names(n)
            self._board_keys.append((n, state_key, temp_key, power_key, throttle_key))

    def event(self, t: int, source: str, kind: str, detail: str) -> None:
        self.archive.event(t, source, kind, detail)
        self._since_sample.append((t, source, kind, detail))
        if self.log is not None:
            self.log.write(f"{t / NS:12.3f} {source:<5} {kind:<24} {detail}\n")

    def second(self, parts: RunParts, t: int, beta_rad: float) -> None:
        """One simulated second's records (see the module's doc); ``beta_rad``: the
        orbit's beta angle at ``t`` (from the run's environment)."""
        p, fsw = parts.plant, parts.fsw
        for ev in fsw.events.events[self._fsw_event_idx:]:
            self.event(ev.t_ns, "fsw", ev.name, json.dumps(ev.fields, sort_keys=True, default=str))
            if ev.name == "job_started":
                self._work_started(parts, ev.fields)
        self._fsw_event_idx = len(fsw.events.events)
        work_before = self.work.total
        self.work.observe(t, fsw.payload)
        work = self.work.total
        illum, sun_err = 0.0, float("nan")
        sb = p.sun_in_body()
        if sb is not None:
            (bx, by, bz), illum = sb
            nx, ny, nz = parts.params.panels[0].normal_body
            sun_err = math.degrees(math.acos(max(-1.0, min(1.0, bx * nx + by * ny + bz * nz))))
        temps = p.temps
        orbit = int(t // parts.events.period_ns) + 1
        wx, wy, wz = p.omega_body()
        ws = p.wheel_speed
        jw = parts.params.wheel_inertia_kg_m2
        hx, hy, hz = p.pi_b
        beta_deg = math.degrees(beta_rad)
        row: list[Any] = [orbit, illum, beta_deg, sun_err, p.soc, p.battery_v, p.solar_power_w, parts.load_power_w,
                          parts.payload_power_w, temps[0], temps[1], temps[2], temps[3],
                          math.sqrt(wx * wx + wy * wy + wz * wz), ws[0], ws[1], ws[2],
                          jw * math.sqrt(ws[0] * ws[0] + ws[1] * ws[1] + ws[2] * ws[2]),
                          math.sqrt(hx * hx + hy * hy + hz * hz), *p.q, work]
        by_board = self.work.by_board
        row += [by_board.get(n, 0.0) for n in self._board_names]
        while len(self.work_by_orbit) < orbit:
            self.work_by_orbit.append(0.0)
        self.work_by_orbit[orbit - 1] += work - work_before
        hk = fsw.hk
        # None for a missing or non-finite value (v != v: NaN), else as the column's type
        row += [None if v is None or v != v or v in _INFINITIES else num(v)
                for v, num in zip(map(hk.get, self._hk_keys), self._hk_nums, strict=True)]
        self.archive.telemetry(t, row)
        done = fsw.payload.completed  # jobs completed so far, in order: count the new ones
        for job in done[self._jobs_seen:]:
            for b in {r.board for r in job.runs}:
                self._jobs_by_board[b] = self._jobs_by_board.get(b, 0) + 1
        self._jobs_seen = len(done)
        states = {}
        board_temp_c: dict[str, float | None] = {}
        temps_c = {"payload_node": temps[0] - ZERO_CELSIUS_K}
        links = parts.links
        for name, state_key, temp_key, power_key, throttle_key in self._board_keys:
            st_i = hk.get(state_key)
            st = self._board_states[int(st_i)] if st_i is not None else "OFF"
            states[name] = st
            temp_k = _num(hk.get(temp_key))
            board_temp_c[name] = None if temp_k is None else temp_k - ZERO_CELSIUS_K
            self.archive.payload(t, name, st, _num(hk.get(power_key)), temp_k, self._jobs_by_board.get(name, 0),
                                 _num(hk.get(throttle_key)))
            ls = links[name].stats if name in links else None
            if ls is not None:
                counts = (ls.retries + ls.fast_retransmits, ls.timeouts + ls.crc_errors + ls.framing_errors)
                if self._link_counts.get(name) != counts:
                    self._link_counts[name] = counts
                    self.archive.link_stats(t, name, *counts)
        self.archive.commit_soon()
        sample = Sample(
            t_ns=t, soc=p.soc, illumination=illum, sun_err_deg=sun_err, payload_temp_c=temps_c,
            board_state={n: s.lower() for n, s in states.items()},
            jobs_done=int(fsw.payload.stats["jobs_completed"]),
            seu_detected=int(fsw.payload.stats["seu_detected"]),
            board_temp_c=board_temp_c, mode=fsw.mode, events=tuple(self._since_sample),
        )
        self._since_sample.clear()
        for j in self.judges:
            j.observe(sample)
        self.status = {
            "t_s": t / NS, "orbit": orbit, "sunlit": illum > 0.5, "beta_deg": beta_deg, "soc": p.soc,
            "temps_c": [x - ZERO_CELSIUS_K for x in temps[:2]], "mode": fsw.mode,
            "boards": states, "jobs": sample.jobs_done,
        }
        pacer = parts.pacer
        if pacer is not None:  # real time: the pace, for the progress line
            st = pacer.lateness
            self.status.update(speed=pacer.scale, achieved_speed=st.recent_speed, speed_kept=st.keeping,
                               behind_s=st.behind_ns / 1e9)
        if self.progress is not None:
            self.progress.update(t, self.status)

    def _work_started(self, parts: RunParts, f: dict[str, Any]) -> None:
        from firmware_bridge.emulator import EMULATOR_MAX_JOB_DIM

        job = parts.fsw.payload.jobs.get(f.get("job"))
        board = f.get("board")
        if job is None or board is None:
            return
        spec = parts.board_specs.get(board)
        max_dim = EMULATOR_MAX_JOB_DIM if spec is not None and spec.emulated else None
        self.work.started(board, f.get("remote_id"), bool(f.get("resumed")),
                          flop_per_step(job.workload, job.params, max_dim))

    def work_summary(self) -> dict[str, Any]:
        """``summary.json``'s ``work``: FLOP delivered, in all, per board and per orbit."""
        return {"unit": "FLOP", "delivered": self.work.total,
                "by_board": dict(self.work.by_board), "by_orbit": list(self.work_by_orbit)}

    def verdicts(self, t_end: int, run_yield: dict[str, Any] | None = None) -> list[Any]:
        """Every judge's verdict at ``t_end``; ``run_yield`` (summary.json's ``yield``)
        goes to the judges first (``yield_min`` judges it)."""
        if run_yield is not None:
            for j in self.judges:
                j.add_yield(run_yield)
        return [j.verdict(t_end) for j in self.judges]

    def notice(self, text: str) -> None:
        """A line for the operator as it happens: on the progress display, else stderr."""
        if self.progress is not None:
            self.progress.notice(text)
        else:
            print(f"hil run: {text}", file=sys.stderr, flush=True)

    def close_progress(self, t_end: int) -> None:
        if self.progress is not None:
            if self.status:
                self.progress.update(t_end, self.status, force=True)
            self.progress.close()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        self.archive.close()
