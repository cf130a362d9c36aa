"""The flight software: every part wired to the hardware interfaces.

See docs/flight_sw/README.md for the contract the runner depends on.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import native
from flight_sw.dictionary import (
    ACK_ACCEPTANCE,
    ACK_COMPLETION,
    ACK_START,
    BOARD_STATES,
    COMMAND_BY_NAME,
    MODE_NAMES,
    DictionaryError,
    TmCodec,
    board_channel_names,
    check_args,
)
from flight_sw.events import EventLog
from flight_sw.executive import NS, RATE_GROUPS, Component, Executive
from flight_sw.fdir import SPACECRAFT, Fdir, MonitorDef
from flight_sw.ground import GroundPort
from flight_sw.interfaces import (
    ActuatorCommand,
    Actuators,
    Clock,
    ControlPort,
    PayloadLink,
    PowerSwitch,
    SensorFrame,
    Sensors,
)
from flight_sw.modes import COMPUTE, SAFE, ModeConfig, ModeInputs, ModeManager
from flight_sw.orbit import EclipsePredictor, EclipseWindow, TleError, epoch_tuple, sun_teme_unit
from flight_sw.payload import BoardConfig, PayloadManager, fdir_sample_names, sun_budget_w
from flight_sw.tc import SPI_GROUND, SPI_ONBOARD, TcRejected, TcVerifier

# Earth's field: a centred dipole, IGRF-2020 axis and strength (flight-side model)
_B0_T = 3.12e-5
_DIPOLE_COLAT = math.radians(9.41)
_DIPOLE_LON = math.radians(-72.63)
_SIN_COLAT, _COS_COLAT = math.sin(_DIPOLE_COLAT), math.cos(_DIPOLE_COLAT)
_RE_M = 6378137.0

_NAN = float("nan")
EPS_FLOOR_MARGIN = 0.03  # the EPS budget's SOC floor above battery_min_soc ...
EPS_COMPUTE_RESERVE = 0.01  # ... and above the SOC at which the modes leave COMPUTE
#: the EPS budget's margin: 1, the reserve is in the floor (the C core's 0.9 cut the whole
#: payload's draw, idle included, by a tenth: on eclipse_stress most of what ran above idle)
EPS_BUDGET_MARGIN = 1.0
EPS_BUS_MEDIAN_N = 5  # the bus load the EPS budget plans with: the median of this many frames
ENERGY_HOLD_MIN_S = 120.0  # a payload suspended for energy stays suspended at least this long
_ADCS_MODE = {"BOOT": 0, "DETUMBLE": 0, "SAFE": 1, "SUN_POINT": 1, "COMPUTE": 1}


class CommandError(ValueError):
    """A command refused by the in-process API: unknown, bad arguments, or failed."""


@dataclass
class FswConfig:
    epoch_utc: str = "2026-03-20T12:00:00Z"
    boards: list[BoardConfig] = field(default_factory=list)
    adcs: dict = field(default_factory=dict)  # overrides of native.default_adcs_config()
    eps: dict = field(default_factory=dict)
    thermal: dict = field(default_factory=dict)
    thermal_zones: list[str] = field(default_factory=lambda: ["battery", "obc", "propulsion", "payload_plate"])
    modes: ModeConfig = field(default_factory=ModeConfig)
    fdir_step_persistence: int = 5
    fdir_clear_persistence: int = 10
    eclipse_lead_s: float = 120.0  # suspend this long before a predicted eclipse
    min_run_fraction: float = 0.1  # payload is worth running only above this throttle
    default_eclipse_s: float = 2160.0  # assumed when no TLE is loaded
    ground_port: int | None = None  # None: no TCP port; 0: an ephemeral loopback port
    #: how many 1 Hz housekeeping records ``hk_records`` keeps, the newest last; None: every
    #: one (a flight software on its own). The rig keeps the last minute: its archive has them all.
    hk_history: int | None = None
    time_sync: bool = True
    checkpoint_period_s: float = 30.0
    watchdog_timeout_s: float = 3.0
    battery_min_soc: float = 0.2
    battery_temp_k: tuple[float, float] = (268.15, 318.15)
    rate_safe_rad_s: float = 0.3
    # a gyro whose three axes read bit-identical values this many control frames in a row
    # is frozen (dead or stuck: a live gyro's noise never repeats); the ADCS then gets no
    # rate (it coasts: no wheel torque) instead of closing its rate loop on the frozen
    # value, which spins the spacecraft up (issue 23's campaign). 0: no check.
    gyro_frozen_frames: int = 10
    # sun sensors: SAFE when they see no sun this long while the onboard predictor
    # says the spacecraft is in full sun (more than sun_margin_s from an eclipse)
    sun_missing_max_s: float = 120.0
    sun_margin_s: float = 60.0

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> FswConfig:
        known = {f.name for f in fields(cls)}
        bad = set(m) - known
        if bad:
            raise ValueError(f"flight software config: unknown key(s) {sorted(bad)}; known: {sorted(known)}")
        kw = dict(m)
        if "boards" in kw:
            kw["boards"] = [b if isinstance(b, BoardConfig) else BoardConfig(**b) for b in kw["boards"]]
        if "modes" in kw and isinstance(kw["modes"], Mapping):
            kw["modes"] = ModeConfig(**kw["modes"])
        return cls(**kw)


class _Fn(Component):
    def __init__(self, name: str, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.name = name
        self.run = fn  # the executive calls the function itself: no frame in between


class FlightSoftware:
    def __init__(
        self,
        config: FswConfig | Mapping[str, Any],
        clock: Clock,
        sensors: Sensors,
        actuators: Actuators,
        switches: PowerSwitch,
        payload_links: Mapping[str, PayloadLink],
        tle_text: str | None,
        key: bytes,
    ) -> None:
        self.cfg = config if isinstance(config, FswConfig) else FswConfig.from_mapping(config)
        cfg = self.cfg
        self.clock, self.sensors, self.actuators, self.switches = clock, sensors, actuators, switches
        self.events = EventLog()
        self.board_names = [b.name for b in cfg.boards]
        self.dictionary = TmCodec(self.board_names)
        self._board_channels = {n: board_channel_names(n) for n in self.board_names}
        self.adcs = native.Adcs(cfg.adcs or None)
        self._wheel_inertia = float(self.adcs.config["wheel_inertia_kgm2"])  # (the wheels' momentum in HK)
        eps = dict(cfg.eps)
        # the payload budget keeps the SOC at eclipse exit above a floor: by default
        # EPS_FLOOR_MARGIN above the battery's FDIR limit (the C core's own default,
        # 0.55, left a battery that starts half full nothing to compute with)
        eps.setdefault("soc_floor", max(cfg.battery_min_soc + EPS_FLOOR_MARGIN,
                                        cfg.modes.compute_exit_soc + EPS_COMPUTE_RESERVE))
        eps.setdefault("budget_margin", EPS_BUDGET_MARGIN)
        self.eps = native.Eps(eps)
        th = dict(cfg.thermal)
        if "heater_on_k" not in th:
            d = native.default_thermal_config()
            n = len(cfg.thermal_zones)
            for k in ("heater_on_k", "heater_off_k", "heater_power_w"):
                th[k] = (list(d[k]) * n)[:n]
        self.thermal = native.Thermal(th)
        tc = self.thermal.config
        ec = self.eps.config
        # the battery's energy from empty to full at its highest OCV (the sun budget's
        # charge owed errs high), the charge efficiency, the payload's ceiling
        self._eps_capacity_j = float(ec["capacity_ah"]) * 3600.0 * float(ec["ocv_v"][-1])
        self._eps_charge_eff = float(ec["charge_eff"])
        self._eps_payload_max_w = float(ec["payload_max_w"])
        self.modes = ModeManager(cfg.modes, self.events)
        self.payload = PayloadManager(cfg.boards, payload_links, switches, self.events,
                                      time_sync=cfg.time_sync, checkpoint_period_s=cfg.checkpoint_period_s,
                                      derate_law=(tc["derate_start_k"], tc["derate_end_k"],
                                                  tc["throttle_down_per_s"], tc["throttle_up_per_s"]))
        self.fdir = Fdir(self._monitors(), self.events, cfg.fdir_step_persistence, cfg.fdir_clear_persistence)
        self.predictor = EclipsePredictor(epoch_tuple(cfg.epoch_utc))
        self.verifier = TcVerifier(key, spis=(SPI_ONBOARD, SPI_GROUND))
        self.ground = GroundPort(port=cfg.ground_port) if cfg.ground_port is not None else None
        self._tc_queue: list[bytes] = []
        self.window: EclipseWindow | None = None
        self.sensor: SensorFrame = SensorFrame(0)
        self.throttle_cap = 1.0
        self.hk: dict[str, float] = {}
        self.hk_records: collections.deque[dict[str, float]] = collections.deque(maxlen=cfg.hk_history)
        self.tm_packets = 0
        self._heater_mask = 0
        self._last_adcs: dict[str, float] = {"pointing_error_rad": -1.0}
        self._gyro_last: tuple[float, ...] | None = None
        self._gyro_same = 0
        self.gyro_frozen = False
        self._eps_out: dict[str, float] = {"soc": float("nan"), "payload_budget_w": 0.0, "power_mode": 0}
        self._bus_w: list[float] = []  # the bus load without the payload, its last EPS_BUS_MEDIAN_N frames
        self._energy_hold_ns = 0  # when the payload was last suspended for energy
        self._therm_out: dict[str, float] = {"payload_throttle": 1.0, "trip": 0}
        self._watchdog_fired = False
        self._sun_missing_since: int | None = None
        self._heaters: tuple[int, dict[str, bool]] = (-1, {})  # (mask, heater map) of the last frame
        comps = {
            "adcs": _Fn("adcs", self._control),
            "nav": _Fn("nav", self._nav),
            "eps": _Fn("eps", self._eps_step),
            "thermal": _Fn("thermal", self._thermal_step),
            "telecommand": _Fn("telecommand", self._telecommand),
            "payload": _Fn("payload", self._payload_step),
            "fdir": _Fn("fdir", self._fdir_step),
            "modes": _Fn("modes", self._modes_step),
            "telemetry": _Fn("telemetry", self._telemetry),
            "eclipse": _Fn("eclipse", self._eclipse),
        }
        if self.ground is not None:
            self.events.listeners.append(self._downlink_event)
        self.executive = Executive(clock, comps, self.events, RATE_GROUPS,
                                   int(cfg.watchdog_timeout_s * NS), on_watchdog=self._on_watchdog)
        if tle_text:
            self._load_tle(0, tle_text)

    # --- public API -------------------------------------------------------------------
    def step_to(self, t_ns: int) -> int:
        """Run every rate-group tick with time <= ``t_ns``; returns the ticks run."""
        return self.executive.step_to(int(t_ns))

    def step_frames(self, t_ns: int, port: ControlPort) -> int:
        """Run the coming control frames up to ``t_ns`` through a C sensor/actuator
        port, in one C call (see ``interfaces.ControlPort``): the ticks that hold only
        control frames, and the control frame of the tick after them when it comes
        first there (its other groups then run at the next :meth:`step_to`, which the
        caller makes before anything else reads the tick's results). Returns how many
        frames ran (0: use :meth:`step_to`). The frames are those :meth:`step_to` would
        run, bit for bit."""
        ex = self.executive
        if self._heaters[0] != self._heater_mask:  # the heaters change: that frame goes through apply()
            return 0
        solo = ex.solo_ticks("control", int(t_ns))
        lead = ex.leads_tick("control", int(t_ns))  # the next 1 Hz tick's frame comes first in it
        n = min(solo + lead, int(port.max_frames))
        if n <= 0:
            return 0
        inp = self.adcs.inputs
        inp["dt_s"] = 0.1
        inp["mode"] = _ADCS_MODE[self.modes.mode]
        out = self.adcs.run_port(n, port.sense_fn, port.actuate_fn, port.ctx)
        self._last_adcs["pointing_error_rad"] = float(out["pointing_error_rad"])
        self.sensor = port.frame()
        # the port's last reading goes through the frozen-gyro count (a live gyro clears it)
        self._gyro_rate(self.sensor.t_ns, self.sensor.omega_body_rad_s)
        ex.components["adcs"].healthy = True
        ex.ran_solo("control", min(n, solo))
        if n > solo:  # the last frame was the control group of a tick with more to run
            ex.ran_first("control")
        return n

    def tick(self) -> None:
        self.executive.run_tick()

    def telemetry(self) -> dict[str, float]:
        return dict(self.hk)

    @property
    def mode(self) -> str:
        return self.modes.mode

    def command(self, name: str, **args: Any) -> Any:
        """In-process command API: the same dictionary and dispatch as telecommands."""
        cmd = COMMAND_BY_NAME.get(name)
        if cmd is None:
            raise CommandError(f"unknown command {name!r}; known: {sorted(COMMAND_BY_NAME)}")
        try:
            args = check_args(cmd, args)
        except DictionaryError as e:
            raise CommandError(str(e)) from None
        return self._execute(self.executive.next_tick_ns, name, args, source="api")

    def submit_tc(self, packet: bytes) -> None:
        """Queue an authenticated TC packet; it is checked and executed at the next 1 Hz frame."""
        self._tc_queue.append(bytes(packet))

    def stats(self) -> dict[str, Any]:
        s = dict(self.payload.stats)
        done = self.payload.completed
        s["payload_s_by_throttle"] = {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": v
                                      for i, v in enumerate(self.payload.payload_s_by_throttle)}
        s["energy_j_per_job"] = (sum(j.energy_j for j in done) / len(done)) if done else 0.0
        s["tc_accepted"] = self.verifier.accepted
        s["tc_rejected"] = dict(self.verifier.rejected)
        s["overruns"] = self.executive.overruns
        s["fdir_actions"] = len(self.fdir.actions)
        s["mode"] = self.modes.mode
        return s

    def close(self) -> None:
        self.payload.close()
        if self.ground is not None:
            self.ground.close()

    # --- commands ---------------------------------------------------------------------
    def _execute(self, t_ns: int, name: str, args: dict[str, Any], source: str) -> Any:
        try:
            if name == "noop":
                return None
            if name == "set_mode":
                ok = self.modes.request(t_ns, args["mode"], "commanded", f"{source}: set_mode", self._mode_inputs())
                if not ok:
                    raise CommandError(f"mode {args['mode']} refused (see mode_refused event)")
                return None
            if name == "upload_tle":
                self._load_tle(t_ns, args["tle"])
                return None
            if name == "queue_job":
                try:
                    params = json.loads(args["params"]) if args["params"] else {}
                except ValueError as e:
                    raise CommandError(f"queue_job.params: not JSON ({e})") from None
                if not isinstance(params, dict):
                    raise CommandError("queue_job.params: must be a JSON object")
                expect = str(params.pop("expect_digest", ""))
                return self.payload.queue(t_ns, args["workload"], params, args["deadline_s"], args["verify"], expect)
            if name == "cancel_job":
                self.payload.cancel(t_ns, args["job_id"])
                return None
            if name in ("isolate_board", "readmit_board"):
                b = args["board"]
                if b not in self.payload.boards:
                    raise CommandError(f"{name}: no board {b!r}; boards: {self.board_names}")
                if name == "isolate_board":
                    self.fdir.isolate(t_ns, b, f"{source} command")
                    self.payload._isolate(t_ns, self.payload.boards[b], f"{source} command")
                else:
                    self.fdir.readmit(t_ns, b, f"{source} command")
                    self.payload.apply(t_ns, b, "readmit", f"{source} command")
                return None
            if name == "set_throttle_cap":
                self.throttle_cap = args["cap"]
                return None
            if name == "fdir_enable":
                m = args["monitor"]
                if m not in self.fdir.enabled:
                    raise CommandError(f"fdir_enable: no monitor {m!r}")
                self.fdir.enabled[m] = bool(args["enable"])
                return None
        except (ValueError, TleError) as e:
            self.events.emit(t_ns, "tc_failed", command=name, source=source, error=str(e))
            if isinstance(e, CommandError):
                raise
            raise CommandError(str(e)) from None
        raise CommandError(f"no handler for {name}")  # pragma: no cover

    def _load_tle(self, t_ns: int, text: str) -> None:
        self.predictor.load_tle(text)
        self.events.emit(t_ns, "tle_loaded", satellite=self.predictor.name)
        self.window = None  # predicted from the old elements
        self._eclipse(t_ns)

    # --- components -------------------------------------------------------------------
    def _gyro_rate(self, t_ns: int, rate: tuple[float, float, float]) -> tuple[float, float, float]:
        """The rate the ADCS gets: the gyro's, or NaN (no rate: the C core flags the gyro
        and coasts) while the gyro is frozen (``gyro_frozen_frames``). The change is an
        ``fdir_trip`` / ``fdir_cleared`` event of the monitor ``adcs.gyro_frozen``."""
        w = tuple(float(x) for x in rate)
        if w == self._gyro_last:
            self._gyro_same += 1
        else:
            self._gyro_last, self._gyro_same = w, 0
        n = self.cfg.gyro_frozen_frames
        frozen = n > 0 and self._gyro_same >= n - 1
        if frozen != self.gyro_frozen:
            self.gyro_frozen = frozen
            if frozen:
                self.events.emit(t_ns, "fdir_trip", monitor="adcs.gyro_frozen", target="adcs", value=_norm3(w),
                                 lo=None, hi=None, persistence=n)
            else:
                self.events.emit(t_ns, "fdir_cleared", target="adcs", readmitted=True)
        return (math.nan, math.nan, math.nan) if frozen else w

    def _control(self, t_ns: int) -> None:
        s = self.sensor = self.sensors.read()
        inp = self.adcs.inputs
        inp["dt_s"] = 0.1
        inp["rate_rad_s"] = self._gyro_rate(t_ns, s.omega_body_rad_s)
        inp["b_body_t"] = s.b_body_t
        inp["sun_body"] = s.sun_body
        inp["sun_valid"] = 1 if s.sun_valid else 0
        inp["mode"] = _ADCS_MODE[self.modes.mode]
        inp["wheel_speed_rad_s"] = s.wheel_speed_rad_s
        out = self.adcs.step()
        self._last_adcs["pointing_error_rad"] = float(out["pointing_error_rad"])
        if self._heaters[0] != self._heater_mask:  # the mask changes at 1 Hz at most
            m = self._heater_mask
            self._heaters = (m, {z: bool(m >> i & 1) for i, z in enumerate(self.cfg.thermal_zones)})
        self.actuators.apply(ActuatorCommand(
            t_ns,
            tuple(out["dipole_cmd_am2"].tolist()),
            tuple(out["wheel_torque_cmd_nm"].tolist()),
            dict(self._heaters[1]),
        ))

    def _nav(self, t_ns: int) -> None:
        """Reference vectors for ADCS (1 Hz): sun, field and orbit in TEME."""
        jd = self.predictor.epoch_jd + self.predictor.epoch_fr + t_ns / (86400 * NS)
        inp = self.adcs.inputs
        inp["sun_eci"] = sun_teme_unit(jd)
        if self.predictor.loaded:
            r, v = self.predictor.state_teme(t_ns)
            inp["r_eci_m"] = r
            inp["v_eci_m_s"] = v
            inp["b_eci_t"] = _dipole_teme_t(r, jd)

    def _eps_step(self, t_ns: int) -> None:
        s = self.sensor
        w = self.window
        if w is None:
            tte, dur = (1e6, 0.0) if self.predictor.loaded else (0.0, self.cfg.default_eclipse_s)
        elif w.entry_ns <= t_ns:
            tte, dur = 0.0, max(0.0, (w.exit_ns - t_ns) / NS)
        else:
            tte, dur = (w.entry_ns - t_ns) / NS, w.duration_s
        self._tte, self._dur = tte, dur
        inp = self.eps.inputs
        inp["dt_s"] = 1.0
        inp["battery_voltage_v"] = s.battery_v
        inp["battery_current_a"] = s.battery_i_a
        inp["solar_power_w"] = s.solar_power_w
        # the core's budget wants the bus load without the payload (ohil_eps.h): with
        # the payload's own draw in it, the budget was short by that draw again
        # the median of the last few frames: the bus sensor and the boards' reports are
        # not read at the same instant, so a payload that changes its draw made the
        # difference jump for a frame, and the budget (and the hold) with it
        bus = max(0.0, s.load_power_w - self.payload.payload_power_w())
        recent = self._bus_w
        if bus == bus:
            recent.append(bus)
            if len(recent) > EPS_BUS_MEDIAN_N:
                del recent[0]
        inp["load_power_w"] = sorted(recent)[len(recent) // 2] if recent else bus
        inp["time_to_eclipse_s"] = tte
        inp["eclipse_duration_s"] = dur
        inp["payload_demand_w"] = self.payload.full_power_w()
        inp["load_request_mask"] = 0xFFFF
        out = self.eps.step()
        budget = float(out["payload_budget_w"])
        if w is not None and tte > 0.0 and int(out["power_mode"]) != native.PowerMode.CRITICAL:
            # in the sun: what the array carries while the battery still fills by the
            # eclipse (flight_sw.payload.sun_budget_w), where that is more
            budget = min(max(budget, sun_budget_w(s.solar_power_w, inp["load_power_w"], float(out["soc"]),
                                                  self._eps_capacity_j, self._eps_charge_eff, tte)),
                         self._eps_payload_max_w)
        self._eps_out = {"soc": float(out["soc"]), "payload_budget_w": budget,
                         "power_mode": int(out["power_mode"])}

    def _thermal_step(self, t_ns: int) -> None:
        temps = self.sensor.temps_k
        inp = self.thermal.inputs
        inp["dt_s"] = 1.0
        tz = inp["temp_k"]
        for i, z in enumerate(self.cfg.thermal_zones):
            tz[i] = temps.get(z, _NAN)
        # the plate's sensors: the core's derating and trip hold the whole payload;
        # each board derates itself on its own temperature (flight_sw.payload).
        # Without a plate sensor, the hottest board stands in for the plate.
        pt = []  # (plain loops: every frame)
        for k, v in temps.items():
            if k.startswith("payload"):
                pt.append(v)
        if not pt:
            for b in self.payload.boards.values():
                if b.temp_k == b.temp_k and b.powered:
                    pt.append(b.temp_k)
        inp["payload_temp_k"] = max(pt) if pt else _NAN
        out = self.thermal.step()
        self._heater_mask = int(out["heater_mask"])
        self._therm_out = {"payload_throttle": float(out["payload_throttle"]), "trip": int(out["trip"])}

    def _telecommand(self, t_ns: int) -> None:
        pkts = self._tc_queue
        self._tc_queue = []
        if self.ground is not None:
            pkts += self.ground.drain()
        for p in pkts:
            try:
                tc = self.verifier.verify(p)
            except TcRejected as e:
                self.events.emit(t_ns, "tc_rejected", reason=e.reason, detail=e.detail[:120], length=len(p))
                if e.request is not None:  # authentic: an acceptance failure report, asked or not
                    self._verification(t_ns, 2, *e.request, reason=f"{e.reason}: {e.detail}"[:200])
                continue
            self.events.emit(t_ns, "tc_accepted", command=tc.name, arsn=tc.arsn, spi=tc.spi)
            req = (tc.request_id, tc.spi, tc.arsn)
            if tc.ack & ACK_ACCEPTANCE:
                self._verification(t_ns, 1, *req)
            if tc.ack & ACK_START:
                self._verification(t_ns, 3, *req)
            try:
                self._execute(t_ns, tc.name, tc.args, source="tc")
            except CommandError as e:  # tc_failed already logged
                self._verification(t_ns, 8, *req, reason=f"execution: {e}"[:200])
                continue
            if tc.ack & ACK_COMPLETION:
                self._verification(t_ns, 7, *req)

    def _verification(self, t_ns: int, subtype: int, request_id: bytes, spi: int, arsn: int,
                      reason: str = "") -> None:
        """A PUS service 1 report on the ground port's downlink (flight_sw.tc's doc)."""
        if self.ground is not None:
            self.ground.send(self.dictionary.encode_verification(t_ns, subtype, request_id, spi, arsn, reason))
            self.tm_packets += 1

    def _payload_inputs(self, t_ns: int) -> None:
        p = self.payload
        p.budget_w = self._eps_out["payload_budget_w"]
        p.derate = self._therm_out["payload_throttle"]
        p.cap = self.throttle_cap
        act = p.active_boards()
        idle_w = sum(b.cfg.idle_w for b in act)
        min_w = sum(b.cfg.idle_w + self.cfg.min_run_fraction * (b.cfg.max_w - b.cfg.idle_w) for b in act)
        # an eclipse ahead, or one in progress with time left in it (at its predicted exit
        # the budget's horizon is gone: the budget is the present surplus, nil in penumbra)
        near = self._tte <= self.cfg.eclipse_lead_s and self._tte + self._dur >= ENERGY_HOLD_MIN_S
        # suspending saves no energy (the boards stay powered, at idle: the throttle's
        # 0): the payload is checkpointed and suspended only when the budget cannot
        # carry even the boards' idle draw through the eclipse; a budget above it runs
        # the boards at the throttle it allows, in the eclipse too (docs/yield.md)
        if self.modes.mode != COMPUTE:
            p.hold_reason = f"mode {self.modes.mode}"
        elif near and p.budget_w < idle_w:
            if not p.hold_reason.startswith("energy"):
                self._energy_hold_ns = t_ns
            p.hold_reason = "energy: battery cannot carry the payload through the eclipse"
        elif p.hold_reason.startswith("energy") and (p.budget_w < 1.1 * min_w
                                                     or t_ns - self._energy_hold_ns < ENERGY_HOLD_MIN_S * NS):
            pass  # stay suspended until the budget is back, and at least ENERGY_HOLD_MIN_S
        else:
            p.hold_reason = ""

    def _fdir_step(self, t_ns: int) -> None:
        s = self.sensor
        samples = self.payload.fdir_samples(t_ns)
        soc = self._eps_out["soc"]
        samples["battery.soc"] = soc if soc == soc else None
        samples["battery.temp_k"] = s.temps_k.get("battery")
        samples["adcs.rate_norm_rad_s"] = _norm3(s.omega_body_rad_s)
        samples["exec.watchdog_expired"] = 1.0 if self.executive.watchdog.expired else 0.0
        samples["adcs.sun_missing_s"] = self._sun_missing(t_ns)
        for a in self.fdir.evaluate(t_ns, samples, self.payload.booting(t_ns)):
            if a.action == "safe":
                self.modes.request(t_ns, SAFE, "autonomous", f"fdir {a.target}: {a.cause}")
            else:
                self.payload.apply(t_ns, a.target, a.action, a.cause)

    def _sun_missing(self, t_ns: int) -> float | None:
        """Seconds for which the sun sensors have seen no sun while the onboard
        eclipse prediction puts the spacecraft in full sun; None without a TLE."""
        if not self.predictor.loaded:
            self._sun_missing_since = None
            return None
        w, m = self.window, int(self.cfg.sun_margin_s * NS)
        predicted_sun = w is None or not (w.entry_ns - m <= t_ns <= w.exit_ns + m)
        if not predicted_sun or self.sensor.sun_valid:
            self._sun_missing_since = None
            return 0.0
        if self._sun_missing_since is None:
            self._sun_missing_since = t_ns
        return (t_ns - self._sun_missing_since) / NS

    def _mode_inputs(self) -> ModeInputs:
        pe = self._last_adcs["pointing_error_rad"]
        soc = self._eps_out["soc"]
        blocked = not self.payload.active_boards() or self._therm_out["trip"] != 0
        return ModeInputs(
            rate_norm_rad_s=_norm3(self.sensor.omega_body_rad_s),
            soc=soc if soc == soc else 0.0,
            pointing_error_rad=pe if pe >= 0 else 0.0,
            payload_blocked=blocked,
        )

    def _modes_step(self, t_ns: int) -> None:
        self.modes.update(t_ns, self._mode_inputs())

    def _payload_step(self, t_ns: int) -> None:
        self._payload_inputs(t_ns)
        self.payload.run(t_ns)

    def _telemetry(self, t_ns: int) -> None:
        s = self.sensor
        p = self.payload
        w = self.window
        board_temps, isolated = [], 0  # the boards' known temperatures; isolated boards
        for b in p.boards.values():
            if b.temp_k == b.temp_k:
                board_temps.append(b.temp_k)
            isolated += b.isolated
        hk: dict[str, float] = {
            "t_ns": t_ns,
            "mode": MODE_NAMES.index(self.modes.mode),
            "soc": self._eps_out["soc"],
            "battery_v": s.battery_v,
            "battery_i_a": s.battery_i_a,
            "solar_power_w": s.solar_power_w,
            "load_power_w": s.load_power_w,
            "eps_mode": self._eps_out["power_mode"],
            "payload_budget_w": self._eps_out["payload_budget_w"],
            "thermal_derate": self._therm_out["payload_throttle"],
            "throttle_cmd": p.throttle,
            "rate_norm_rad_s": _norm3(s.omega_body_rad_s),
            "pointing_error_rad": self._last_adcs["pointing_error_rad"],
            "temp_battery_k": s.temps_k.get("battery", _NAN),
            "temp_payload_max_k": max(board_temps) if board_temps else _NAN,
            "in_eclipse_pred": 1 if (w is not None and w.entry_ns <= t_ns < w.exit_ns) else 0,
            "t_to_eclipse_s": -1.0 if w is None else max(0.0, (w.entry_ns - t_ns) / NS),
            "eclipse_duration_s": 0.0 if w is None else w.duration_s,
            "payload_suspended": 1 if p.suspended else 0,
            **p.counts(),
            "jobs_completed": p.stats["jobs_completed"],
            "jobs_failed": p.stats["jobs_failed"],
            "seu_detected": p.stats["seu_detected"],
            "boards_isolated": isolated,
            "tc_accepted": self.verifier.accepted,
            "tc_rejected": sum(self.verifier.rejected.values()),
            "overruns": self.executive.overruns,
            "watchdog_ok": 0 if self.executive.watchdog.expired else 1,
            "fdir_actions": len(self.fdir.actions),
            "wheel_x_rad_s": s.wheel_speed_rad_s[0],
            "wheel_y_rad_s": s.wheel_speed_rad_s[1],
            "wheel_z_rad_s": s.wheel_speed_rad_s[2],
            "wheel_momentum_nms": self._wheel_inertia * _norm3(s.wheel_speed_rad_s),
            "heater_mask": self._heater_mask,
            "temp_radiator_k": s.temps_k.get("radiator", _NAN),
            "temp_structure_k": s.temps_k.get("structure", _NAN),
        }
        for name, b in p.boards.items():
            st = ("ISOLATED" if b.isolated else "OFF" if not b.powered else "FAULT" if b.last_ok_ns != t_ns
                  else "SUSPENDED" if (b.run and b.run[1].state == "suspended") else "BUSY" if b.run else "IDLE")
            temp_k, power_w, state, throttle = self._board_channels[name]
            hk[temp_k] = b.temp_k
            hk[power_w] = b.power_w
            hk[state] = BOARD_STATES.index(st)
            hk[throttle] = max(b.throttle_sent, 0.0)
        self.hk = hk
        self.hk_records.append(hk)
        if self.ground is not None:
            self.ground.send(self.dictionary.encode_hk(t_ns, hk))
            self.tm_packets += 1

    def _eclipse(self, t_ns: int) -> None:
        if not self.predictor.loaded:
            return
        w = self.window
        if w is not None and t_ns < w.exit_ns:
            return  # ahead or in progress: the prediction changes only with a new TLE (which clears it)
        new = self.predictor.next_eclipse(t_ns)
        if new != w and new is not None and (w is None or abs(new.entry_ns - w.entry_ns) > NS):
            self.events.emit(t_ns, "eclipse_predicted", entry_s=new.entry_ns / NS, exit_s=new.exit_ns / NS,
                             duration_s=new.duration_s)
        self.window = new

    def _downlink_event(self, ev: Any) -> None:
        if self.ground is not None:
            self.ground.send(self.dictionary.encode_event(ev.t_ns, ev.name, ev.fields))
            self.tm_packets += 1

    def _on_watchdog(self, t_ns: int) -> None:
        self.modes.request(t_ns, SAFE, "autonomous", "software watchdog expired")

    # --- monitors ---------------------------------------------------------------------
    def _monitors(self) -> list[MonitorDef]:
        c = self.cfg
        lo_t, hi_t = c.battery_temp_k
        mons = [
            MonitorDef("battery.soc", SPACECRAFT, c.battery_min_soc, None, 10, entry="safe", unit="1"),
            MonitorDef("battery.temp_k", SPACECRAFT, lo_t, hi_t, 30, entry="safe", unit="K"),
            MonitorDef("adcs.rate_norm_rad_s", SPACECRAFT, None, c.rate_safe_rad_s, 10, entry="safe", unit="rad/s"),
            MonitorDef("exec.watchdog_expired", SPACECRAFT, None, 0.5, 1, entry="safe"),
            MonitorDef("adcs.sun_missing_s", SPACECRAFT, None, c.sun_missing_max_s, 1, entry="safe", unit="s"),
        ]
        trip = native.default_thermal_config()["trip_k"] if "trip_k" not in c.thermal else c.thermal["trip_k"]
        for b in c.boards:
            age, temp, streak = fdir_sample_names(b.name)
            mons += [
                MonitorDef(age, b.name, None, 2.5, 3, entry="retry", unit="s"),
                MonitorDef(temp, b.name, None, trip, 5, entry="isolate", unit="K"),
                MonitorDef(streak, b.name, None, 1.5, 1, entry="reset"),
            ]
        return mons


def _norm3(v: Any) -> float:
    """|v| of a 3-vector (per second, where numpy's call overhead is most of the cost)."""
    x, y, z = v
    return math.sqrt(x * x + y * y + z * z)


def _dipole_teme_t(r_m: tuple[float, float, float], jd: float) -> tuple[float, float, float]:
    """Centred-dipole field (T) at r (TEME, m); the dipole axis turns with the Earth (GMST)."""
    gmst = math.radians((280.46061837 + 360.98564736629 * (jd - 2451545.0)) % 360.0)
    lon = _DIPOLE_LON + gmst
    s = _SIN_COLAT
    m = (-s * math.cos(lon), -s * math.sin(lon), -_COS_COLAT)
    rn = math.sqrt(r_m[0] ** 2 + r_m[1] ** 2 + r_m[2] ** 2)
    rh = (r_m[0] / rn, r_m[1] / rn, r_m[2] / rn)
    k = _B0_T * (_RE_M / rn) ** 3
    md = m[0] * rh[0] + m[1] * rh[1] + m[2] * rh[2]
    return (k * (3 * md * rh[0] - m[0]), k * (3 * md * rh[1] - m[1]), k * (3 * md * rh[2] - m[2]))
