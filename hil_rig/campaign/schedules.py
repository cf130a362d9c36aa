"""Fault schedules as hypothesis strategies over a campaign's fault space.

A schedule is a list of ``[[fault]]`` tables, exactly as a scenario file holds them
(``{"kind": "relay_off", "at": "eclipse_entry 1 + 30 s", "duration": "12 s", "board": "rpi0"}``).
Everything is drawn from hypothesis primitives (``lists``, ``sampled_from``,
``integers``, ``floats``), so that hypothesis's own shrinker makes a failing schedule
smaller: fewer faults, earlier kinds and targets in the campaign file's order, offsets
toward 0, shorter durations, parameters toward their range's low end.

How the campaign drives hypothesis, through its public API only (``@given``,
``@settings``, ``@seed``): see :func:`generate` and ``engine.Campaign.shrink``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st

from hil_rig.campaign.spec import CampaignSpec, FaultSpace, TriggerRange

Schedule = list[dict[str, Any]]


def trigger_text(tr: TriggerRange, offset_s: int) -> str:
    if tr.event == "t":
        return f"{offset_s} s"
    sign = "+" if offset_s >= 0 else "-"
    return f"{tr.event} {tr.index} {sign} {abs(offset_s)} s"


def _toward_zero(lo: int, hi: int) -> st.SearchStrategy[int]:
    # integers() shrinks toward 0 when 0 is inside the range, else toward the bound nearest it
    return st.integers(min_value=lo, max_value=hi)


@st.composite
def fault_table(draw: Callable[..., Any], space: FaultSpace) -> dict[str, Any]:
    tr = draw(st.sampled_from(space.at))
    out: dict[str, Any] = {"kind": space.kind, "at": trigger_text(tr, draw(_toward_zero(tr.lo_s, tr.hi_s)))}
    if space.duration_s is not None:
        out["duration"] = f"{draw(st.integers(*space.duration_s))} s"
    target = draw(st.sampled_from(space.targets))
    if space.target_key is not None and target is not None:
        out[space.target_key] = target
    for key, (ptype, lo, hi) in space.params.items():
        if ptype is int:
            out[key] = draw(st.integers(int(lo), int(hi)))
        else:
            out[key] = draw(st.floats(float(lo), float(hi), allow_nan=False, allow_infinity=False))
    return out


def schedules(spec: CampaignSpec) -> st.SearchStrategy[Schedule]:
    """Schedules of ``faults_min`` to ``faults_max`` faults, each of a kind of the space
    (``one_of`` in the file's order: shrinking prefers the first kinds)."""
    one = st.one_of(*[fault_table(s) for s in spec.space])
    return st.lists(one, min_size=spec.faults_min, max_size=spec.faults_max)


def schedule_key(schedule: Schedule) -> str:
    """A schedule's identity: the same faults in the same order give the same key."""
    return hashlib.sha256(json.dumps(schedule, sort_keys=True).encode()).hexdigest()[:16]


def hypothesis_settings(spec: CampaignSpec, phases: list[Phase]) -> settings:
    """One settings object for generating and for shrinking, so that the generate phase
    draws the same examples in the same order both times: no example database (the
    campaign's results file is its memory), no deadline and no health checks (an example
    is a run on a cluster), quiet."""
    # parent: hypothesis's own defaults, never the loaded profile (a profile with
    # derandomize=True would seed each test function by its name, and the shrink's generate
    # phase would no longer draw the campaign's examples)
    return settings(parent=settings.get_profile("default"), derandomize=False,
                    database=None, max_examples=spec.examples, phases=phases, deadline=None,
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    print_blob=False, report_multiple_bugs=False)


def generate(spec: CampaignSpec) -> list[Schedule]:
    """The campaign's schedules: hypothesis's generate phase of a ``@given`` test that
    records each example, seeded with the campaign's seed, so the list is the same on
    every call; duplicates dropped, first occurrence kept."""
    drawn: list[Schedule] = []

    @hypothesis_settings(spec, [Phase.generate])
    @seed(spec.seed)
    @given(schedules(spec))
    def collect(schedule: Schedule) -> None:
        drawn.append(schedule)

    collect()
    seen: set[str] = set()
    out = []
    for s in drawn:
        k = schedule_key(s)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return out
