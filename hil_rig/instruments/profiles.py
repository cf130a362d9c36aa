"""Register-map profiles: a supply described in TOML, without code.

A profile names the registers of the supply (set V/I, measured V/I, output
enable, optionally model ID, protection and CV/CC) and its models with their
scaling in counts per volt and per ampere. See ``profiles/riden_rd60xx.toml``
(verified against public sources) and ``profiles/ea_psi9000.toml`` (an example).

>>> p = load_profile("riden-rd60xx")
>>> p.model_for_id(60065).name, p.model_for_id(60065).counts_per_amp
('RD6006P', 10000.0)
>>> p.model("RD6012").encode_current(1.234)
123
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tomllib
from typing import Any

from hil_rig.instruments.errors import ConfigError, LimitError, UnknownModelError

PROFILE_DIR = pathlib.Path(__file__).resolve().parent / "profiles"
_REQUIRED_REGS = ("voltage_set", "current_set", "voltage_out", "current_out", "output")
_OPTIONAL_REGS = ("input_voltage", "protection", "mode", "power_out", "ovp", "ocp", "preset")
REGISTER_NAMES = {
    "voltage_set": "V-SET",
    "current_set": "I-SET",
    "voltage_out": "V-OUT",
    "current_out": "I-OUT",
    "input_voltage": "V-IN",
    "protection": "PROTECTION",
    "mode": "CV/CC",
    "output": "OUTPUT",
    "power_out": "P-OUT",
    "ovp": "OVP",
    "ocp": "OCP",
    "preset": "PRESET",
    "model_id": "MODEL-ID",
}


@dataclasses.dataclass(frozen=True)
class SupplyModel:
    """One model of a supply family and its register scaling."""

    name: str
    counts_per_volt: float
    counts_per_amp: float
    max_voltage_v: float
    max_current_a: float
    ids: tuple[int, ...] = ()
    sim_id: int | None = None
    counts_per_watt: float = 100.0  # the output-power register's scaling (``registers.power_out``)

    def encode_voltage(self, volts: float) -> int:
        return _encode(volts, self.counts_per_volt, self.max_voltage_v, f"{self.name} voltage", "V")

    def encode_current(self, amps: float) -> int:
        return _encode(amps, self.counts_per_amp, self.max_current_a, f"{self.name} current", "A")

    def decode_voltage(self, counts: int) -> float:
        return counts / self.counts_per_volt

    def decode_current(self, counts: int) -> float:
        return counts / self.counts_per_amp


def _encode(value: float, per_unit: float, maximum: float, what: str, unit: str) -> int:
    if not math.isfinite(value) or value < 0 or value > maximum:
        raise LimitError(f"{what} {value!r} {unit} is outside the model's range 0..{maximum:g} {unit}")
    counts = round(value * per_unit)
    if counts > 0xFFFF:
        raise LimitError(f"{what} {value!r} {unit} does not fit a 16-bit register")
    return counts


@dataclasses.dataclass(frozen=True)
class RegisterMap:
    """A profile's ``[map]``: the whole documented register map, for the simulator.

    ``readable``: inclusive spans FC03 answers (undocumented gaps inside read 0);
    ``writable``: spans that hold any value written; ``values``: what registers
    read before any write; ``memories``: ``(first, groups)`` of 4-register memory
    groups (V, I, OVP, OCP) that ``registers.preset`` loads.
    """

    readable: tuple[tuple[int, int], ...]
    writable: tuple[tuple[int, int], ...] = ()
    values: dict[int, int] = dataclasses.field(default_factory=dict)
    memories: tuple[int, int] | None = None

    def addresses(self, spans: tuple[tuple[int, int], ...]) -> set[int]:
        return {a for lo, hi in spans for a in range(lo, hi + 1)}


@dataclasses.dataclass(frozen=True)
class SupplyProfile:
    """A supply family's register map."""

    name: str
    description: str
    registers: dict[str, int]
    models: tuple[SupplyModel, ...]
    id_register: int | None = None
    output_on: int = 1
    output_off: int = 0
    mode_values: dict[int, str] = dataclasses.field(default_factory=dict)
    protection_values: dict[int, str] = dataclasses.field(default_factory=dict)
    input_voltage_counts_per_volt: float = 100.0
    default_baud: int = 115200
    source: str = ""
    #: the device's documented register map beyond the driver's registers (``[map]``),
    #: served by the simulator: spans FC03 answers, spans that hold what is written,
    #: the values registers start with, and the memory groups (first register, count)
    map: RegisterMap | None = None

    def model(self, name: str) -> SupplyModel:
        for m in self.models:
            if m.name.lower() == name.lower():
                return m
        raise UnknownModelError(
            f"profile {self.name!r} has no model {name!r} (known: {', '.join(m.name for m in self.models)})"
        )

    def model_for_id(self, model_id: int) -> SupplyModel:
        for m in self.models:
            if model_id in m.ids:
                return m
        raise UnknownModelError(
            f"profile {self.name!r}: unknown model ID {model_id} in register {self.id_register}; "
            f"refusing to guess a scaling (known: "
            + ", ".join(f"{m.name}={'/'.join(map(str, m.ids))}" for m in self.models)
            + ")"
        )

    def register_name(self, address: int) -> str:
        for key, reg in self.registers.items():
            if reg == address:
                return REGISTER_NAMES.get(key, key)
        if address == self.id_register:
            return REGISTER_NAMES["model_id"]
        return ""

    def names(self) -> dict[int, str]:
        out = {reg: REGISTER_NAMES.get(key, key) for key, reg in self.registers.items()}
        if self.id_register is not None:
            out[self.id_register] = REGISTER_NAMES["model_id"]
        return out


def _need(table: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
        raise ConfigError(f"{where}: key {key!r} must be {_tname(typ)}, got {value!r}")
    return value


def _tname(typ: type | tuple[type, ...]) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return typ.__name__


def parse_profile(data: dict[str, Any], source: str) -> SupplyProfile:
    """Validate a parsed profile table; errors name ``source`` and the key."""
    known = {"name", "description", "default_baud", "identify", "registers", "scale", "output", "mode", "protection",
             "models", "map"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown key {key!r} (expected one of {', '.join(sorted(known))})")
    name = _need(data, "name", str, source)
    regs_t = _need(data, "registers", dict, source)
    registers: dict[str, int] = {}
    for key, value in regs_t.items():
        if key not in _REQUIRED_REGS + _OPTIONAL_REGS:
            raise ConfigError(f"{source}: unknown key 'registers.{key}'")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            raise ConfigError(f"{source}: key 'registers.{key}' must be a register number 0..65535, got {value!r}")
        registers[key] = value
    for key in _REQUIRED_REGS:
        if key not in registers:
            raise ConfigError(f"{source}: missing key 'registers.{key}'")
    id_register = None
    if "identify" in data:
        id_register = _need(data["identify"], "register", int, f"{source} [identify]")
    out_t = data.get("output", {})
    models_t = _need(data, "models", list, source)
    if not models_t:
        raise ConfigError(f"{source}: key 'models' must list at least one model")
    models = []
    for i, m in enumerate(models_t):
        where = f"{source} models[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"{where}: must be a table")
        ids = tuple(m.get("ids", ()))
        if id_register is not None and not ids:
            raise ConfigError(f"{where}: key 'ids' is required when [identify] is given")
        for v in ids:
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"{where}: key 'ids' must list integers, got {v!r}")
        model = SupplyModel(
            name=_need(m, "name", str, where),
            counts_per_volt=float(_need(m, "counts_per_volt", (int, float), where)),
            counts_per_amp=float(_need(m, "counts_per_amp", (int, float), where)),
            max_voltage_v=float(_need(m, "max_voltage_v", (int, float), where)),
            max_current_a=float(_need(m, "max_current_a", (int, float), where)),
            ids=ids,
            sim_id=m.get("sim_id", ids[0] if ids else None),
            counts_per_watt=float(_need(m, "counts_per_watt", (int, float), where)) if "counts_per_watt" in m else 100.0,
        )
        for key in ("counts_per_volt", "counts_per_amp", "max_voltage_v", "max_current_a", "counts_per_watt"):
            if getattr(model, key) <= 0:
                raise ConfigError(f"{where}: key {key!r} must be > 0")
        if model.max_voltage_v * model.counts_per_volt > 0xFFFF or model.max_current_a * model.counts_per_amp > 0xFFFF:
            raise ConfigError(f"{where}: the maximum setpoint does not fit a 16-bit register")
        models.append(model)
    all_ids = [i for m in models for i in m.ids]
    if len(all_ids) != len(set(all_ids)):
        raise ConfigError(f"{source}: a model ID appears under two models")

    def _codes(key: str) -> dict[int, str]:
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: key {key!r} must be a table")
        if key == "mode":
            return {int(_need(table, k, int, f"{source} [mode]")): k for k in ("cv", "cc")} if table else {}
        try:
            return {int(k): str(v) for k, v in table.items()}
        except ValueError:
            raise ConfigError(f"{source}: keys of [{key}] must be integers") from None

    return SupplyProfile(
        name=name,
        description=str(data.get("description", "")),
        registers=registers,
        models=tuple(models),
        id_register=id_register,
        output_on=int(out_t.get("on", 1)),
        output_off=int(out_t.get("off", 0)),
        mode_values=_codes("mode"),
        protection_values=_codes("protection"),
        input_voltage_counts_per_volt=float(data.get("scale", {}).get("input_voltage", 100)),
        default_baud=int(data.get("default_baud", 115200)),
        source=source,
        map=_register_map(data["map"], f"{source} [map]", registers, id_register) if "map" in data else None,
    )


def _register_map(t: Any, where: str, registers: dict[str, int], id_register: int | None) -> RegisterMap:
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: must be a table")
    for key in t:
        if key not in ("readable", "writable", "values", "memories"):
            raise ConfigError(f"{where}: unknown key {key!r} (expected readable, writable, values, memories)")

    def spans(key: str) -> tuple[tuple[int, int], ...]:
        out = []
        for s in t.get(key, []):
            if (not isinstance(s, list) or len(s) != 2
                    or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= 0xFFFF for a in s)
                    or s[0] > s[1]):
                raise ConfigError(f"{where}: key {key!r} must list [first, last] register spans, got {s!r}")
            out.append((s[0], s[1]))
        return tuple(out)

    readable = spans("readable")
    if not readable:
        raise ConfigError(f"{where}: missing key 'readable'")
    rm = RegisterMap(readable, spans("writable"))
    inside = rm.addresses(readable)
    for key, reg in [*registers.items(), *([("identify", id_register)] if id_register is not None else [])]:
        if reg not in inside:
            raise ConfigError(f"{where}: register {reg} ({key}) is outside key 'readable'")
    if not rm.addresses(rm.writable) <= inside:
        raise ConfigError(f"{where}: key 'writable' reaches outside key 'readable'")
    values: dict[int, int] = {}
    vt = t.get("values", {})
    if not isinstance(vt, dict):
        raise ConfigError(f"{where}: key 'values' must be a table of register = value")
    for k, v in vt.items():
        try:
            reg = int(k)
        except ValueError:
            raise ConfigError(f"{where}: key 'values.{k}' must be a register number") from None
        if reg not in inside or not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFF:
            raise ConfigError(f"{where}: key 'values.{k}' must be a readable register's 16-bit value, got {v!r}")
        values[reg] = v
    memories = None
    if "memories" in t:
        mt = t["memories"]
        first, groups = (mt.get("first"), mt.get("groups")) if isinstance(mt, dict) else (None, None)
        if not (isinstance(first, int) and isinstance(groups, int) and groups > 0
                and set(range(first, first + 4 * groups)) <= inside):
            raise ConfigError(f"{where}: key 'memories' must be {{ first = N, groups = G }} inside key 'readable'")
        memories = (first, groups)
    return dataclasses.replace(rm, values=values, memories=memories)


def available_profiles() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(load_profile_file(p).name for p in PROFILE_DIR.glob("*.toml"))


def load_profile_file(path: str | pathlib.Path) -> SupplyProfile:
    path = pathlib.Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read profile: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_profile(data, str(path))


def load_profile(name_or_path: str, base_dir: pathlib.Path | None = None) -> SupplyProfile:
    """A shipped profile by name (``riden-rd60xx``) or a profile file by path."""
    if name_or_path.endswith(".toml"):
        p = pathlib.Path(name_or_path)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        return load_profile_file(p)
    for p in sorted(PROFILE_DIR.glob("*.toml")):
        prof = load_profile_file(p)
        if prof.name == name_or_path:
            return prof
    raise ConfigError(
        f"no supply profile named {name_or_path!r} (shipped: {', '.join(available_profiles())}; "
        "or give a path to a .toml profile)"
    )
