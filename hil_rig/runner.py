"""The runner: one scenario on one bench, from start to verdicts (docs/running.md).

A :class:`Run` brings the house together:

- the orbit and environment of the scenario (``hil_rig.orbit``,
  ``hil_rig.environment``), its eclipses found before the run starts;
- the bench: the virtual bench when no bench file is given, or the bench file's
  real instruments and boards (``hil_rig.virtual_bench``, ``hil_rig.benchfile``);
- the spacecraft plant (``hil_rig.plant``) stepped at 10 Hz of simulation time;
- the flight software (``flight_sw.FlightSoftware``) with its C core, stepped
  through its own rate groups, talking to the boards over their serial links;
- the fault schedule (``hil_rig.faults``), the requirement judges
  (``hil_rig.requirements``) and the telemetry archive (``hil_rig.archive``).

Time: the run advances in chunks of one simulated second. Faults are applied at
their exact simulation time. At each whole second the archive gets a row and a
commit, the judges a sample, and the progress display an update. In virtual
time nothing waits; in real time × scale every second is paced by an absolute
deadline (``hil_rig.clock.RealTimeClock``).

>>> # typical use (see tests/test_run_example_bench.py)
>>> # with Run(load_scenario(find_scenario("nominal")), out="runs/x") as run:
>>> #     run.run_until("eclipse_entry + 60 s")
>>> #     assert run.history("payload_suspended").any()
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import math
import os
import pathlib
import time
from typing import Any, TextIO

import numpy as np

from hil_rig.archive import load_run
from hil_rig.faults import (
    OrbitEvents,
)
from hil_rig.requirements import Verdict
from hil_rig.scenario import NS_PER_S, Scenario

NS = NS_PER_S


class RunError(RuntimeError):
    """The run cannot start or go on: bad bench file, fault that never happens..."""


class RequirementFailed(AssertionError):
    """Raised by :meth:`RunResult.check` when a requirement failed."""


# --------------------------------------------------------------------------- bench
@dataclasses.dataclass(frozen=True)
class BenchInfo:
    """What a bench holds, read from its bench file without starting anything."""

    label: str                                   # "virtual" or the bench file path
    path: pathlib.Path | None
    boards: tuple[tuple[str, str], ...]          # (name, kind): kind is jetson | rpi | emulated
    emulates: tuple[tuple[str, str], ...]        # (name, jetson | rpi)
    instruments: tuple[tuple[str, tuple[str, ...]], ...]  # (name, kinds it answers to)
    spec: Any = dataclasses.field(default=None, repr=False, compare=False)  # benchfile.Bench

    @property
    def real_boards(self) -> tuple[str, ...]:
        return tuple(n for n, k in self.boards if k != "emulated")

    @property
    def virtual(self) -> bool:
        return not self.real_boards

    def has_board(self, kind: str) -> bool:
        """A board of this kind: ``emulated``, or ``jetson``/``rpi`` (real or emulated)."""
        return any(kind in (k, e) for (_, k), (_, e) in zip(self.boards, self.emulates, strict=True))

    def has_instrument(self, kind: str) -> bool:
        return any(kind in kinds for _, kinds in self.instruments)


def describe_bench(bench_file: str | os.PathLike[str] | None) -> BenchInfo:
    """The boards and instruments of a bench file (None: the built-in virtual bench)."""
    from hil_rig.benchfile import load_bench
    from hil_rig.instruments.errors import ConfigError

    try:
        bench = load_bench(bench_file)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    path = None if bench_file is None else pathlib.Path(bench_file)
    label = f"{bench.name!r} ({'built-in virtual bench' if path is None else path})"
    boards = tuple((b.name, b.kind) for b in bench.boards)
    emulates = tuple((b.name, b.emulates) for b in bench.boards)
    aliases = {"switch": ("relay",), "supply": ("psu",)}
    instruments = tuple(
        (i.name, tuple(sorted({i.kind, i.driver, *aliases.get(i.kind, ())}))) for i in bench.instruments)
    return BenchInfo(label, path, boards, emulates, instruments, bench)


# --------------------------------------------------------------------------- orbit
def build_orbit(sc: Scenario) -> Any:
    """The rig's orbit for a scenario (``hil_rig.orbit.Orbit``)."""
    from hil_rig.orbit import Orbit, OrbitError

    o = sc.orbit
    try:
        if o.tle is not None:
            lines = o.tle.splitlines()
            name = lines[0].strip() if len(lines) == 3 else None
            return Orbit.from_tle_lines(lines[-2], lines[-1], name=name, source=o.tle_source or "<tle>")
        ltan = None
        if o.ltan_h is not None:
            ltan = f"{int(o.ltan_h):02d}:{round((o.ltan_h % 1) * 60):02d}"
        return Orbit.from_elements(
            alt_km=o.altitude_km, inc_deg="sso" if o.sso else o.inclination_deg, epoch=sc.epoch,
            ltan=ltan, raan_deg=o.raan_deg, name=sc.name,
        )
    except OrbitError as exc:
        where = f"{sc.path or sc.name}: [orbit]"
        raise RunError(f"{where}: {exc}") from None


def tle_for_fsw(orbit: Any, epoch: _dt.datetime) -> str:
    """A TLE for the flight software's onboard predictor (uploaded at start).

    A TLE orbit is uploaded as it is. For an orbit given by elements, the rig's
    state at the epoch is fitted into SGP4 mean elements (Kozai mean motion from
    the osculating semi-major axis): the onboard knowledge then differs from the
    rig's J2 truth by a few seconds per orbit in eclipse timing, as a real
    uploaded TLE does."""
    if getattr(orbit, "_sat", None) is not None:
        from sgp4.exporter import export_tle

        l1, l2 = export_tle(orbit._sat)
        return f"{l1}\n{l2}"
    from sgp4.api import WGS72, Satrec
    from sgp4.exporter import export_tle

    from hil_rig.clock import unix_ns

    el = orbit._el
    t0 = unix_ns(epoch)
    # propagate the rig's elements to the epoch; use mean elements there
    r, v = orbit.propagate(np.array([t0]))
    mu = 398600.4418e9
    rn = float(np.linalg.norm(r[0]))
    vn = float(np.linalg.norm(v[0]))
    a = 1.0 / (2.0 / rn - vn * vn / mu)
    n_rad_min = math.sqrt(mu / a**3) * 60.0
    h = np.cross(r[0], v[0])
    inc = math.acos(h[2] / np.linalg.norm(h))
    node = np.cross([0.0, 0.0, 1.0], h)
    raan = math.atan2(node[1], node[0]) % (2 * math.pi)
    nn = node / np.linalg.norm(node)
    u = math.atan2(np.dot(np.cross(nn, r[0]), h / np.linalg.norm(h)), np.dot(nn, r[0])) % (2 * math.pi)
    jd = t0 / 86400e9 + 2440587.5
    epoch_days = jd - 2433281.5
    sat = Satrec()
    sat.sgp4init(WGS72, "i", 99999, epoch_days, 0.0, 0.0, 0.0, max(el.ecc, 1e-7), 0.0, inc,
                 u, n_rad_min, raan)
    l1, l2 = export_tle(sat)
    return f"{l1}\n{l2}"


def orbit_events(env: Any, sc: Scenario, period_s: float) -> OrbitEvents:
    duration_ns = sc.duration.to_ns(period_s)
    contacts = env.find_contacts(0, duration_ns)
    ecl = []
    for c in contacts:
        if c.umbra_entry is None and c.umbra_exit is None and (c.penumbra_entry is not None
                                                              or c.penumbra_exit is not None):
            continue  # penumbral-only pass
        ecl.append((c.umbra_entry, c.umbra_exit))
    return OrbitEvents(duration_ns, int(round(period_s * NS)), tuple(ecl))


# --------------------------------------------------------------------------- progress
class Progress:
    """Progress bar and live status line on a TTY; sparse lines otherwise."""

    def __init__(self, stream: TextIO, total_ns: int, tty: bool | None = None, every_s: float = 600.0) -> None:
        self.stream, self.total_ns = stream, max(total_ns, 1)
        self.tty = stream.isatty() if tty is None else tty
        self.every_ns = int(every_s * NS)
        self._next_line_ns = 0
        self._last_draw = 0.0

    def update(self, t_ns: int, status: dict[str, Any], force: bool = False) -> None:
        if self.tty:
            now = time.monotonic()
            if not force and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            frac = min(t_ns / self.total_ns, 1.0)
            bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
            self.stream.write(f"\r\x1b[K[{bar}] {frac * 100:5.1f}% {self._status(t_ns, status)}")
            self.stream.flush()
        elif force or t_ns >= self._next_line_ns:
            self._next_line_ns = (t_ns // self.every_ns + 1) * self.every_ns
            frac = min(t_ns / self.total_ns, 1.0)
            self.stream.write(f"hil run: {frac * 100:5.1f}% {self._status(t_ns, status)}\n")
            self.stream.flush()

    @staticmethod
    def _status(t_ns: int, s: dict[str, Any]) -> str:
        sec = t_ns // NS
        hms = f"{sec // 3600:02d}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
        boards = " ".join(f"{b}:{st}" for b, st in s.get("boards", {}).items())
        temps = "/".join(f"{c:.0f}" for c in s.get("temps_c", []))
        return (f"t={hms} orbit {s.get('orbit', 0)} {'SUN' if s.get('sunlit') else 'ECL'} "
                f"soc {s.get('soc', float('nan')):.2f} T {temps}°C {s.get('mode', '')} "
                f"{boards} jobs {s.get('jobs', 0)}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- result
@dataclasses.dataclass
class RunResult:
    run_dir: pathlib.Path
    passed: bool
    verdicts: list[Verdict]
    summary: dict[str, Any]
    aborted: str | None = None

    @property
    def exit_code(self) -> int:
        if self.aborted == "SIGTERM":
            return 143
        if self.aborted:
            return 130 if self.aborted == "interrupted" else 1
        return 0 if self.passed else 1

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    def check(self) -> RunResult:
        """Raise :class:`RequirementFailed` naming failed requirements and the run directory."""
        if not self.passed:
            lines = [f"  {v.name}: {v.detail}" for v in self.failures()]
            if self.aborted:
                lines.append(f"  run aborted: {self.aborted}")
            raise RequirementFailed(
                f"scenario {self.summary.get('scenario')!r} failed; run directory: {self.run_dir}\n"
                + "\n".join(lines))
        return self

    def load(self) -> Any:
        return load_run(self.run_dir)


def default_out_dir(sc: Scenario, base: pathlib.Path | None = None) -> pathlib.Path:
    base = base or pathlib.Path("runs")
    n = 0
    while (base / f"{sc.name}-{sc.seed}-{n}").exists():
        n += 1
    return base / f"{sc.name}-{sc.seed}-{n}"


def scenario_digest(sc: Scenario) -> str:
    if sc.path is not None and sc.path.exists():
        return hashlib.sha256(sc.path.read_bytes()).hexdigest()
    return hashlib.sha256(repr(sc).encode()).hexdigest()
