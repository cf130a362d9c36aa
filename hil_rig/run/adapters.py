"""The flight software's hardware, as the rig provides it (flight_sw/interfaces.py):
its clock, sensors and actuators over the simulated plant, and each board's link
as the flight software sees it. The relay board (``PowerSwitch``) is
:class:`hil_rig.run.board_power.BoardPower`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firmware_bridge.commands import COMMANDS

#: battery heater power when the flight software switches it on
HEATER_W = 10.0


class SimClock:
    """The run's simulation time, as the flight software reads it (``Clock``)."""

    def __init__(self) -> None:
        self.t_ns = 0

    def now_ns(self) -> int:
        return self.t_ns


class PlantSensors:
    """flight_sw ``Sensors`` over the plant's seeded sensor models."""

    def __init__(self, plant: Any, clock: SimClock, faults: Callable[[], Any],
                 load_power_w: Callable[[], float]) -> None:
        self.plant, self.clock = plant, clock
        self._faults, self._load_power_w = faults, load_power_w

    def read(self) -> Any:
        return self.frame(self.plant.sensors(self._faults()), self.clock.t_ns)

    def frame(self, r: Any, t_ns: int) -> Any:
        from flight_sw.interfaces import SensorFrame

        return SensorFrame(
            t_ns=t_ns, omega_body_rad_s=r.gyro_rad_s, b_body_t=r.mag_body_t,
            sun_body=r.sun_body, sun_valid=r.sun_valid, wheel_speed_rad_s=r.wheel_speed_rad_s,
            battery_v=r.battery_v, battery_i_a=r.battery_a, solar_power_w=r.solar_power_w,
            load_power_w=self._load_power_w(), temps_k=r.temps_k,  # a fresh dict per reading
        )


class PlantControlPort:
    """flight_sw ``ControlPort`` over the plant's C sensor/actuator port
    (``hil_rig.plant.PlantPort``): the flight software's C ADCS steps the plant and
    reads its sensors without coming back to Python between frames."""

    def __init__(self, sensors: PlantSensors, port: Any, t0_ns: int) -> None:
        self.sensors, self.port, self.t0_ns = sensors, port, t0_ns
        self.sense_fn, self.actuate_fn, self.ctx = port.sense_fn, port.actuate_fn, port.ctx
        self.max_frames = port.max_frames

    def frame(self) -> Any:
        plant = self.sensors.plant
        t = self.t0_ns + plant.port_frames() * self.port.dt_ns
        return self.sensors.frame(plant.port_readings(), t)


class PlantActuators:
    """flight_sw ``Actuators``: each command becomes the plant's next actuator input."""

    def __init__(self, on_command: Callable[[Any], None]) -> None:
        self._on_command = on_command

    def apply(self, cmd: Any) -> None:
        from hil_rig.plant import ActuatorInputs

        self._on_command(ActuatorInputs(
            wheel_torque_nm=tuple(cmd.wheel_torque_body_nm), mtq_dipole_am2=tuple(cmd.dipole_body_am2),
            heater_w=HEATER_W if cmd.heaters.get("battery") else 0.0))


class GatedLink:
    """The board's Link, as the flight software sees it: a board that the rig
    knows to be unpowered or still booting answers nothing (an immediate
    LinkTimeout, as a real call would end, without waiting wall-clock seconds).
    Its commands are the flight software's (``firmware_bridge.commands``,
    ``flight``), made below from that table."""

    def __init__(self, board: str, link: Any, is_up: Callable[[str], bool]) -> None:
        self._board, self._link, self._is_up = board, link, is_up

    def _gate(self, command: str) -> Any:
        if not self._is_up(self._board):
            from firmware_bridge.link import LinkTimeout

            raise LinkTimeout(f"{self._board}.{command} (board unpowered)", 1, 0.0)
        return self._link

    def idle(self, until_ns: int) -> None:
        if self._is_up(self._board):  # (a notice, not a command: nothing to answer)
            self._link.idle(until_ns)

    def __getattr__(self, name: str) -> Any:  # board_info, inject_*, stats, ...
        return getattr(self._link, name)


def _gated(command: str, method: str) -> Callable[..., Any]:
    def call(self: GatedLink, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._gate(command), method)(*args, **kwargs)

    call.__name__ = call.__qualname__ = method
    return call


for _cmd in COMMANDS:
    if _cmd.flight:
        for _method in _cmd.names:
            setattr(GatedLink, _method, _gated(_cmd.name, _method))
