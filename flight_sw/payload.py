"""Payload manager: job queue, throttle, eclipse suspend/resume, recovery, digests.

Once per 1 Hz frame (:meth:`PayloadManager.run`), in this order:

1. housekeeping from every powered board: its heartbeat, temperature, power;
   with time sync on, one ``time_sync`` whose reply (protocol 1.1) carries the
   housekeeping record and the board's job states, so the common frame costs one
   link round trip per board (a 1.0 board gets ``housekeeping`` and
   ``job_status`` calls instead). The boards' time syncs go out concurrently
   (all sent, then all awaited, with a link's ``time_sync_begin``; a link
   without it is synced in turn; results handled in board order, so the outcome
   does not depend on which board answers first): a frame waits for the slowest
   board, not for the sum of all;
2. boards that came back from a reset or power cycle: time sync, then each of
   their runs is resumed from its checkpoint (``resume``); a board that no
   longer knows the job gets it restarted from the start, and that is counted;
3. status of every running run; a finished run's digest is verified;
4. the hold decision: suspend (checkpoint and stop) every run when the
   flight software says energy or mode require it, resume when it allows;
5. the throttle, per board: ``min(its own thermal derating, the plate's
   derating, ground cap)``, then the EPS budget shared out over the boards by
   water-filling (each board's throttle capped at one common level so that the
   boards' draw meets the budget); sent to a board when its throttle changes
   (to every such board at once, with a link's ``set_throttle_begin``, as the
   time syncs). A board's own derating follows its own temperature (the thermal core's law:
   1 at ``derate_start_k``, 0 at ``derate_end_k``, rate-limited down and up): a
   hot board no longer throttles a cool one;
6. dispatch of queued runs to idle, healthy boards.

At the end of the frame every live board's link is told that the payload
manager has nothing more for it until the next frame (a link's ``idle``); a
link may use that time (firmware_bridge's Link sends the next time sync ahead
to a board on a virtual clock: see ``firmware_bridge.link.Link.idle``).

The periodic checkpoint of a run goes out without waiting for the reply (a
link's ``checkpoint_begin``): the board saves while the loop runs on, and the
reply is awaited ``CHECKPOINT_AWAIT_S`` later, or before the payload manager
next commands that board or switches its power, or before the next checkpoint.
Until then, the run's ``checkpoint_step`` comes from that reply only, not from
the reports, which may or may not show the new checkpoint depending on how fast
the board saved: what the flight software records stays independent of the
wall clock. A failed checkpoint is retried at the next frame, as before.

Verification: ``none``; ``known_answer`` (the ground gives the expected digest
in ``expect_digest``); ``redundant`` (two runs on different boards when
possible; on disagreement a third run breaks the tie, and the odd one out is an
SEU caught). Every link error is evidence for FDIR (heartbeat age), never a
crash, and leaves a trace: it is counted (``stats["link_errors"]``) and is a
``link_error`` event with the board, the command and the cause.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flight_sw.events import EventLog
from flight_sw.executive import NS, Component
from flight_sw.interfaces import PayloadLink, PowerSwitch

try:  # the link's exception family; any of them is link-health evidence
    from firmware_bridge.link import LinkError as _LinkError

    LINK_ERRORS: tuple[type[BaseException], ...] = (_LinkError, OSError, TimeoutError)
except ImportError:  # pragma: no cover - before firmware_bridge.link exists
    LINK_ERRORS = (OSError, TimeoutError, RuntimeError)

THROTTLE_BINS = 10
CHECKPOINT_AWAIT_S = 20  # a periodic checkpoint in flight is awaited this long after it went out
MAX_RUNS_PER_JOB = 4
MAX_ATTEMPTS = 3


@dataclass
class BoardConfig:
    name: str
    channel: int  # PowerSwitch channel (the relay on the bench)
    idle_w: float = 5.0
    max_w: float = 15.0
    #: from power on to its agent answering (the board kind's rating, or the bench's figure):
    #: FDIR holds its judgement of a board this long after powering it (:meth:`PayloadManager.booting`)
    boot_time_s: float = 0.0
    #: FLOP per second at throttle 1 (its rating); 0: unknown. The EPS budget above the
    #: boards' idle draw goes first to the boards that compute most per watt
    rated_flops: float = 0.0


@dataclass
class Placement:
    """One job placed on one board (a job needs two under redundant verification)."""

    board: str
    remote_id: Any
    state: str = "running"  # running, suspended, recovering, done, failed, lost
    digest: str = ""
    checkpoint_step: int = -1
    started_ns: int = 0
    last_ckpt_ns: int = 0


@dataclass
class Job:
    id: int
    workload: str
    params: dict
    deadline_s: float
    verify: str = "none"  # none, redundant, known_answer
    expect_digest: str = ""
    state: str = "queued"  # queued, running, done, failed, cancelled
    runs: list[Placement] = field(default_factory=list)
    needed_runs: int = 1
    attempts: int = 0
    queued_ns: int = 0
    done_ns: int = 0
    energy_j: float = 0.0
    digest: str = ""
    seu_caught: int = 0


@dataclass
class Board:
    cfg: BoardConfig
    link: PayloadLink
    powered: bool = True
    isolated: bool = False
    last_ok_ns: int = 0
    recovering: bool = False  # came back from reset / power cycle: resume its runs
    temp_k: float = float("nan")
    power_w: float = 0.0
    throttle_sent: float = -1.0
    derate: float = 1.0  # its own thermal derating (see the module's doc, step 5)
    throttle: float = 0.0  # what it should run at this frame
    link_errors: int = 0
    report_ns: int = -1  # frame of the last time-sync report ...
    job_report: dict = field(default_factory=dict)  # ... and its job states by remote id
    digest_fail_streak: int = 0
    run: tuple[Job, Placement] | None = None
    powered_on_ns: int = -1  # when the payload manager last powered it on (-1: not since start)


class PayloadManager(Component):
    name = "payload"

    def __init__(
        self,
        boards: list[BoardConfig],
        links: Mapping[str, PayloadLink],
        switches: PowerSwitch,
        events: EventLog,
        *,
        time_sync: bool = True,
        checkpoint_period_s: float = 30.0,
        derate_law: tuple[float, float, float, float] | None = None,
    ) -> None:
        super().__init__()
        missing = [b.name for b in boards if b.name not in links]
        if missing:
            raise ValueError(f"payload manager: no link for board(s) {missing}")
        self.boards = {b.name: Board(b, links[b.name]) for b in boards}
        self._fdir_names = {n: fdir_sample_names(n) for n in self.boards}
        self.switches = switches
        self.events = events
        self.time_sync = time_sync
        # (derate_start_k, derate_end_k, down per s, up per s): each board's own derating
        self.derate_law = derate_law
        self._ckpt: dict[str, _Checkpoint] = {}  # board -> periodic checkpoint in flight
        self.checkpoints_led = 0  # periodic checkpoints sent without waiting for the reply
        self.checkpoints_taken_late = 0  # ...whose reply was taken CHECKPOINT_AWAIT_S later
        self.checkpoint_period_ns = int(checkpoint_period_s * NS)
        self.jobs: dict[int, Job] = {}
        self._next_id = 1
        # inputs set by the flight software each frame
        self.budget_w = 0.0
        self.derate = 1.0
        self.cap = 1.0
        self.hold_reason = ""  # non-empty: keep everything suspended
        # outputs
        self.throttle = 0.0
        self.suspended = False
        self.stats = {
            "jobs_completed": 0, "jobs_failed": 0, "seu_detected": 0, "restarts_from_scratch": 0,
            "resumed_from_checkpoint": 0, "suspends": 0, "resumes": 0, "power_cycles": 0,
            "resets": 0, "link_errors": 0,
        }
        self.payload_s_by_throttle = [0.0] * THROTTLE_BINS
        self.completed: list[Job] = []
        self._state_counts: Counter[str] = Counter()
        self._booted = False
        self._frame_ns = 0  # time of the latest frame (run())

    # --- ground-facing ----------------------------------------------------------------
    def queue(self, t_ns: int, workload: str, params: dict, deadline_s: float,
              verify: str = "none", expect_digest: str = "") -> int:
        if verify not in ("none", "redundant", "known_answer"):
            raise ValueError(f"verify {verify!r}: expected none, redundant or known_answer")
        if verify == "known_answer" and not expect_digest:
            raise ValueError("verify known_answer needs expect_digest")
        job = Job(self._next_id, workload, dict(params), float(deadline_s), verify, expect_digest,
                  needed_runs=2 if verify == "redundant" else 1, queued_ns=t_ns)
        self._next_id += 1
        self.jobs[job.id] = job
        self._state_counts["queued"] += 1
        return job.id

    def _set_state(self, job: Job, state: str) -> None:
        self._state_counts[job.state] -= 1
        self._state_counts[state] += 1
        job.state = state

    def cancel(self, t_ns: int, job_id: int) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            raise ValueError(f"no job {job_id}")
        for r in job.runs:
            if r.state in ("running", "suspended", "recovering"):
                self._call(t_ns, self.boards[r.board], "cancel", r.remote_id)
                self._free(r)
                r.state = "failed"
        self._set_state(job, "cancelled")

    # --- the frame --------------------------------------------------------------------
    def run(self, t_ns: int) -> None:
        self._frame_ns = t_ns
        if not self._booted:
            self._booted = True
            for b in self.boards.values():  # power every board the relay left off
                if not self.switches.get(b.cfg.channel):
                    self._power(t_ns, b, True, "boot")
                else:  # on already, since when we cannot know: it may be booting with us
                    b.powered_on_ns = b.last_ok_ns = t_ns
        live = self.active_boards()
        synced = self._time_sync_all(t_ns, live) if self.time_sync else {}
        for b in live:
            self._housekeeping(t_ns, b, synced.get(b.cfg.name))
        for b in self.boards.values():
            if b.recovering and b.powered and b.last_ok_ns == t_ns:
                self._recover(t_ns, b)
        self._poll_runs(t_ns)
        self._hold(t_ns)
        self._set_throttle(t_ns)
        if not self.suspended:
            self._dispatch(t_ns)
        self._account(t_ns)
        for b in self.active_boards():  # nothing more for the boards until the next frame
            idle = getattr(b.link, "idle", None)
            if idle is not None:
                idle(t_ns + NS)

    def _call(self, t_ns: int, b: Board, method: str, *args: Any) -> Any:
        if self._ckpt:
            self._checkpointed(b.cfg.name, t_ns)  # the checkpoint in flight to it first
        try:
            return getattr(b.link, method)(*args)
        except LINK_ERRORS as e:
            return self._link_error(t_ns, b, method, e)

    def _link_error(self, t_ns: int, b: Board, method: str, e: BaseException) -> Any:
        """Count a failed link call and leave a trace: a ``link_error`` event with the
        board, the command and the cause (the exception's class and message, with the
        link's port name left out: a pty's name changes from run to run, and the
        event log of a virtual-time run must repeat bit for bit)."""
        b.link_errors += 1
        self.stats["link_errors"] += 1
        cause = f"{type(e).__name__}: {e}"
        url = getattr(b.link, "url", None)
        if isinstance(url, str) and url:
            cause = cause.replace(url, "<port>")
        self.events.emit(t_ns, "link_error", board=b.cfg.name, command=method, cause=cause[:200])
        return _FAILED

    def _time_sync_all(self, t_ns: int, boards: list[Board]) -> dict[str, Any]:
        """``time_sync`` on every board at once; results (or _FAILED) by board name."""
        return dict(zip((b.cfg.name for b in boards),
                        self._all_at_once(t_ns, [(b, "time_sync", (t_ns,)) for b in boards]), strict=True))

    def _all_at_once(self, t_ns: int, calls: list[tuple[Board, str, tuple]],
                     after_checkpoint: bool = False) -> list[Any]:
        """One command to each of several boards: every one sent, then every reply
        awaited (``<command>_begin``, as firmware_bridge's Link offers; a link without it
        is called the plain way), so the boards work at once. Results (or _FAILED) in
        the order of ``calls``. ``after_checkpoint``: a board's checkpoint in flight is
        awaited before its command, as :meth:`_call` does."""
        begun: list[Any] = []
        for b, method, args in calls:
            if after_checkpoint and self._ckpt:
                self._checkpointed(b.cfg.name, t_ns)
            begin = getattr(b.link, f"{method}_begin", None)
            try:
                begun.append(begin(*args) if begin is not None else _Ready(getattr(b.link, method)(*args)))
            except LINK_ERRORS as e:
                begun.append(e)
        out: list[Any] = []
        for (b, method, _args), p in zip(calls, begun, strict=True):
            if isinstance(p, BaseException):
                out.append(self._link_error(t_ns, b, method, p))
                continue
            try:
                out.append(p.wait())
            except LINK_ERRORS as e:
                out.append(self._link_error(t_ns, b, method, e))
        return out

    def _checkpointed(self, name: str, t_ns: int) -> None:
        """Await the checkpoint in flight to board ``name`` (if any) and take its result;
        a failed one is link-health evidence and is tried again at the next frame."""
        out = self._ckpt.pop(name, None)
        if out is None:
            return
        b, run = self.boards[name], out.run
        try:
            res = out.pending.wait()
        except LINK_ERRORS as e:
            self._link_error(t_ns, b, "checkpoint", e)
            run.last_ckpt_ns = out.previous_ns
            return
        ck = _get(res, "checkpoint_step")
        if ck is not None:
            run.checkpoint_step = max(run.checkpoint_step, int(ck))

    def close(self) -> None:
        """Await the checkpoints still out and take their results (idempotent)."""
        for name in list(self._ckpt):
            self._checkpointed(name, self._frame_ns)

    def _housekeeping(self, t_ns: int, b: Board, res: Any = None) -> None:
        hk: Any = None
        if self.time_sync:
            if res is None:
                res = self._call(t_ns, b, "time_sync", t_ns)
            if res is _FAILED:
                return
            hk = _get(res, "hk")
            jobs = _get(res, "jobs")
            if hk is not None and isinstance(jobs, list):
                b.report_ns = t_ns
                b.job_report = {}
                for j in jobs:
                    b.job_report[_get(j, "job_id")] = j
        if hk is None:
            hk = self._call(t_ns, b, "housekeeping")
            if hk is _FAILED:
                return
        cmd = _get(hk, "throttle_cmd")  # what the board holds as commanded
        if cmd is not None and b.throttle_sent >= 0:
            # a board that restarted behind our back (brownout, relay) runs at its
            # default throttle: send ours again
            if abs(float(cmd) - round(b.throttle_sent, 4)) > 1e-3:
                b.throttle_sent = -1.0
        b.last_ok_ns = t_ns
        b.link_errors = 0
        temps = _get(hk, "temps_k") or {}
        hottest = None  # max() of the known values, in their order
        for v in temps.values() if type(temps) is dict or isinstance(temps, Mapping) else temps:
            if v == v and (hottest is None or float(v) > hottest):
                hottest = float(v)
        if hottest is not None:
            b.temp_k = hottest
            self._derate(b)
        p = _get(hk, "power_w")
        if p is not None:
            b.power_w = float(p)

    def _recover(self, t_ns: int, b: Board) -> None:
        b.recovering = False
        b.throttle_sent = -1.0
        if b.run is None:
            return
        job, run = b.run
        res = self._call(t_ns, b, "resume", run.remote_id)
        b.job_report.pop(run.remote_id, None)  # the report predates the resume
        if res is not _FAILED:
            run.state = "running"
            self.stats["resumed_from_checkpoint"] += 1
            self.events.emit(t_ns, "job_started", job=job.id, board=b.cfg.name,
                             remote_id=run.remote_id, resumed=True, checkpoint_step=run.checkpoint_step)
            return
        rid = self._call(t_ns, b, "start_job", job.workload, job.params, job.deadline_s)
        if rid is _FAILED:
            self._free(run)
            run.state = "lost"
            return
        run.remote_id = _job_id(rid)
        run.state = "running"
        self.stats["restarts_from_scratch"] += 1
        self.events.emit(t_ns, "job_started", job=job.id, board=b.cfg.name, remote_id=run.remote_id,
                         resumed=False, cause="board lost the job; restarted from the start")

    def _poll_runs(self, t_ns: int) -> None:
        for name, out in list(self._ckpt.items()):
            if t_ns - out.sent_ns >= CHECKPOINT_AWAIT_S * NS:
                self._checkpointed(name, t_ns)
                self.checkpoints_taken_late += 1
        for b in self.boards.values():
            if b.run is None or not b.powered or b.isolated or b.recovering or b.last_ok_ns != t_ns:
                continue
            job, run = b.run
            if run.state != "running":
                continue
            st = b.job_report.get(run.remote_id) if b.report_ns == t_ns else None
            if st is None:
                st = self._call(t_ns, b, "job_status", run.remote_id)
            if st is _FAILED:
                continue
            state = _get(st, "state")
            ck = _get(st, "checkpoint_step")
            if ck is not None and b.cfg.name not in self._ckpt:
                run.checkpoint_step = max(run.checkpoint_step, int(ck))
            if state == "done":
                run.digest = str(_get(st, "digest") or "")
                run.state = "done"
                self._free(run)
                self._verify(t_ns, job)
            elif state in ("failed", "deadline_missed", "cancelled"):
                run.state = "failed"
                self._free(run)
                self._run_failed(t_ns, job, f"{b.cfg.name}: {state} {_get(st, 'error') or ''}".strip())
            elif state == "suspended" and not self.suspended:  # a resume that did not take: again
                self._call(t_ns, b, "resume", run.remote_id)
            elif t_ns - run.last_ckpt_ns >= self.checkpoint_period_ns:
                self._checkpointed(b.cfg.name, t_ns)  # the previous one first (a short period)
                begin = getattr(b.link, "checkpoint_begin", None)
                if begin is not None:
                    try:
                        self._ckpt[b.cfg.name] = _Checkpoint(run, t_ns, run.last_ckpt_ns,
                                                             begin(run.remote_id))
                        run.last_ckpt_ns = t_ns
                        self.checkpoints_led += 1
                    except LINK_ERRORS as e:
                        self._link_error(t_ns, b, "checkpoint", e)
                    continue
                res = self._call(t_ns, b, "checkpoint", run.remote_id)
                if res is not _FAILED:
                    run.last_ckpt_ns = t_ns
                    ck = _get(res, "checkpoint_step")
                    if ck is not None:
                        run.checkpoint_step = int(ck)

    def _run_failed(self, t_ns: int, job: Job, cause: str) -> None:
        job.attempts += 1
        if job.attempts >= MAX_ATTEMPTS:
            self._finish(t_ns, job, ok=False, cause=cause)

    def _verify(self, t_ns: int, job: Job) -> None:
        done = [r for r in job.runs if r.state == "done"]
        if job.verify == "known_answer":
            r = done[-1]
            if r.digest == job.expect_digest:
                job.digest = r.digest
                self._finish(t_ns, job, ok=True)
            else:
                self._seu(t_ns, job, r, "digest differs from the known answer")
                r.state = "rejected"  # not a live run: the job is dispatched again
                self._run_failed(t_ns, job, "known-answer mismatch")
            return
        if job.verify == "none":
            job.digest = done[-1].digest
            self._finish(t_ns, job, ok=True)
            return
        if len(done) < job.needed_runs:
            return
        counts: dict[str, int] = {}
        for r in done:
            counts[r.digest] = counts.get(r.digest, 0) + 1
        best, n = max(counts.items(), key=lambda kv: kv[1])
        if n >= 2:
            outvoted = 0
            for r in done:
                if r.digest != best:
                    # the first corrupted copy was reported when the runs first disagreed;
                    # every further one (an SEU in a tie-break run too) is another catch
                    outvoted += 1
                    self._seu(t_ns, job, r, "redundant runs disagree; outvoted",
                              reported=outvoted <= job.seu_caught)
                else:
                    self.boards[r.board].digest_fail_streak = 0
            job.digest = best
            self._finish(t_ns, job, ok=True)
        elif job.needed_runs < MAX_RUNS_PER_JOB:
            if job.needed_runs == 2:
                self.events.emit(t_ns, "seu_detected", job=job.id, cause="redundant runs disagree",
                                 digests=sorted(counts))
                self.stats["seu_detected"] += 1
                job.seu_caught += 1
            job.needed_runs += 1  # a tie-break run
        else:
            self._finish(t_ns, job, ok=False, cause="no two runs agree")

    def _seu(self, t_ns: int, job: Job, r: Placement, cause: str, reported: bool = False) -> None:
        self.boards[r.board].digest_fail_streak += 1
        if reported:
            return  # already reported when the disagreement was first seen
        job.seu_caught += 1
        self.stats["seu_detected"] += 1
        self.events.emit(t_ns, "seu_detected", job=job.id, board=r.board, cause=cause, digest=r.digest)

    def _finish(self, t_ns: int, job: Job, *, ok: bool, cause: str = "") -> None:
        for r in job.runs:
            if r.state in ("running", "suspended", "recovering"):
                b = self.boards[r.board]
                self._call(t_ns, b, "cancel", r.remote_id)
                self._free(r)
                r.state = "failed"
        self._set_state(job, "done" if ok else "failed")
        job.done_ns = t_ns
        if ok:
            self.stats["jobs_completed"] += 1
            self.completed.append(job)
            self.events.emit(t_ns, "job_completed", job=job.id, digest=job.digest, energy_j=round(job.energy_j, 3),
                             runs=len(job.runs))
        else:
            self.stats["jobs_failed"] += 1
            self.events.emit(t_ns, "job_failed", job=job.id, cause=cause)

    def _free(self, run: Placement) -> None:
        b = self.boards[run.board]
        if b.run is not None and b.run[1] is run:
            b.run = None

    def _hold(self, t_ns: int) -> None:
        if self.hold_reason and not self.suspended:
            n = 0
            for b in self.boards.values():
                if b.run is not None and b.run[1].state == "running" and b.last_ok_ns == t_ns:
                    res = self._call(t_ns, b, "suspend", b.run[1].remote_id)
                    if res is not _FAILED:
                        b.run[1].state = "suspended"
                        ck = _get(res, "checkpoint_step")
                        if ck is not None:
                            b.run[1].checkpoint_step = int(ck)
                        n += 1
            self.suspended = True
            self.stats["suspends"] += 1
            self.events.emit(t_ns, "payload_suspended", reason=self.hold_reason, runs=n)
        elif not self.hold_reason and self.suspended:
            n = 0
            for b in self.boards.values():
                if b.run is not None and b.run[1].state == "suspended":
                    # Resumed or not, the run is polled again from here on: a resume the
                    # board refused (the job ended there meanwhile) or that was lost on the
                    # link is settled by the board's own report of the job (_poll_runs)
                    # rather than left "suspended", holding the board for good.
                    if self._call(t_ns, b, "resume", b.run[1].remote_id) is not _FAILED:
                        n += 1
                    b.run[1].state = "running"
            self.suspended = False
            self.stats["resumes"] += 1
            self.events.emit(t_ns, "payload_resumed", runs=n)

    def active_boards(self) -> list[Board]:
        out = []  # a plain loop: called several times a frame, for a board or two
        for b in self.boards.values():
            if b.powered and not b.isolated:
                out.append(b)
        return out

    def payload_power_w(self) -> float:
        return sum(b.power_w for b in self.active_boards())

    def full_power_w(self) -> float:
        return sum(b.cfg.max_w for b in self.active_boards())

    def _set_throttle(self, t_ns: int) -> None:
        act = self.active_boards()
        want = []
        for b in act:
            x = max(0.0, min(1.0, b.derate, self.derate, self.cap))
            want.append((b, x))
        shares = _share([(b.cfg.idle_w, b.cfg.max_w - b.cfg.idle_w, x, b.cfg.rated_flops) for b, x in want],
                        self.budget_w)
        top = 0.0
        for (b, _x), y in zip(want, shares, strict=True):
            b.throttle = y
            top = max(top, y)
        self.throttle = top
        sends = [b for b in act if b.last_ok_ns == t_ns and abs(b.throttle_sent - b.throttle) > 0.005]
        if sends:  # to every board at once (two boards' throttles often change together)
            res = self._all_at_once(t_ns, [(b, "set_throttle", (round(b.throttle, 4),)) for b in sends],
                                    after_checkpoint=True)
            for b, r in zip(sends, res, strict=True):
                if r is not _FAILED:
                    b.throttle_sent = b.throttle

    def _derate(self, b: Board) -> None:
        """One frame (1 s) of a board's own thermal derating from its temperature."""
        law = self.derate_law
        if law is None or b.temp_k != b.temp_k:
            return
        start, end, down, up = law
        target = max(0.0, min(1.0, (end - b.temp_k) / (end - start)))
        b.derate = max(0.0, min(1.0, target, b.derate + up)) if target > b.derate else max(target, b.derate - down)

    def _healthy_idle(self, t_ns: int) -> list[Board]:
        return [b for b in self.boards.values()
                if b.powered and not b.isolated and not b.recovering and b.run is None
                and b.last_ok_ns == t_ns and b.digest_fail_streak < 2]

    def _dispatch(self, t_ns: int) -> None:
        if self.throttle <= 0.0:
            return
        for b in self._healthy_idle(t_ns):
            if b.throttle <= 0.0:
                continue
            job = self._next_job_for(b)
            if job is None:
                continue  # nothing for this board (it may be waiting for a partner's copy)
            rid = self._call(t_ns, b, "start_job", job.workload, job.params, job.deadline_s)
            if rid is _FAILED:
                continue
            run = Placement(b.cfg.name, _job_id(rid), started_ns=t_ns, last_ckpt_ns=t_ns)
            job.runs.append(run)
            if job.state != "running":
                self._set_state(job, "running")
            b.run = (job, run)
            self.events.emit(t_ns, "job_started", job=job.id, board=b.cfg.name, remote_id=run.remote_id,
                             resumed=False)

    def _next_job_for(self, b: Board) -> Job | None:
        healthy = {x.cfg.name for x in self.boards.values() if x.powered and not x.isolated}
        fallback = None
        waits_for_partner = False  # a result of this board waits for another board's copy
        for job in self.jobs.values():
            if job.state not in ("queued", "running"):
                continue
            live = [r for r in job.runs if r.state in ("running", "suspended", "recovering", "done")]
            if len(live) >= job.needed_runs:
                continue
            used = {r.board for r in live}
            if b.cfg.name in used:
                # a redundant copy goes to another board while one can take it
                if healthy <= used:
                    fallback = fallback or job
                else:
                    waits_for_partner = True
                continue
            if not live and waits_for_partner:
                # a faster board does not run ahead on fresh jobs while its earlier
                # result is unverified: verification (and an SEU's detection) stays
                # at most one job behind
                continue
            return job
        return fallback

    def _account(self, t_ns: int) -> None:
        for b in self.boards.values():
            if b.run is not None and b.run[1].state == "running" and b.powered:
                job = b.run[0]
                job.energy_j += b.power_w * 1.0
                i = min(int(b.throttle * THROTTLE_BINS), THROTTLE_BINS - 1)
                self.payload_s_by_throttle[i] += 1.0

    # --- FDIR ------------------------------------------------------------------------
    def booting(self, t_ns: int) -> set[str]:
        """Boards still booting at ``t_ns``: powered on by the payload manager less than
        their ``boot_time_s`` ago and not heard from since. FDIR holds its judgement of
        them (no heartbeat sample, their episode neither advances nor clears), so a board
        with a long boot (a QEMU board's Linux, a Jetson's) is not power-cycled while it
        boots; once its boot time has passed without an answer, its heartbeat age (from
        the power on) trips the ladder where it stood."""
        out = set()
        for name, b in self.boards.items():
            if (b.powered and not b.isolated and b.powered_on_ns >= 0 and b.last_ok_ns <= b.powered_on_ns
                    and t_ns - b.powered_on_ns < b.cfg.boot_time_s * NS):
                out.add(name)
        return out

    def fdir_samples(self, t_ns: int) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        booting = self.booting(t_ns)
        for name, b in self.boards.items():
            age, temp, streak = self._fdir_names[name]
            if b.powered and not b.isolated and name not in booting:
                out[age] = (t_ns - b.last_ok_ns) / NS
                out[temp] = b.temp_k if b.temp_k == b.temp_k else None
                out[streak] = float(b.digest_fail_streak)
            else:
                out[age] = out[temp] = out[streak] = None
        return out

    def apply(self, t_ns: int, target: str, action: str, cause: str) -> None:
        b = self.boards.get(target)
        if b is None:
            return
        if action == "retry":
            if self._call(t_ns, b, "ping") is not _FAILED:
                b.last_ok_ns = t_ns
        elif action == "reset":
            self.stats["resets"] += 1
            self._call(t_ns, b, "reboot")
            b.recovering = True
        elif action == "power_cycle":
            self.stats["power_cycles"] += 1
            self._power(t_ns, b, False, cause)
            self._power(t_ns, b, True, cause)
            b.recovering = True  # FDIR holds its judgement while it boots (booting())
        elif action == "isolate":
            self._isolate(t_ns, b, cause)
        elif action == "readmit":
            b.isolated = False
            b.digest_fail_streak = 0
            self._power(t_ns, b, True, cause)
            b.last_ok_ns = t_ns

    def _isolate(self, t_ns: int, b: Board, cause: str) -> None:
        b.isolated = True
        if b.run is not None:
            job, run = b.run
            run.state = "lost"
            b.run = None
            job.attempts += 1  # its checkpoint is on the isolated board: restart elsewhere
        self._power(t_ns, b, False, cause)

    def _power(self, t_ns: int, b: Board, on: bool, cause: str) -> None:
        if self._ckpt:
            self._checkpointed(b.cfg.name, t_ns)  # the checkpoint in flight to it first
        self.switches.set(b.cfg.channel, on)
        b.powered = on
        b.report_ns = -1  # its report is void now
        if on:  # it boots: its heartbeat age counts from now, and FDIR waits out its boot time
            b.powered_on_ns = b.last_ok_ns = t_ns
        if not on:
            b.power_w = 0.0
        self.events.emit(t_ns, "board_power", board=b.cfg.name, on=on, channel=b.cfg.channel, cause=cause)

    def counts(self) -> dict[str, int]:
        return {"jobs_queued": self._state_counts["queued"], "jobs_running": self._state_counts["running"]}


@dataclass
class _Checkpoint:
    """A periodic checkpoint in flight: its run, when it went out, the run's previous
    checkpoint time (restored if it fails) and the begun call."""

    run: Placement
    sent_ns: int
    previous_ns: int
    pending: Any


class _Ready:
    """A result at hand, shaped like a begun call."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def wait(self) -> Any:
        return self.value


class _Failed:
    def __repr__(self) -> str:
        return "<link call failed>"


_FAILED = _Failed()


def sun_budget_w(solar_w: float, bus_w: float, soc: float, capacity_j: float, charge_eff: float,
                 time_to_eclipse_s: float) -> float:
    """The payload power that the array can carry in the sun while the battery still
    fills by the next eclipse entry: generation, less the bus without the payload,
    less the charge the battery lacks spread over the sunlit time left (at the charge
    efficiency). The EPS core's budget plans one constant payload power to the end of
    the next eclipse, which held the payload below what the array gave once the
    battery was full (the rest shunted); the flight software takes the larger of the
    two in the sun. Approaching the eclipse with the battery short, the charge still
    owed grows against the time left and this budget falls below the core's, which
    then governs (docs/flight_sw/payload.md). NaN inputs or no sunlit time left: 0."""
    if not time_to_eclipse_s > 0.0 or not capacity_j > 0.0 or soc != soc or solar_w != solar_w:
        return 0.0
    owed_j = max(0.0, 1.0 - soc) * capacity_j / charge_eff
    return max(0.0, solar_w - bus_w - owed_j / time_to_eclipse_s)


def _water_level(boards: list[tuple[float, float, float]], budget_w: float) -> float:
    """The common throttle cap ``y`` that shares ``budget_w`` over boards of
    (idle W, span W, wanted throttle): ``sum(idle + span * min(x, y)) = budget``,
    0 if the idle draw alone exceeds it, 1 if every board gets what it wants."""
    idle = sum(i for i, _s, _x in boards)
    if sum(i + s * x for i, s, x in boards) <= budget_w:
        return 1.0
    if idle >= budget_w:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection: monotone in y
        y = 0.5 * (lo + hi)
        if idle + sum(s * min(x, y) for _i, s, x in boards) > budget_w:
            hi = y
        else:
            lo = y
    return lo


def _share(boards: list[tuple[float, float, float, float]], budget_w: float) -> list[float]:
    """Each board's throttle under ``budget_w``, boards given as (idle W, span W,
    wanted throttle, FLOP/s at throttle 1). Work is linear in throttle and power
    affine, so the budget above every board's idle draw goes first to the boards
    with the most FLOP per watt of span (a fractional knapsack: greedy is optimal);
    boards of equal efficiency (or unknown ratings) share what is left by one
    common level (:func:`_water_level`)."""
    left = budget_w - sum(i for i, _s, _x, _f in boards)
    out = [0.0] * len(boards)
    eff = [f / s if s > 0 else 0.0 for _i, s, _x, f in boards]
    for e in sorted(set(eff), reverse=True):
        group = [k for k in range(len(boards)) if eff[k] == e]
        if left <= 0.0:
            break
        level = _water_level([(0.0, boards[k][1], boards[k][2]) for k in group], left)
        for k in group:
            y = min(boards[k][2], level)
            out[k] = y
            left -= boards[k][1] * y
    return out


def fdir_sample_names(board: str) -> tuple[str, str, str]:
    """The names of a board's samples in :meth:`PayloadManager.fdir_samples` (its FDIR
    monitors): heartbeat age (s), temperature (K), digest failure streak."""
    return f"{board}.heartbeat_age_s", f"{board}.temp_k", f"{board}.digest_fail_streak"


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict or isinstance(obj, Mapping):  # a link's replies are dicts: no ABC check
        return obj.get(key)
    return getattr(obj, key, None)


def _job_id(rid: Any) -> Any:
    if isinstance(rid, Mapping):
        return rid.get("job_id")
    return rid
