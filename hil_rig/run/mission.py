"""What a scenario says about the spacecraft and its orbit, made into the rig's
parts: the orbit, the orbit's events (eclipses, period), the plant's parameters."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

import numpy as np

from hil_rig.constants import NS_PER_S, ZERO_CELSIUS_K
from hil_rig.faults import OrbitEvents
from hil_rig.run.errors import RunError
from hil_rig.scenario import Scenario


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
            ltan=ltan, raan_deg=o.raan_deg, mean_anomaly_deg=o.mean_anomaly_deg, name=sc.name,
        )
    except OrbitError as exc:
        where = f"{sc.path or sc.name}: [orbit]"
        raise RunError(f"{where}: {exc}") from None


def tle_for_fsw(orbit: Any, epoch: _dt.datetime) -> str:
    """A TLE for the flight software's onboard predictor (uploaded at start);
    see ``Orbit.onboard_tle``."""
    l1, l2 = orbit.onboard_tle(epoch)
    return f"{l1}\n{l2}"


def orbit_events(env: Any, sc: Scenario, period_s: float) -> OrbitEvents:
    """The eclipses (umbra intervals) and the period that triggers resolve against."""
    duration_ns = sc.duration.to_ns(period_s)
    contacts = env.find_contacts(0, duration_ns)
    ecl = []
    for c in contacts:
        if c.umbra_entry is None and c.umbra_exit is None and (c.penumbra_entry is not None
                                                              or c.penumbra_exit is not None):
            continue  # penumbral-only pass
        ecl.append((c.umbra_entry, c.umbra_exit))
    return OrbitEvents(duration_ns, int(round(period_s * NS_PER_S)), tuple(ecl))


def plant_params(sc: Scenario) -> Any:
    """The plant's parameters (``hil_rig.plant.PlantParams``) for a scenario's spacecraft."""
    from hil_rig.plant import Panel, PlantParams

    c = sc.spacecraft
    base = PlantParams()
    panels = (Panel(base.panels[0].normal_body, c.array_area_m2), *base.panels[1:])
    t0 = c.temp_initial_c + ZERO_CELSIUS_K
    return dataclasses.replace(
        base, battery_capacity_wh=c.battery_capacity_wh, soc0=c.soc_initial, panels=panels,
        solar_efficiency=c.array_efficiency, bus_base_w=c.bus_load_w, temps0_k=(t0, t0, t0, t0))


def battery_v0(params: Any) -> float:
    """The battery's open-circuit voltage at its initial state of charge."""
    return float(np.interp(params.soc0, params.battery_ocv_soc, params.battery_ocv_v))
