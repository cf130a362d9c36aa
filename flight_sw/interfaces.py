"""Hardware interfaces of the flight software.

Flight code sees the spacecraft only through these small protocols. The rig
(``hil_rig``) implements them with its simulated plant and its real or virtual
instruments; the tests implement them with a hand-written fake plant. Nothing
here knows that a rig exists.

Units are SI, frames are named: ``omega_body_rad_s`` is the body rate in the
body frame, ``b_body_t`` the magnetic field in the body frame (tesla),
``sun_body`` a unit vector to the sun in the body frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from firmware_bridge.commands import link_protocol


class Clock(Protocol):
    """Simulation time: integer nanoseconds since the scenario epoch."""

    def now_ns(self) -> int: ...


@dataclass
class SensorFrame:
    """One sample of every spacecraft sensor, read at the start of a frame.

    ``sun_valid`` is False when no sun sensor sees the sun (eclipse, or the sun
    outside every sensor's field of view). ``load_power_w`` is the bus load
    without the payload boards (the payload manager measures those itself, and
    the C EPS budget is for the payload on top of the bus). ``battery_i_a`` is
    positive when charging. ``temps_k`` holds the thermal zones
    by name (for example ``"battery"``, ``"payload.jetson0"``, ``"radiator"``).
    """

    t_ns: int
    omega_body_rad_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    b_body_t: tuple[float, float, float] = (2e-5, 0.0, 0.0)
    sun_body: tuple[float, float, float] = (1.0, 0.0, 0.0)
    sun_valid: bool = True
    wheel_speed_rad_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    battery_v: float = 8.0
    battery_i_a: float = 0.0  # positive = charging
    solar_power_w: float = 0.0
    load_power_w: float = 0.0
    temps_k: Mapping[str, float] = field(default_factory=dict)


class Sensors(Protocol):
    """Reads every sensor at once, at the time the clock says."""

    def read(self) -> SensorFrame: ...


@dataclass
class ActuatorCommand:
    """Commands produced by one control frame."""

    t_ns: int
    dipole_body_am2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    wheel_torque_body_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heaters: Mapping[str, bool] = field(default_factory=dict)


class Actuators(Protocol):
    """Magnetorquers, reaction wheels and heaters."""

    def apply(self, cmd: ActuatorCommand) -> None: ...


@runtime_checkable
class ControlPort(Protocol):
    """Optional: sensors and actuators reachable from C, so the C ADCS runs
    several control frames in one call (``FlightSoftware.step_frames``) instead
    of one ``Sensors.read`` / ``Actuators.apply`` round trip per frame.

    ``sense_fn`` and ``actuate_fn`` are addresses of C functions of the flight
    core's types ``ohil_adcs_sense_fn`` and ``ohil_adcs_actuate_fn``
    (``native/include/ohil_adcs.h``), ``ctx`` the address passed to them. Each
    sense reads the sensors at the next frame's time; each actuate commands the
    magnetorquers and wheels (heaters stay as last applied). At most
    ``max_frames`` frames. ``frame()`` is the reading of the last frame run, as
    ``Sensors.read`` would have returned it.
    """

    sense_fn: int
    actuate_fn: int
    ctx: int
    max_frames: int

    def frame(self) -> SensorFrame: ...


class PowerSwitch(Protocol):
    """The relay board that powers the payloads (and other switched loads).

    Channels are small integers, as in the bench file.
    """

    def set(self, channel: int, on: bool) -> None: ...

    def get(self, channel: int) -> bool: ...


PayloadLink = link_protocol("PayloadLink", __name__, """What the flight software uses of
``firmware_bridge.link.Link``: the commands marked ``flight`` in
``firmware_bridge.commands.COMMANDS``, with their signatures there (ping,
housekeeping, set_throttle, start_job, job_status, checkpoint, suspend, resume,
cancel, reboot, time_sync).

Every call may raise ``firmware_bridge.link.LinkError`` (or its subclasses
``LinkTimeout`` and ``CommandFailed``); the payload manager and FDIR treat
those as link-health evidence, never as crashes.

Optional: ``time_sync_begin(t_ns)`` sends the sync and returns an object whose
``wait()`` gives what ``time_sync`` would; with it the payload manager syncs
every board from its own thread. Optional too: ``checkpoint_begin(job_id)``,
the same for ``checkpoint`` (a periodic checkpoint in flight while the loop
runs on); ``set_throttle_begin(throttle)``, the same for ``set_throttle`` (the
boards whose throttle changes get it at once); and ``idle(until_ns)``: the
payload manager has nothing more for the board until its next frame at
``until_ns`` (a link may use the time).
""")
