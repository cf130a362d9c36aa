"""What each fault kind does to the bench or the plant: one function per kind,
keyed by the kind names of the scenario's fault table (``hil_rig.scenario.FAULT_KINDS``).

Adding a fault kind means one row there (its parameters) and one function here.
Each handler gets the run's parts and the action (``phase`` ``start`` or ``end``).
A fault the bench cannot deliver is a :class:`RunError` naming the board and the
reason, never a flight-software failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hil_rig.faults import FaultAction
from hil_rig.run.errors import RunError
from hil_rig.scenario import FAULT_KINDS

if TYPE_CHECKING:
    from hil_rig.run.builder import RunParts

Handler = Callable[["RunParts", FaultAction], None]


def target_board(parts: RunParts, a: FaultAction) -> str:
    """A board fault without a board goes to the first board of the run."""
    return a.target or next(iter(parts.boards))


# ---- link (the board's fault proxy) ------------------------------------------------
def _proxy(parts: RunParts, a: FaultAction) -> Any:
    name = target_board(parts, a)
    parts.quiesce([name])
    return parts.proxies[name]


def link_noise(parts: RunParts, a: FaultAction) -> None:
    _proxy(parts, a).set_faults(corrupt=float(a.param("byte_error_rate")) if a.phase == "start" else 0.0)


def link_drop(parts: RunParts, a: FaultAction) -> None:
    _proxy(parts, a).set_faults(drop=float(a.param("byte_drop_rate")) if a.phase == "start" else 0.0)


def link_disconnect(parts: RunParts, a: FaultAction) -> None:
    px = _proxy(parts, a)
    px.unplug() if a.phase == "start" else px.replug()


# ---- power (relay board, programmable supply) --------------------------------------
def relay_off(parts: RunParts, a: FaultAction) -> None:
    name = target_board(parts, a)
    ch = parts.board_specs[name].channel
    if ch is None or parts.switch is None:
        raise RunError(f"fault relay_off: board {name} has no relay channel on this bench")
    parts.power.switch_channel(ch, a.phase != "start", cause=a.describe())


def brownout(parts: RunParts, a: FaultAction) -> None:
    """The supply that feeds the board sags to ``voltage_v`` (0: output off); every
    board it feeds below its minimum voltage loses power. At the end the power loop
    takes the supply back to the simulated bus voltage."""
    supply = parts.board_specs[target_board(parts, a)].supply
    parts.quiesce(parts.power.fed_by(supply))
    if a.phase == "start":  # the supply sags first; then the boards it no longer carries go down
        volts = float(a.param("voltage_v", 0.0))
        parts.payload_power_w = max(parts.power_loop.update(volts, volts > 0).power_w, 0.0)
        parts.power.brown_out(supply, volts)
    else:
        ps = parts.power_loop.update(float(parts.plant.battery_v), parts.plant.soc > 0.0)
        parts.payload_power_w = max(ps.power_w, 0.0)
        parts.power.restore(supply)


# ---- payload (the board agent's inject commands, test mode) -------------------------
def payload_hang(parts: RunParts, a: FaultAction) -> None:
    if a.phase == "start":
        parts.injections.hang(target_board(parts, a))


def seu(parts: RunParts, a: FaultAction) -> None:
    if a.phase == "start":
        parts.injections.seu(target_board(parts, a), int(a.param("count", 1)))


# ---- sensors, wheels, environment (plant inputs) -------------------------------------
_SENSOR_KEYS = {"sun": "css", "gyro": "gyro", "mag": "mag"}


def _sensor(parts: RunParts, a: FaultAction, what: str) -> None:
    key = _SENSOR_KEYS[a.target or "sun"]
    if key == "css":
        what = "dead"  # the sun sensors read nothing or everything: stuck is dead for them
    parts.plant_faults = dataclasses.replace(parts.plant_faults, **{f"{key}_{what}": a.phase == "start"})


def sensor_stuck(parts: RunParts, a: FaultAction) -> None:
    _sensor(parts, a, "stuck")


def sensor_dead(parts: RunParts, a: FaultAction) -> None:
    _sensor(parts, a, "dead")


def sensor_bias(parts: RunParts, a: FaultAction) -> None:
    key = _SENSOR_KEYS[a.target or "sun"]
    if key == "css":
        raise RunError("fault sensor_bias: the sun sensors take no bias; use stuck or dead")
    b = float(a.param("bias")) if a.phase == "start" else 0.0
    field = "gyro_bias_rad_s" if key == "gyro" else "mag_bias_t"
    parts.plant_faults = dataclasses.replace(parts.plant_faults, **{field: (b, b, b)})


def wheel_stuck(parts: RunParts, a: FaultAction) -> None:
    ws = list(parts.plant_faults.wheel_stuck)
    ws["xyz".index(a.target or "x")] = a.phase == "start"
    parts.plant_faults = dataclasses.replace(parts.plant_faults, wheel_stuck=tuple(ws))


def hot_case(parts: RunParts, a: FaultAction) -> None:
    factor = float(a.param("heat_load_factor", 1.5)) if a.phase == "start" else 1.0
    parts.plant_faults = dataclasses.replace(parts.plant_faults, hot_case=factor)


#: fault kind -> its handler; the keys are exactly the scenario's fault kinds (checked below)
HANDLERS: dict[str, Handler] = {
    "link_noise": link_noise, "link_drop": link_drop, "link_disconnect": link_disconnect,
    "relay_off": relay_off, "brownout": brownout,
    "payload_hang": payload_hang, "seu": seu,
    "sensor_stuck": sensor_stuck, "sensor_dead": sensor_dead, "sensor_bias": sensor_bias,
    "wheel_stuck": wheel_stuck, "hot_case": hot_case,
}
#: fault kinds aimed at a payload board (the others aim at a sensor, a wheel or nothing)
BOARD_FAULTS = tuple(k for k, (domain, _) in FAULT_KINDS.items() if domain == "board")
#: fault kinds on a board's link (its fault proxy)
LINK_FAULTS = ("link_noise", "link_drop", "link_disconnect")
#: fault kinds that go through the board agent's inject commands (its test mode)
AGENT_FAULTS = ("payload_hang", "seu")


def apply(parts: RunParts, a: FaultAction) -> None:
    """Record the action, then hand it to its kind's handler."""
    parts.recorder.event(parts.clock.t_ns, "fault", f"{a.kind}_{a.phase}", a.describe())
    HANDLERS[a.kind](parts, a)


class Injections:
    """Hangs and SEUs waiting to reach a board's agent: a hang waits for its board to
    be up, an SEU for a running job on it. Tried once per simulated second; a board
    that refuses an injection at acceptance (not in test mode, say) ends the run with
    the reason; no reply, or a failure to execute now, is tried again next second."""

    def __init__(self) -> None:
        self.hangs: list[str] = []
        self.seus: list[tuple[str, int]] = []

    def hang(self, board: str) -> None:
        self.hangs.append(board)

    def seu(self, board: str, count: int) -> None:
        self.seus.append((board, count))

    def retry(self, parts: RunParts, t: int) -> None:
        if not self.hangs and not self.seus:  # (every simulated second: the common case)
            return
        from firmware_bridge.link import CommandRejected, LinkError

        ev = parts.recorder.event
        for name in list(self.hangs):
            if not parts.power.is_up(name):
                continue
            parts.quiesce([name])  # what is in flight lands first (a checkpoint before the hang)
            try:
                parts.links[name].inject_hang(0.0)
            except CommandRejected as exc:  # not in test mode, say: it never will be
                raise RunError(f"fault payload_hang: board {name} refused the injection: {exc}") from None
            except LinkError as exc:  # no reply, or it could not execute now: try again next second
                ev(t, "fault", "inject_retry", f"{name}: {exc}")
                continue
            ev(t, "fault", "payload_hang_injected", f"{name} hangs until power-cycled")
            self.hangs.remove(name)
        for item in list(self.seus):
            name, left = item
            b = parts.fsw.payload.boards.get(name)
            job = b.run[1] if b is not None and b.run else None
            if job is None or job.state != "running" or not parts.power.is_up(name):
                continue
            parts.quiesce([name])
            try:
                parts.links[name].inject_seu(int(job.remote_id))
            except CommandRejected as exc:
                raise RunError(f"fault seu: board {name} refused the injection: {exc}") from None
            except LinkError as exc:
                ev(t, "fault", "inject_retry", f"{name}: {exc}")
                continue
            ev(t, "fault", "seu_injected", f"{name} job {job.remote_id}")
            self.seus.remove(item)
            if left > 1:
                self.seus.append((name, left - 1))

if set(HANDLERS) != set(FAULT_KINDS):  # pragma: no cover - a kind added in one place only
    raise ImportError(f"fault kinds without a handler: {sorted(set(FAULT_KINDS) - set(HANDLERS))}; "
                      f"handlers without a kind: {sorted(set(HANDLERS) - set(FAULT_KINDS))}")
