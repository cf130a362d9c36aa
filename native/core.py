"""Typed Python wrappers over the C flight core (``native._core``).

Each loop object owns its C config, state, input and output structs (cffi
``ffi.new`` owners kept on the object for as long as C may see them) and shows
the input and output structs as numpy structured views over the same memory:

    adcs = Adcs()                       # default config, validated by ohil_adcs_init
    adcs.inputs["dt_s"] = 0.1           # write inputs in place (fast path) ...
    out = adcs.step({"mode": AdcsMode.SUN_POINT})   # ... or pass a dict
    out["q_bi"], out["wheel_torque_cmd_nm"]

``step`` returns a read-only 0-d structured view of the output struct; the next
step overwrites it, so ``.copy()`` what you keep. ``step_batch`` steps N frames
in one call from an array of input records and returns an array of outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import IntEnum, IntFlag
from typing import Any

import numpy as np

from native._core import ffi, lib

__all__ = [
    "ADCS_IN_DTYPE",
    "ADCS_OUT_DTYPE",
    "EPS_IN_DTYPE",
    "EPS_OUT_DTYPE",
    "FLIGHT_IN_DTYPE",
    "FLIGHT_OUT_DTYPE",
    "THERMAL_IN_DTYPE",
    "THERMAL_OUT_DTYPE",
    "Adcs",
    "AdcsFault",
    "AdcsMode",
    "ConfigError",
    "Eps",
    "EpsFault",
    "FlightCore",
    "PowerMode",
    "Thermal",
    "ThermalFault",
    "default_adcs_config",
    "default_eps_config",
    "default_thermal_config",
    "records_equal",
    "struct_dtype",
]


class ConfigError(ValueError):
    """An invalid flight-core config; the message names the loop and the field."""

    def __init__(self, loop: str, field: str, reason: str, value: Any = None) -> None:
        self.loop = loop
        self.field = field
        self.reason = reason
        got = "" if value is None else f" (got {value!r})"
        super().__init__(f"{loop} config field '{field}': {reason}{got}")


class AdcsMode(IntEnum):
    DETUMBLE = 0
    SUN_POINT = 1
    NADIR_POINT = 2


class PowerMode(IntEnum):
    NOMINAL = 0
    LOW = 1
    CRITICAL = 2


class AdcsFault(IntFlag):
    DT = 1
    GYRO = 2
    MAG = 4
    SUN = 8
    REF = 16
    WHEEL_SPEED = 32
    MODE = 64
    WHEEL_SAT = 128
    DIPOLE_SAT = 256
    INTERNAL = 512


class EpsFault(IntFlag):
    DT = 1
    VOLTAGE = 2
    CURRENT = 4
    POWER = 8
    ECLIPSE = 16
    DEMAND = 32
    UNDERVOLTAGE = 64
    SOC_UNKNOWN = 128


class ThermalFault(IntFlag):
    ZONE0 = 1
    ZONE1 = 2
    ZONE2 = 4
    ZONE3 = 8
    ZONE4 = 16
    ZONE5 = 32
    ZONE6 = 64
    ZONE7 = 128
    PAYLOAD = 256
    DT = 512
    TRIP = 1024


MAX_LOADS = int(lib.OHIL_EPS_MAX_LOADS)
MAX_ZONES = int(lib.OHIL_THERM_MAX_ZONES)
OCV_POINTS = int(lib.OHIL_EPS_OCV_POINTS)

# --------------------------------------------------------------------------
# numpy dtypes mirroring the C structs (offsets and sizes taken from cffi)

_PRIMITIVES = {
    "double": np.float64,
    "float": np.float32,
    "int32_t": np.int32,
    "uint32_t": np.uint32,
    "int": np.intc,
    "unsigned int": np.uintc,
}


def _ctype_dtype(ctype: Any) -> np.dtype:
    if ctype.kind == "primitive":
        return np.dtype(_PRIMITIVES[ctype.cname])
    if ctype.kind == "array":
        return np.dtype((_ctype_dtype(ctype.item), (ctype.length,)))
    if ctype.kind == "struct":
        names, formats, offsets = [], [], []
        for name, field in ctype.fields:
            names.append(name)
            formats.append(_ctype_dtype(field.type))
            offsets.append(field.offset)
        return np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": ffi.sizeof(ctype)}
        )
    raise TypeError(f"no numpy dtype for C type {ctype.cname}")


def struct_dtype(cname: str) -> np.dtype:
    """The numpy structured dtype with the layout of the C struct ``cname``."""
    return _ctype_dtype(ffi.typeof(cname))


ADCS_IN_DTYPE = struct_dtype("ohil_adcs_in")
ADCS_OUT_DTYPE = struct_dtype("ohil_adcs_out")
EPS_IN_DTYPE = struct_dtype("ohil_eps_in")
EPS_OUT_DTYPE = struct_dtype("ohil_eps_out")
THERMAL_IN_DTYPE = struct_dtype("ohil_therm_in")
THERMAL_OUT_DTYPE = struct_dtype("ohil_therm_out")
FLIGHT_IN_DTYPE = struct_dtype("ohil_flight_in")
FLIGHT_OUT_DTYPE = struct_dtype("ohil_flight_out")

# --------------------------------------------------------------------------
# default configs: a ~100 kg-class compute smallsat (see docs/native.md)


def default_adcs_config() -> dict[str, Any]:
    """ADCS config of a ~100 kg smallsat: 0.5 N·m·s wheels, 20 A·m² torquers."""
    return {
        "inertia_kgm2": [10.0, 12.0, 8.0],
        "wheel_inertia_kgm2": 8.0e-4,  # 0.5 N m s at 628 rad/s (6000 rpm)
        "wheel_max_torque_nm": 0.03,
        "wheel_max_speed_rad_s": 628.0,
        "dipole_max_am2": 20.0,
        "bdot_gain": 2.0e7,
        "att_wn_rad_s": 0.1,
        "att_zeta": 0.9,
        "max_slew_rate_rad_s": 0.02,
        "unload_gain_per_s": 0.001,
        "array_normal_body": [0.0, 0.0, -1.0],
        "search_axis_body": [1.0, 0.0, 0.0],
        "search_rate_rad_s": 0.01,
        "k_sun": 0.05,
        "k_mag": 0.02,
        "k_bias": 0.02,
        "max_bias_rad_s": 0.01,
        "max_dt_s": 10.0,
        "att_hold_s": 3000.0,
    }


def default_eps_config() -> dict[str, Any]:
    """EPS config: 8S Li-ion, 20 Ah (576 Wh), 150 W payload, 8 loads by priority."""
    cell = [3.00, 3.45, 3.55, 3.62, 3.68, 3.74, 3.82, 3.92, 4.00, 4.08, 4.18]
    return {
        "capacity_ah": 20.0,
        "charge_eff": 0.98,
        "ocv_v": [8.0 * v for v in cell],
        "rest_current_a": 0.2,
        "rest_time_s": 600.0,
        "ocv_tau_s": 600.0,
        "soc_init": -1.0,
        "low_enter_soc": 0.40,
        "low_exit_soc": 0.50,
        "critical_enter_soc": 0.20,
        "critical_exit_soc": 0.30,
        "critical_voltage_v": 25.6,
        # obc, adcs, radio_rx, radio_tx, gps, payload_bus, payload_aux, camera
        "load_shed_mode": [3, 3, 3, 2, 2, 2, 1, 1],
        "soc_floor": 0.55,
        "payload_max_w": 150.0,
        "budget_margin": 0.9,
        "max_dt_s": 60.0,
    }


def default_thermal_config() -> dict[str, Any]:
    """Thermal config: 4 zones (battery, obc, propulsion, payload plate), payload derating 65-85 °C."""
    return {
        "heater_on_k": [278.15, 263.15, 268.15, 263.15],
        "heater_off_k": [283.15, 268.15, 273.15, 268.15],
        "heater_power_w": [10.0, 5.0, 8.0, 6.0],
        "min_on_s": 60.0,
        "min_off_s": 60.0,
        "derate_start_k": 338.15,
        "derate_end_k": 358.15,
        "throttle_down_per_s": 0.05,
        "throttle_up_per_s": 0.01,
        "trip_k": 363.15,
        "trip_reset_k": 343.15,
        "max_dt_s": 60.0,
    }


_DEFAULTS = {
    "adcs": default_adcs_config,
    "eps": default_eps_config,
    "thermal": default_thermal_config,
}
# list fields whose length sets a count field in C, with the padding value
_COUNTED = {
    "eps": ("n_loads", {"load_shed_mode": 3}),
    "thermal": ("n_zones", {"heater_on_k": 0.0, "heater_off_k": 0.0, "heater_power_w": 0.0}),
}
_LOOP_OF_CODE = {1: "adcs", 2: "eps", 3: "thermal"}


def _as_mapping(loop: str, config: Any) -> dict[str, Any]:
    merged = _DEFAULTS[loop]()
    if config is None:
        return merged
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise ConfigError(
            loop, "(config)", f"expected a dict or dataclass, got {type(config).__name__}"
        )
    for key, value in config.items():
        if key not in merged:
            raise ConfigError(loop, str(key), f"unknown field; known fields: {', '.join(merged)}")
        merged[key] = value
    if loop == "adcs" and "array_normal_body" in config and "search_axis_body" not in config:
        merged["search_axis_body"] = _perpendicular_axis(merged["array_normal_body"])
    return merged


def _perpendicular_axis(normal: Any) -> list[float]:
    """A unit vector perpendicular to ``normal``: the body axis least aligned with it,
    with its component along ``normal`` removed. Invalid normals are returned unchanged
    for ``ohil_adcs_init`` to reject by name."""
    try:
        n = np.asarray(normal, dtype=float)
        if n.shape != (3,) or not np.all(np.isfinite(n)) or np.linalg.norm(n) == 0.0:
            return [1.0, 0.0, 0.0]
        n = n / np.linalg.norm(n)
    except (TypeError, ValueError):
        return [1.0, 0.0, 0.0]
    axis = np.zeros(3)
    axis[int(np.argmin(np.abs(n)))] = 1.0
    axis -= np.dot(axis, n) * n
    return [float(x) for x in axis / np.linalg.norm(axis)]


def _fill_struct(loop: str, cstruct: Any, config: dict[str, Any]) -> None:
    """Copy a config mapping into a C config struct, checking names, shapes and types."""
    count_field, padded = _COUNTED.get(loop, (None, {}))
    if count_field is not None:
        lengths = {name: len(np.atleast_1d(config[name])) for name in padded}
        first = next(iter(padded))
        n = lengths[first]
        limit = len(getattr(cstruct, first))
        for name, length in lengths.items():
            if length != n:
                raise ConfigError(
                    loop, name, f"must have the same length as {first} ({n})", config[name]
                )
            if length > limit:
                raise ConfigError(loop, name, f"at most {limit} entries", config[name])
        setattr(cstruct, count_field, n)
    stype = ffi.typeof(cstruct)
    fields = dict((stype.item if stype.kind == "pointer" else stype).fields)
    for name, value in config.items():
        ctype = fields[name].type
        try:
            if ctype.kind == "array":
                arr = np.asarray(value, dtype=float)
                if arr.ndim != 1:
                    raise ValueError
                if name in padded:
                    arr = np.concatenate([arr, np.full(ctype.length - arr.size, padded[name])])
                if arr.size != ctype.length:
                    raise ConfigError(
                        loop, name, f"expected {ctype.length} values, got {arr.size}", value
                    )
                if ctype.item.cname in ("int32_t", "int"):
                    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                        raise ValueError
                    setattr(cstruct, name, [int(v) for v in arr])
                else:
                    setattr(cstruct, name, [float(v) for v in arr])
            elif ctype.cname in ("int32_t", "int"):
                if isinstance(value, bool) or float(value) != int(value):
                    raise ValueError
                setattr(cstruct, name, int(value))
            else:
                if isinstance(value, bool):
                    raise ValueError
                setattr(cstruct, name, float(value))
        except ConfigError:
            raise
        except (TypeError, ValueError, OverflowError):
            kind = "a list of numbers" if ctype.kind == "array" else "a number"
            raise ConfigError(loop, name, f"expected {kind}", value) from None


def _raise_for_code(code: int, configs: dict[str, dict[str, Any]]) -> None:
    loop = _LOOP_OF_CODE.get(code // 100, "flight")
    field = ffi.string(lib.ohil_error_field(code)).decode()
    reason = ffi.string(lib.ohil_error_reason(code)).decode() or "invalid"
    value = configs.get(loop, {}).get(field)
    raise ConfigError(loop, field, reason, value)


def _view(cdata: Any, dtype: np.dtype, writable: bool) -> np.ndarray:
    arr = np.frombuffer(ffi.buffer(cdata), dtype=dtype, count=1).reshape(())
    if not writable:
        arr.flags.writeable = False
    return arr


def _set_inputs(view: np.ndarray, inputs: Any) -> None:
    if isinstance(inputs, Mapping):
        for key, value in inputs.items():
            if key not in view.dtype.names:
                raise KeyError(f"unknown input field {key!r}; known: {', '.join(view.dtype.names)}")
            sub = view[key]
            if sub.dtype.names is not None and isinstance(value, Mapping):
                _set_inputs(sub, value)
            else:
                view[key] = value
    else:
        view[...] = inputs


class _Loop:
    """Shared machinery: C structs, numpy views, step and step_batch."""

    _loop: str = ""
    _ctype: str = ""
    _in_dtype: np.dtype
    _out_dtype: np.dtype

    def _setup(self, cfg_ptr: Any, configs: dict[str, dict[str, Any]], init: Any) -> None:
        self._cfg = cfg_ptr
        code = int(init(self._cfg))
        if code:
            _raise_for_code(code, configs)
        self._configs = configs
        self._state = ffi.new(f"{self._ctype}_state *")
        self._in = ffi.new(f"{self._ctype}_in *")
        self._out = ffi.new(f"{self._ctype}_out *")
        self.inputs: np.ndarray = _view(self._in, self._in_dtype, writable=True)
        self.outputs: np.ndarray = _view(self._out, self._out_dtype, writable=False)
        self.state: np.ndarray = _view(self._state, struct_dtype(f"{self._ctype}_state"), True)
        prefix = f"ohil_{'therm' if self._loop == 'thermal' else self._loop}"
        self._c_reset = getattr(lib, f"{prefix}_reset")
        self._c_step = getattr(lib, f"{prefix}_step")
        self._c_batch = getattr(lib, f"{prefix}_step_batch")
        self._args = (self._cfg, self._state, self._in, self._out)
        self.reset()

    def reset(self) -> None:
        """Reset the loop state (estimators, timers, modes) to power-on."""
        self._c_reset(self._cfg, self._state)

    def step(self, inputs: Any = None) -> np.ndarray:
        """Step one frame. ``inputs``: a dict of input fields to set first, a record, or None.

        Returns the read-only output view (overwritten by the next step).
        """
        if inputs is not None:
            _set_inputs(self.inputs, inputs)
        self._c_step(*self._args)
        return self.outputs

    def step_batch(self, inputs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Step ``len(inputs)`` frames in one C call; returns an array of output records."""
        arr = np.ascontiguousarray(inputs, dtype=self._in_dtype)
        if arr.ndim != 1:
            raise ValueError(
                f"step_batch expects a 1-D array of input records, got shape {arr.shape}"
            )
        n = arr.shape[0]
        if out is None:
            out = np.zeros(n, dtype=self._out_dtype)  # zeroed padding: byte-comparable
        elif out.dtype != self._out_dtype or out.shape != (n,) or not out.flags.c_contiguous:
            raise ValueError("out must be a contiguous array of output records, one per input")
        if n:
            pin = ffi.cast(f"{self._ctype}_in *", ffi.from_buffer(arr))
            pout = ffi.cast(f"{self._ctype}_out *", ffi.from_buffer(out))
            self._c_batch(self._cfg, self._state, pin, pout, n)
        return out

    def empty_inputs(self, n: int) -> np.ndarray:
        """A zeroed array of ``n`` input records for ``step_batch``."""
        return np.zeros(n, dtype=self._in_dtype)

    @property
    def config(self) -> dict[str, Any]:
        """The config as validated (a copy)."""
        return (
            {k: dict(v) for k, v in self._configs.items()}
            if self._loop == "flight"
            else dict(self._configs[self._loop])
        )


def _single_loop_init(self: _Loop, config: Any, ctype_cfg: str, init: Any) -> None:
    merged = _as_mapping(self._loop, config)
    cfg = ffi.new(f"{ctype_cfg} *")
    _fill_struct(self._loop, cfg, merged)
    self._setup(cfg, {self._loop: merged}, init)


class Adcs(_Loop):
    """Attitude determination and control (see ``ohil_adcs.h``)."""

    _loop, _ctype = "adcs", "ohil_adcs"
    _in_dtype, _out_dtype = ADCS_IN_DTYPE, ADCS_OUT_DTYPE

    def __init__(self, config: Mapping[str, Any] | Any | None = None) -> None:
        _single_loop_init(self, config, "ohil_adcs_cfg", lib.ohil_adcs_init)
        self._port: tuple[tuple[int, int, int], tuple[Any, Any, Any]] | None = None  # run_port's last casts

    def run_port(self, n: int, sense_fn: int, actuate_fn: int, ctx: int) -> np.ndarray:
        """Run ``n`` frames through a C sensor/actuator port in one call
        (``ohil_adcs_run_port``): ``sense_fn`` and ``actuate_fn`` are addresses of C
        functions of the types ``ohil_adcs_sense_fn`` and ``ohil_adcs_actuate_fn``,
        ``ctx`` the address handed to them. The sensed fields of :attr:`inputs` are
        overwritten each frame; the others (dt_s, mode, references) are used as set.
        Returns the output view of the last frame."""
        if n < 0:
            raise ValueError(f"run_port: n must be >= 0, got {n}")
        if not sense_fn or not actuate_fn:
            raise ValueError("run_port: sense_fn and actuate_fn must be C function addresses, not 0")
        if n:
            port = (sense_fn, actuate_fn, ctx)
            if self._port is None or self._port[0] != port:  # cast once per port, not per call
                self._port = (port, (ffi.cast("ohil_adcs_sense_fn", sense_fn),
                                     ffi.cast("ohil_adcs_actuate_fn", actuate_fn), ffi.cast("void *", ctx)))
            lib.ohil_adcs_run_port(self._cfg, self._state, self._in, self._out, n, *self._port[1])
        return self.outputs


class Eps(_Loop):
    """Power: SOC, power modes, load shedding, payload budget (see ``ohil_eps.h``)."""

    _loop, _ctype = "eps", "ohil_eps"
    _in_dtype, _out_dtype = EPS_IN_DTYPE, EPS_OUT_DTYPE

    def __init__(self, config: Mapping[str, Any] | Any | None = None) -> None:
        _single_loop_init(self, config, "ohil_eps_cfg", lib.ohil_eps_init)


class Thermal(_Loop):
    """Heaters, payload derating, over-temperature trip (see ``ohil_thermal.h``)."""

    _loop, _ctype = "thermal", "ohil_therm"
    _in_dtype, _out_dtype = THERMAL_IN_DTYPE, THERMAL_OUT_DTYPE

    def __init__(self, config: Mapping[str, Any] | Any | None = None) -> None:
        _single_loop_init(self, config, "ohil_therm_cfg", lib.ohil_therm_init)


class FlightCore(_Loop):
    """ADCS, EPS and thermal of one spacecraft, stepped together per frame.

    ``inputs`` / ``outputs`` have sub-records ``adcs``, ``eps`` and ``therm``.
    """

    _loop, _ctype = "flight", "ohil_flight"
    _in_dtype, _out_dtype = FLIGHT_IN_DTYPE, FLIGHT_OUT_DTYPE

    def __init__(
        self,
        adcs: Mapping[str, Any] | Any | None = None,
        eps: Mapping[str, Any] | Any | None = None,
        thermal: Mapping[str, Any] | Any | None = None,
    ) -> None:
        configs = {
            "adcs": _as_mapping("adcs", adcs),
            "eps": _as_mapping("eps", eps),
            "thermal": _as_mapping("thermal", thermal),
        }
        cfg = ffi.new("ohil_flight_cfg *")
        _fill_struct("adcs", cfg.adcs, configs["adcs"])
        _fill_struct("eps", cfg.eps, configs["eps"])
        _fill_struct("thermal", cfg.therm, configs["thermal"])
        self._setup(cfg, configs, lib.ohil_flight_init)

    def run_n(self, n: int, frames: np.ndarray | None = None) -> np.ndarray:
        """Step ``n`` frames in one C call, cycling over ``frames`` (default: the present
        inputs); only the last output is kept. This is the benchmark's C loop."""
        if frames is None:
            lib.ohil_flight_run_n(self._cfg, self._state, self._in, 1, self._out, int(n))
            return self.outputs
        arr = np.ascontiguousarray(frames, dtype=FLIGHT_IN_DTYPE)
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise ValueError("frames must be a non-empty 1-D array of input records")
        pin = ffi.cast("ohil_flight_in *", ffi.from_buffer(arr))
        lib.ohil_flight_run_n(self._cfg, self._state, pin, arr.shape[0], self._out, int(n))
        return self.outputs


def _leaves(rec: np.ndarray) -> list[np.ndarray]:
    if rec.dtype.names is None:
        return [np.asarray(rec)]
    return [leaf for name in rec.dtype.names for leaf in _leaves(rec[name])]


def records_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """True if two structured records (or arrays of them) hold equal fields.

    Compares field by field, so padding bytes (which numpy copies do not keep)
    never matter.
    """
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))
