"""The bench file (``bench.toml``): the physical wiring of one lab bench.

It is read once, with :func:`load_bench`, and validated on load: a bad file
fails here, naming the file and the key, never half-way through a test.

The format (see ``docs/bench.md`` and ``hil_rig/benches/virtual.toml``)::

    [bench]
    name = "lab-3"

    [[instruments]]
    name = "psu0"
    driver = "riden-rd60xx"          # a supply profile (name or .toml path) or "waveshare-relay"
    url = "modbus-rtu:///dev/ttyUSB0?baud=115200&unit=1"   # or modbus-tcp://..., sim://tcp, sim://rtu
    model = "RD6012"                 # checked against the model-ID register
    limits = { voltage_v = [0.0, 14.0], current_a = [0.0, 6.0] }
    current_limit_a = 5.0            # I-SET while it powers the boards (default: the top of limits.current_a)
    safe_state = { output = false }

    [[instruments]]
    name = "relays0"
    driver = "waveshare-relay"
    url = "modbus-rtu:///dev/ttyUSB1?baud=9600&unit=1"
    safe_state = { on = [] }         # channels left on; every other channel off

    [[boards]]
    name = "jetson0"
    kind = "jetson"                  # jetson | rpi | emulated (with emulates = "jetson"|"rpi") | qemu-arm64
    serial = "/dev/ttyUSB2"            # or a pyserial URL: "rfc2217://lab-host:7001?ign_set_control" (ser2net)
    baud = 115200
    supply = "psu0"
    switch = "relays0"
    channel = 0
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tomllib
import urllib.parse
from collections.abc import Iterable
from typing import Any

from firmware_bridge.ratings import RATINGS
from hil_rig.instruments.base import SupplyLimits
from hil_rig.instruments.errors import ConfigError, UnknownModelError
from hil_rig.instruments.profiles import SupplyProfile, load_profile
from hil_rig.instruments.url import ModbusEndpoint, parse_modbus_url

RELAY_DRIVERS = ("waveshare-relay",)
BOARD_KINDS = ("jetson", "rpi", "emulated", "qemu-arm64")
#: a QEMU arm64 board: a real kernel and the real agent, powered by the virtual bench (docs/boards.md)
QEMU_KIND = "qemu-arm64"
DEFAULT_BENCH = pathlib.Path(__file__).resolve().parent / "benches" / "virtual.toml"
#: kind -> (min_voltage_v, idle_power_w, boot_time_s): the kind's ratings (firmware_bridge.ratings)
_BOARD_DEFAULTS = {k: (r.min_voltage_v, r.idle_w, r.boot_time_s) for k, r in RATINGS.items()}


@dataclasses.dataclass(frozen=True)
class SupplySafeState:
    output: bool = False
    voltage_v: float | None = None
    current_a: float | None = None


@dataclasses.dataclass(frozen=True)
class SwitchSafeState:
    on: tuple[int, ...] = ()  # channels left on; all others off


@dataclasses.dataclass(frozen=True)
class InstrumentSpec:
    name: str
    kind: str  # "supply" or "switch"
    driver: str
    url: str
    endpoint: ModbusEndpoint
    model: str | None = None
    timeout_s: float = 0.5
    retries: int = 2
    channels: int = 8
    limits: SupplyLimits = SupplyLimits()
    safe_state: SupplySafeState | SwitchSafeState = SupplySafeState()
    profile: SupplyProfile | None = None
    #: a supply's current limit (I-SET) while it powers the boards
    current_limit_a: float | None = None

    @property
    def simulated(self) -> bool:
        return self.endpoint.is_simulated


@dataclasses.dataclass(frozen=True)
class BoardSpec:
    name: str
    kind: str  # jetson | rpi | emulated | qemu-arm64
    emulates: str  # jetson | rpi | qemu-arm64 (what it is, or what it emulates)
    serial: str  # device path / pyserial URL; "" for an emulated board not yet started
    baud: int = 115200
    supply: str | None = None
    switch: str | None = None
    channel: int | None = None
    boot_time_s: float = 1.0
    min_voltage_v: float = 4.75
    idle_power_w: float = 3.0
    cpus: int = 1  # qemu-arm64: vCPUs
    memory_mb: int = 512  # qemu-arm64: RAM

    @property
    def emulated(self) -> bool:
        """The agent with simulated sensors (firmware_bridge.emulator) behind a pty."""
        return self.kind == "emulated"

    @property
    def qemu(self) -> bool:
        """A QEMU arm64 board: a real kernel booting the real agent; the virtual bench powers it."""
        return self.kind == QEMU_KIND

    @property
    def bench_started(self) -> bool:
        """The virtual bench starts it (its serial path is assigned) and powers it."""
        return self.emulated or self.qemu


@dataclasses.dataclass(frozen=True)
class Bench:
    """One bench: its boards and instruments, as the bench file says."""

    name: str
    path: str
    boards: tuple[BoardSpec, ...]
    instruments: tuple[InstrumentSpec, ...]
    description: str = ""

    def instrument(self, name: str) -> InstrumentSpec:
        for i in self.instruments:
            if i.name == name:
                return i
        raise KeyError(f"bench {self.name!r} has no instrument {name!r}")

    def board(self, name: str) -> BoardSpec:
        for b in self.boards:
            if b.name == name:
                return b
        raise KeyError(f"bench {self.name!r} has no board {name!r}")

    @property
    def supplies(self) -> tuple[InstrumentSpec, ...]:
        return tuple(i for i in self.instruments if i.kind == "supply")

    @property
    def switches(self) -> tuple[InstrumentSpec, ...]:
        return tuple(i for i in self.instruments if i.kind == "switch")

    @property
    def virtual(self) -> bool:
        """True when anything in it must be started by the virtual bench."""
        return any(i.simulated for i in self.instruments) or any(b.bench_started for b in self.boards)

    @property
    def has_hardware_boards(self) -> bool:
        return any(not b.emulated for b in self.boards)

    def resolved(self, urls: dict[str, ModbusEndpoint], serials: dict[str, str]) -> Bench:
        """A copy pointing at started endpoints (used by the virtual bench)."""
        inst = tuple(
            dataclasses.replace(i, endpoint=urls[i.name], url=urls[i.name].url()) if i.name in urls else i
            for i in self.instruments
        )
        boards = tuple(
            dataclasses.replace(b, serial=serials[b.name]) if b.name in serials else b for b in self.boards
        )
        return dataclasses.replace(self, instruments=inst, boards=boards)

    def endpoints(self) -> dict[str, Any]:
        """Every endpoint: board serial paths and instrument Modbus URLs."""
        return {
            "bench": self.name,
            "boards": {b.name: {"serial": b.serial, "baud": b.baud, "kind": b.emulates} for b in self.boards},
            "instruments": {
                i.name: {"url": i.url, "driver": i.driver, "unit": i.endpoint.unit} for i in self.instruments
            },
        }


class _Table:
    """A TOML table being validated: every read key is checked, unknown keys refused."""

    def __init__(self, data: Any, where: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{where}: unknown key {key!r} (expected one of: {', '.join(allowed)})"
                )

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = dataclasses.MISSING) -> Any:
        if key not in self.data:
            if default is dataclasses.MISSING:
                raise ConfigError(f"{self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{self.where}: key {key!r} must be {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.where}: key {key!r} must be finite, got {value!r}")
        return value


def _range(t: _Table, key: str) -> tuple[float, float] | None:
    value = t.get(key, list, None)
    if value is None:
        return None
    if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{t.where}: key {key!r} must be [min, max] numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi < lo:
        raise ConfigError(f"{t.where}: key {key!r} must be 0 <= min <= max, got {value!r}")
    return lo, hi


_INSTR_KEYS = ("name", "driver", "url", "unit", "baud", "model", "timeout_s", "retries", "channels", "limits",
               "current_limit_a", "safe_state")
_BOARD_KEYS = ("name", "kind", "emulates", "serial", "baud", "supply", "switch", "channel", "boot_time_s", "min_voltage_v",
               "idle_power_w", "cpus", "memory_mb")


def _instrument(data: Any, where: str, base_dir: pathlib.Path) -> InstrumentSpec:
    t = _Table(data, where, _INSTR_KEYS)
    name = t.get("name", str)
    t.where = where = f"{where} ({name})"
    driver = t.get("driver", str)
    url = t.get("url", str)
    unit = t.get("unit", int, None)
    baud = t.get("baud", int, None)
    if unit is not None and not 1 <= unit <= 247:
        raise ConfigError(f"{where}: key 'unit' must be 1..247, got {unit}")
    timeout_s = t.get("timeout_s", float, 0.5)
    if not 0 < timeout_s <= 30:
        raise ConfigError(f"{where}: key 'timeout_s' must be in (0, 30], got {timeout_s}")
    retries = t.get("retries", int, 2)
    if not 0 <= retries <= 10:
        raise ConfigError(f"{where}: key 'retries' must be 0..10, got {retries}")
    if driver in RELAY_DRIVERS:
        kind = "switch"
        profile = None
        default_baud = 9600
    else:
        kind = "supply"
        try:
            profile = load_profile(driver, base_dir)
        except ConfigError as exc:
            raise ConfigError(f"{where}: key 'driver': {exc}") from None
        default_baud = profile.default_baud
    try:
        endpoint = parse_modbus_url(url, unit=unit, baud=baud if baud is not None else default_baud)
    except ValueError as exc:
        raise ConfigError(f"{where}: key 'url': {exc}") from None
    if unit is not None and endpoint.unit != unit:
        raise ConfigError(f"{where}: key 'unit' = {unit} contradicts the unit in key 'url' ({endpoint.unit})")
    model = t.get("model", str, None)
    spec: dict[str, Any] = {}
    if kind == "supply":
        assert profile is not None
        if model is not None:
            try:
                m = profile.model(model)
            except UnknownModelError as exc:
                raise ConfigError(f"{where}: key 'model': {exc}") from None
        elif endpoint.is_simulated or profile.id_register is None:
            raise ConfigError(f"{where}: missing key 'model' (needed to simulate or scale this supply)")
        else:
            m = None
        lim = _Table(t.get("limits", dict), f"{where} limits", ("voltage_v", "current_a"))
        v_lim = _range(lim, "voltage_v")
        i_lim = _range(lim, "current_a")
        if v_lim is None or i_lim is None:
            raise ConfigError(f"{where} limits: keys 'voltage_v' and 'current_a' are required")
        if m is not None and (v_lim[1] > m.max_voltage_v or i_lim[1] > m.max_current_a):
            raise ConfigError(
                f"{where}: key 'limits' exceeds the {m.name}'s range (0..{m.max_voltage_v:g} V, 0..{m.max_current_a:g} A)"
            )
        ss = _Table(t.get("safe_state", dict, {}), f"{where} safe_state", ("output", "voltage_v", "current_a"))
        safe = SupplySafeState(
            output=ss.get("output", bool, False),
            voltage_v=ss.get("voltage_v", float, None),
            current_a=ss.get("current_a", float, None),
        )
        if safe.voltage_v is not None and not v_lim[0] <= safe.voltage_v <= v_lim[1]:
            raise ConfigError(f"{where} safe_state: key 'voltage_v' {safe.voltage_v} is outside limits {v_lim}")
        if safe.current_a is not None and not i_lim[0] <= safe.current_a <= i_lim[1]:
            raise ConfigError(f"{where} safe_state: key 'current_a' {safe.current_a} is outside limits {i_lim}")
        i_op = t.get("current_limit_a", float, i_lim[1])
        if not i_lim[0] <= i_op <= i_lim[1]:
            raise ConfigError(f"{where}: key 'current_limit_a' {i_op:g} is outside limits.current_a {i_lim}")
        spec.update(limits=SupplyLimits(v_lim, i_lim), safe_state=safe, profile=profile, current_limit_a=i_op)
        if t.get("channels", int, None) is not None:
            raise ConfigError(f"{where}: key 'channels' applies to relay boards only")
    else:
        channels = t.get("channels", int, 8)
        if not 1 <= channels <= 16:
            raise ConfigError(f"{where}: key 'channels' must be 1..16, got {channels}")
        for key in ("limits", "current_limit_a"):
            if key in t.data:
                raise ConfigError(f"{where}: key {key!r} applies to supplies only")
        ss = _Table(t.get("safe_state", dict, {}), f"{where} safe_state", ("on",))
        on = ss.get("on", list, [])
        for c in on:
            if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < channels:
                raise ConfigError(f"{where} safe_state: key 'on' must list channels 0..{channels - 1}, got {c!r}")
        spec.update(channels=channels, safe_state=SwitchSafeState(tuple(sorted(set(on)))))
    return InstrumentSpec(
        name=name, kind=kind, driver=driver, url=url, endpoint=endpoint, model=model,
        timeout_s=timeout_s, retries=retries, **spec,
    )


#: pyserial's URL schemes (serial_for_url); a network-shared port is rfc2217://HOST:PORT
#: (ser2net in front of the board's port, docs/boards.md) or socket://HOST:PORT (raw TCP)
SERIAL_URL_SCHEMES = ("rfc2217", "socket", "loop", "spy", "alt", "hwgrep", "cp2110")


def _check_serial_url(serial: str, where: str) -> None:
    """A board's ``serial`` that is a URL: a scheme pyserial knows and, for a network
    port, a host and a port number, so a typo fails at load and not at the first open."""
    if "://" not in serial:
        return
    scheme = serial.split("://", 1)[0]
    if scheme not in SERIAL_URL_SCHEMES:
        raise ConfigError(f"{where}: key 'serial': {serial!r} has an unknown URL scheme {scheme!r} "
                          f"(a device path, or one of {', '.join(s + '://' for s in SERIAL_URL_SCHEMES)})")
    if scheme in ("rfc2217", "socket"):
        u = urllib.parse.urlsplit(serial)
        try:
            port = u.port
        except ValueError:
            port = None
        if not u.hostname or port is None or not 0 < port < 65536:
            raise ConfigError(f"{where}: key 'serial': {serial!r} must be {scheme}://HOST:PORT "
                              "with a port number 1..65535")


def _board(data: Any, where: str) -> BoardSpec:
    t = _Table(data, where, _BOARD_KEYS)
    name = t.get("name", str)
    t.where = where = f"{where} ({name})"
    kind = t.get("kind", str)
    if kind not in BOARD_KINDS:
        raise ConfigError(f"{where}: key 'kind' must be one of {', '.join(BOARD_KINDS)}, got {kind!r}")
    if kind == "emulated":
        emulates = t.get("emulates", str)
        if emulates not in _BOARD_DEFAULTS:
            raise ConfigError(f"{where}: key 'emulates' must be jetson or rpi, got {emulates!r}")
        if "serial" in t.data:
            raise ConfigError(f"{where}: key 'serial' is assigned by the virtual bench for emulated boards")
        serial = ""
    elif kind == QEMU_KIND:
        if "emulates" in t.data:
            raise ConfigError(f"{where}: key 'emulates' applies to kind = \"emulated\" only")
        if "serial" in t.data:
            raise ConfigError(f"{where}: key 'serial' is assigned by the virtual bench for {QEMU_KIND} boards")
        emulates, serial = kind, ""
    else:
        if "emulates" in t.data:
            raise ConfigError(f"{where}: key 'emulates' applies to kind = \"emulated\" only")
        emulates = kind
        serial = t.get("serial", str)
        if not serial:
            raise ConfigError(f"{where}: key 'serial' must not be empty")
        _check_serial_url(serial, where)
    vmin, idle, boot = _BOARD_DEFAULTS[emulates]
    baud = t.get("baud", int, 115200)
    if baud <= 0:
        raise ConfigError(f"{where}: key 'baud' must be positive, got {baud}")
    channel = t.get("channel", int, None)
    switch = t.get("switch", str, None)
    if (channel is None) != (switch is None):
        raise ConfigError(f"{where}: keys 'switch' and 'channel' go together (the relay that powers the board)")
    b = BoardSpec(
        name=name, kind=kind, emulates=emulates, serial=serial, baud=baud,
        supply=t.get("supply", str, None), switch=switch, channel=channel,
        boot_time_s=t.get("boot_time_s", float, boot),
        min_voltage_v=t.get("min_voltage_v", float, vmin),
        idle_power_w=t.get("idle_power_w", float, idle),
        cpus=t.get("cpus", int, 1), memory_mb=t.get("memory_mb", int, 512),
    )
    for key in ("cpus", "memory_mb"):
        if key in t.data and kind != QEMU_KIND:
            raise ConfigError(f"{where}: key {key!r} applies to kind = \"{QEMU_KIND}\" only")
    if not 1 <= b.cpus <= 8:
        raise ConfigError(f"{where}: key 'cpus' must be 1..8, got {b.cpus}")
    if not 128 <= b.memory_mb <= 8192:
        raise ConfigError(f"{where}: key 'memory_mb' must be 128..8192, got {b.memory_mb}")
    for key in ("boot_time_s", "min_voltage_v", "idle_power_w"):
        if getattr(b, key) < 0:
            raise ConfigError(f"{where}: key {key!r} must be >= 0")
    return b


def parse_bench(data: dict[str, Any], path: str, base_dir: pathlib.Path | None = None) -> Bench:
    """Validate a parsed bench file; every error names ``path`` and the key."""
    base_dir = base_dir or pathlib.Path(path).resolve().parent
    top = _Table(data, path, ("bench", "instruments", "boards"))
    head = _Table(top.get("bench", dict, {}), f"{path} [bench]", ("name", "description"))
    name = head.get("name", str, pathlib.Path(path).stem)
    instruments = tuple(
        _instrument(d, f"{path} instruments[{k}]", base_dir) for k, d in enumerate(top.get("instruments", list, []))
    )
    boards = tuple(_board(d, f"{path} boards[{k}]") for k, d in enumerate(top.get("boards", list, [])))
    seen: set[str] = set()
    for item in (*instruments, *boards):
        if item.name in seen:
            raise ConfigError(f"{path}: name {item.name!r} is used twice (instruments and boards share names)")
        seen.add(item.name)
    by_name = {i.name: i for i in instruments}
    used: dict[tuple[str, int], str] = {}
    for k, b in enumerate(boards):
        where = f"{path} boards[{k}] ({b.name})"
        if b.supply is not None:
            if b.supply not in by_name or by_name[b.supply].kind != "supply":
                raise ConfigError(f"{where}: key 'supply' = {b.supply!r} is not a supply of this bench")
        if b.switch is not None:
            sw = by_name.get(b.switch)
            if sw is None or sw.kind != "switch":
                raise ConfigError(f"{where}: key 'switch' = {b.switch!r} is not a relay board of this bench")
            assert b.channel is not None
            if not 0 <= b.channel < sw.channels:
                raise ConfigError(f"{where}: key 'channel' = {b.channel} is not in 0..{sw.channels - 1}")
            if (b.switch, b.channel) in used:
                raise ConfigError(
                    f"{where}: key 'channel': {b.switch} channel {b.channel} already powers {used[(b.switch, b.channel)]!r}"
                )
            used[(b.switch, b.channel)] = b.name
        for key in ("supply", "switch"):
            ref = getattr(b, key)
            if ref is None:
                continue
            if b.bench_started and not by_name[ref].simulated:
                raise ConfigError(
                    f"{where}: key {key!r}: an {b.kind} board can only be fed by a simulated instrument (sim://...)"
                )
            if not b.bench_started and by_name[ref].simulated:
                raise ConfigError(
                    f"{where}: key {key!r}: a real board cannot be fed by a simulated instrument ({by_name[ref].url})"
                )
    return Bench(name=name, path=path, boards=boards, instruments=instruments, description=head.get("description", str, ""))


def check_runnable(bench: Bench, boards: Iterable[str] | None = None) -> None:
    """Raise :class:`ConfigError` when a run cannot power ``boards`` (default: every
    board of the bench) on ``bench``, with the message a run gives.

    A run powers its boards from one programmable supply and switches them through
    at most one relay board (the power loop): it needs a board, a supply, and its
    boards on one supply and one relay board. ``hil bench check`` calls it with no
    ``boards``; a run calls it with the scenario's boards. Static: nothing is
    connected to.
    """
    names = list(boards) if boards is not None else [b.name for b in bench.boards]
    chosen = [bench.board(n) for n in names if n in {b.name for b in bench.boards}]
    if not chosen:
        raise ConfigError(f"{bench.path}: bench {bench.name!r} has no board to run the payload on")
    if not bench.supplies:
        raise ConfigError(f"{bench.path}: bench {bench.name!r}: no programmable supply to power the boards")
    first = chosen[0]
    supply = first.supply or bench.supplies[0].name
    for b in chosen:
        if b.supply is not None and b.supply != supply:
            raise ConfigError(
                f"{bench.path}: board {b.name!r} is fed by {b.supply!r}, not by {supply!r}: "
                "a run powers its boards from one supply"
            )
        if b.switch is not None and b.switch != first.switch:
            raise ConfigError(
                f"{bench.path}: board {b.name!r} is switched by {b.switch!r}, not by "
                f"{first.switch or 'no relay board'!r}: a run switches its boards through one relay board"
            )


def load_bench(path: str | pathlib.Path | None = None) -> Bench:
    """Load and validate a bench file; ``None`` loads the default virtual bench."""
    p = pathlib.Path(path) if path is not None else DEFAULT_BENCH
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: bench file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read bench file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_bench(data, str(p), p.resolve().parent)
