"""Mode manager: BOOT, DETUMBLE, SAFE, SUN_POINT, COMPUTE.

Every transition is guarded and has a reason: ``commanded`` (a telecommand or
the in-process command API) or ``autonomous`` (the mode manager itself, or
FDIR). Every transition, and every refusal, is an event.

Transition table (``from -> to``: guard)::

    BOOT      -> DETUMBLE   autonomous once boot checks pass
    DETUMBLE  -> SUN_POINT  body rate < rate_low for rate_persist_s
    SUN_POINT -> DETUMBLE   body rate > rate_high (autonomous)
    SUN_POINT -> COMPUTE    soc >= compute_min_soc, no payload-blocking fault,
                            pointing error < compute_max_point_err_rad
                            (autonomous when auto_compute, else commanded)
    COMPUTE   -> SUN_POINT  commanded, or autonomous when soc < compute_exit_soc
                            or pointing is lost
    any       -> SAFE       always allowed (FDIR, watchdog, command)
    SAFE      -> SUN_POINT  commanded only, and body rate < rate_low
    SAFE      -> DETUMBLE   commanded only
"""

from __future__ import annotations

from dataclasses import dataclass

from flight_sw.dictionary import MODE_NAMES
from flight_sw.events import EventLog

BOOT, DETUMBLE, SAFE, SUN_POINT, COMPUTE = MODE_NAMES

_ALLOWED = {
    (BOOT, DETUMBLE),
    (DETUMBLE, SUN_POINT),
    (SUN_POINT, DETUMBLE),
    (SUN_POINT, COMPUTE),
    (COMPUTE, SUN_POINT),
    (COMPUTE, DETUMBLE),
    (SAFE, SUN_POINT),
    (SAFE, DETUMBLE),
} | {(m, SAFE) for m in MODE_NAMES if m != SAFE}


@dataclass
class ModeConfig:
    rate_low_rad_s: float = 0.01
    rate_high_rad_s: float = 0.05
    rate_persist_s: float = 30.0
    compute_min_soc: float = 0.5
    compute_exit_soc: float = 0.22
    compute_max_point_err_rad: float = 0.2
    auto_compute: bool = True


@dataclass
class ModeInputs:
    """What the guards look at; filled by the flight software each 1 Hz frame."""

    rate_norm_rad_s: float = 0.0
    soc: float = 1.0
    pointing_error_rad: float = 0.0
    payload_blocked: bool = False  # FDIR latch (safe) or no healthy board


class ModeManager:
    def __init__(self, cfg: ModeConfig, events: EventLog) -> None:
        self.cfg = cfg
        self.events = events
        self.mode = BOOT
        self.since_ns = 0
        self.safe_latched = False  # set by FDIR; SAFE is left only by command
        self._low_rate_since: int | None = None
        self.transitions = 0

    # --- guarded transition ----------------------------------------------------------
    def request(self, t_ns: int, to: str, reason: str, cause: str, inp: ModeInputs | None = None) -> bool:
        """Try ``mode -> to``. Returns True on transition; emits an event either way."""
        if to not in MODE_NAMES:
            self.events.emit(t_ns, "mode_refused", frm=self.mode, to=to, cause=f"unknown mode {to!r}")
            return False
        if to == self.mode:
            return True
        refusal = self._guard(to, reason, inp or ModeInputs())
        if refusal:
            self.events.emit(t_ns, "mode_refused", frm=self.mode, to=to, reason=reason, cause=refusal)
            return False
        self.events.emit(t_ns, "mode_transition", frm=self.mode, to=to, reason=reason, cause=cause)
        self.mode = to
        self.since_ns = t_ns
        self.transitions += 1
        self.safe_latched = to == SAFE
        self._low_rate_since = None
        return True

    def _guard(self, to: str, reason: str, inp: ModeInputs) -> str:
        frm = self.mode
        if (frm, to) not in _ALLOWED:
            return f"{frm} -> {to} is not a transition"
        if frm == SAFE and reason != "commanded":
            return "SAFE is left only by command"
        if to == COMPUTE:
            if inp.soc < self.cfg.compute_min_soc:
                return f"soc {inp.soc:.3f} < {self.cfg.compute_min_soc}"
            if inp.payload_blocked:
                return "payload blocked (no healthy board or FDIR latch)"
            if inp.pointing_error_rad > self.cfg.compute_max_point_err_rad:
                return f"pointing error {inp.pointing_error_rad:.3f} rad too large"
        if to == SUN_POINT and frm == SAFE and inp.rate_norm_rad_s > self.cfg.rate_low_rad_s:
            return f"body rate {inp.rate_norm_rad_s:.4f} rad/s too high"
        return ""

    # --- autonomous logic, once per 1 Hz frame --------------------------------------
    def update(self, t_ns: int, inp: ModeInputs) -> None:
        c = self.cfg
        m = self.mode
        if m == BOOT:
            self.request(t_ns, DETUMBLE, "autonomous", "boot complete", inp)
        elif m == DETUMBLE:
            if inp.rate_norm_rad_s < c.rate_low_rad_s:
                if self._low_rate_since is None:
                    self._low_rate_since = t_ns
                elif t_ns - self._low_rate_since >= int(c.rate_persist_s * 1e9):
                    self.request(t_ns, SUN_POINT, "autonomous", "rates damped", inp)
            else:
                self._low_rate_since = None
        elif m == SUN_POINT:
            if inp.rate_norm_rad_s > c.rate_high_rad_s:
                self.request(t_ns, DETUMBLE, "autonomous", f"rate {inp.rate_norm_rad_s:.3f} rad/s", inp)
            elif c.auto_compute and self._compute_ok(inp):
                self.request(t_ns, COMPUTE, "autonomous", "energy and pointing allow compute", inp)
        elif m == COMPUTE:
            if inp.rate_norm_rad_s > c.rate_high_rad_s:
                self.request(t_ns, DETUMBLE, "autonomous", f"rate {inp.rate_norm_rad_s:.3f} rad/s", inp)
            elif inp.soc < c.compute_exit_soc:
                self.request(t_ns, SUN_POINT, "autonomous", f"soc {inp.soc:.3f} < {c.compute_exit_soc}", inp)
            elif inp.payload_blocked:
                self.request(t_ns, SUN_POINT, "autonomous", "payload blocked", inp)

    def _compute_ok(self, inp: ModeInputs) -> bool:
        c = self.cfg
        return (
            inp.soc >= c.compute_min_soc
            and not inp.payload_blocked
            and inp.pointing_error_rad <= c.compute_max_point_err_rad
        )
