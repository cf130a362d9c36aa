"""``hil orbit eclipses`` and ``hil orbit track``: plan a bench session around an orbit."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys

import numpy as np

from hil_rig.cli import UsageError
from hil_rig.clock import iso_ms, parse_iso, unix_ns
from hil_rig.constants import NS_PER_S
from hil_rig.eclipse import beta_angle_rad, find_contacts_ns, illumination
from hil_rig.orbit import Orbit, OrbitError
from hil_rig.sun import sun_teme_m

MAX_HOURS = 24.0 * 366


def _orbit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("orbit (a TLE, or elements)")
    g.add_argument("--tle", metavar="FILE", help="2- or 3-line TLE file")
    g.add_argument("--alt", metavar="KM", type=float, help="circular altitude, km")
    g.add_argument("--inc", metavar="DEG|sso", help="inclination in degrees, or 'sso'")
    g.add_argument("--ltan", metavar="HH:MM", help="local mean time of the ascending node")
    g.add_argument("--raan", metavar="DEG", type=float, help="right ascension of the ascending node (TEME)")
    g.add_argument("--epoch", metavar="ISO", help="epoch of the elements (UTC)")
    p.add_argument("--start", metavar="ISO", required=True, help="window start (UTC)")
    p.add_argument("--hours", metavar="H", type=float, required=True, help="window length, hours")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")


def register(subparsers) -> None:
    orbit = subparsers.add_parser("orbit", help="eclipse times and ground-truth tracks for an orbit")
    sub = orbit.add_subparsers(dest="orbit_command", metavar="SUBCOMMAND")
    orbit.set_defaults(func=lambda a: (orbit.print_usage(sys.stderr), 2)[1])
    ec = sub.add_parser("eclipses", help="eclipse contacts (penumbra and umbra) in a window")
    _orbit_options(ec)
    ec.set_defaults(func=cmd_eclipses)
    tr = sub.add_parser("track", help="satellite, Sun, illumination and beta angle at a fixed step")
    _orbit_options(tr)
    tr.add_argument("--step", metavar="S", type=float, required=True, help="sample step, seconds")
    tr.set_defaults(func=cmd_track)


def _time(text: str, option: str) -> _dt.datetime:
    try:
        return parse_iso(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: not an ISO-8601 time (e.g. 2024-03-20T00:00:00Z)") from None


def _orbit(a: argparse.Namespace) -> Orbit:
    elements = [a.alt, a.inc, a.ltan, a.raan, a.epoch]
    try:
        if a.tle is not None:
            if any(x is not None for x in elements):
                raise UsageError("give either --tle or elements (--alt --inc --ltan|--raan --epoch), not both")
            return Orbit.from_tle(a.tle)
        if a.alt is None or a.inc is None or a.epoch is None:
            raise UsageError("give --tle FILE, or --alt KM --inc DEG|sso (--ltan HH:MM | --raan DEG) --epoch ISO")
        if (a.ltan is None) == (a.raan is None):
            raise UsageError("give exactly one of --ltan HH:MM or --raan DEG")
        inc: float | str
        if a.inc.strip().lower() == "sso":
            inc = "sso"
        else:
            try:
                inc = float(a.inc)
            except ValueError:
                raise UsageError(f"--inc {a.inc!r}: expected degrees or 'sso'") from None
        return Orbit.from_elements(alt_km=a.alt, inc_deg=inc, ltan=a.ltan, raan_deg=a.raan,
                                   epoch=_time(a.epoch, "--epoch"))
    except OrbitError as exc:
        raise UsageError(str(exc)) from None


def _window(a: argparse.Namespace) -> tuple[int, int]:
    if not (math.isfinite(a.hours) and 0 < a.hours <= MAX_HOURS):
        raise UsageError(f"--hours {a.hours}: must be > 0 and at most {MAX_HOURS:.0f}")
    start = unix_ns(_time(a.start, "--start"))
    return start, start + int(round(a.hours * 3600 * NS_PER_S))


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:9.3f}"


def cmd_eclipses(a: argparse.Namespace) -> int:
    orbit = _orbit(a)
    t0, t1 = _window(a)
    try:
        eclipses = find_contacts_ns(orbit, t0, t1)
    except OrbitError as exc:
        raise UsageError(str(exc)) from None
    rows = [e.to_json() for e in eclipses]
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"{orbit.name}: {len(rows)} eclipse(s) from {iso_ms(t0)} to {iso_ms(t1)} "
          f"(conical shadow, R_earth 6378.137 km; times UTC)")
    head = f"{'#':>3}  {'penumbra entry':24} {'umbra entry':24} {'umbra exit':24} {'penumbra exit':24} {'penumbra s':>10} {'umbra s':>9}"
    print(head)
    for i, r in enumerate(rows, 1):
        cells = [r[k] or "-" for k in ("penumbra_entry", "umbra_entry", "umbra_exit", "penumbra_exit")]
        print(f"{i:>3}  " + " ".join(f"{c:24}" for c in cells)
              + f" {_fmt_s(r['penumbra_s']):>10} {_fmt_s(r['umbra_s']):>9}")
    return 0


def cmd_track(a: argparse.Namespace) -> int:
    orbit = _orbit(a)
    t0, t1 = _window(a)
    if not (math.isfinite(a.step) and a.step > 0):
        raise UsageError(f"--step {a.step}: must be > 0 seconds")
    step_ns = int(round(a.step * NS_PER_S))
    n = (t1 - t0) // step_ns + 1
    if n > 2_000_000:
        raise UsageError(f"--step {a.step}: {n} samples is too many (at most 2,000,000)")
    t = t0 + np.arange(n, dtype=np.int64) * step_ns
    try:
        r, v = orbit.propagate(t)
    except OrbitError as exc:
        raise UsageError(str(exc)) from None
    sun = sun_teme_m(t)
    illum = illumination(r, sun)
    beta = np.degrees(beta_angle_rad(r, v, sun))
    if a.json:
        out = [
            {"t": iso_ms(int(t[i])), "illumination": round(float(illum[i]), 6),
             "beta_deg": round(float(beta[i]), 4), "frame": "TEME",
             "sat_teme_km": [round(float(x), 4) for x in r[i] / 1e3],
             "sat_vel_teme_km_s": [round(float(x), 6) for x in v[i] / 1e3],
             "sun_teme_km": [round(float(x), 1) for x in sun[i] / 1e3]}
            for i in range(n)
        ]
        print(json.dumps(out))
        return 0
    print(f"{orbit.name}: {n} samples, step {a.step:g} s; vectors in TEME, km")
    print(f"{'t (UTC)':24} {'illum':>6} {'beta deg':>8}  {'sat x':>10} {'sat y':>10} {'sat z':>10}")
    for i in range(n):
        x, y, z = r[i] / 1e3
        print(f"{iso_ms(int(t[i])):24} {illum[i]:6.3f} {beta[i]:8.3f}  {x:10.2f} {y:10.2f} {z:10.2f}")
    return 0
