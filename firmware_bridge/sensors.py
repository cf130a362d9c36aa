"""Board sensors read from Linux sysfs/procfs, with a configurable root.

Layouts read (paths relative to ``root``, which is ``/`` on a real board):

- ``sys/class/thermal/thermal_zone*/{type,temp}``: temperatures in millidegrees C;
- ``sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in[123]_{label,input}`` (bus mV)
  and ``curr[123]_input`` (mA): the INA3221 power monitors of a Jetson Orin;
- ``sys/devices/platform/soc/soc:firmware/get_throttled``: Raspberry Pi
  under-voltage/throttling flags (hex, as ``vcgencmd get_throttled``);
- ``proc/stat`` (aggregate ``cpu`` line) and ``proc/meminfo``;
- ``proc/device-tree/model``: the board model string.

Stdlib only. Missing files are skipped, never fatal: a board without INA3221
simply reports no rails.
"""

from __future__ import annotations

import glob
import os
import re

ZERO_C_K = 273.15


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _natural_key(path: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


class SysfsSensors:
    """Reads a real (or recorded) board's sensors under ``root``."""

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self._prev_cpu: tuple[int, int] | None = None
        self.thermal_zones = self._find_thermal_zones()
        self.rail_channels = self._find_rails()
        self.temp_names = [name for name, _ in self.thermal_zones]
        self.rail_names = [name for name, _, _ in self.rail_channels]

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _find_thermal_zones(self) -> list[tuple[str, str]]:
        zones = []
        seen: dict[str, int] = {}
        for d in sorted(glob.glob(self._p("sys/class/thermal/thermal_zone*")), key=_natural_key):
            name = _read(os.path.join(d, "type")) or os.path.basename(d)
            if name in seen:  # keep names unique
                seen[name] += 1
                name = f"{name}.{seen[name]}"
            else:
                seen[name] = 0
            zones.append((name, os.path.join(d, "temp")))
        return zones

    def _find_rails(self) -> list[tuple[str, str, str]]:
        rails = []
        pattern = self._p("sys/bus/i2c/drivers/ina3221*/*/hwmon/hwmon*")
        for d in sorted(glob.glob(pattern), key=_natural_key):
            for ch in (1, 2, 3):
                label = _read(os.path.join(d, f"in{ch}_label"))
                v = os.path.join(d, f"in{ch}_input")
                i = os.path.join(d, f"curr{ch}_input")
                if label and os.path.exists(v) and os.path.exists(i):
                    rails.append((label, v, i))
        return rails

    def model(self) -> str:
        m = _read(self._p("proc/device-tree/model"))
        return m.rstrip("\x00") if m else "unknown"

    def kind(self) -> str:
        m = self.model().lower()
        if "jetson" in m or "nvidia" in m:
            return "jetson"
        if "raspberry" in m:
            return "rpi"
        if m == "linux,dummy-virt":  # QEMU's arm64 virt machine (hil_rig.boards: kind qemu-arm64)
            return "qemu-arm64"
        return "linux"

    def temperatures_k(self) -> dict[str, float]:
        out = {}
        for name, path in self.thermal_zones:
            v = _read(path)
            try:
                milli_c = int(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                milli_c = None  # unreadable or empty (a disabled zone)
            # Tegra reports an absent sensor (e.g. CV zones on Orin Nano) as -256000
            ok = milli_c is not None and milli_c > -100_000
            out[name] = milli_c / 1000.0 + ZERO_C_K if ok else float("nan")
        return out

    def rails(self) -> dict[str, tuple[float, float]]:
        """Rail name -> (bus voltage V, current A)."""
        out = {}
        for name, vpath, ipath in self.rail_channels:
            try:
                out[name] = (int(_read(vpath)) / 1000.0, int(_read(ipath)) / 1000.0)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                out[name] = (float("nan"), float("nan"))
        return out

    def power_w(self) -> float:
        """Board input power: the VDD_IN rail if present, else the sum of all rails."""
        rails = self.rails()
        if not rails:
            return float("nan")
        for key in ("VDD_IN", "POM_5V_IN", "5V_IN"):
            if key in rails:
                v, i = rails[key]
                return v * i
        return sum(v * i for v, i in rails.values())

    def pi_throttled(self) -> int:
        v = _read(self._p("sys/devices/platform/soc/soc:firmware/get_throttled"))
        if not v:
            return 0
        v = v.split("=")[-1]
        try:
            return int(v, 16)
        except ValueError:
            return 0

    def cpu_load(self) -> float:
        """Busy fraction since the previous call (since boot on the first call)."""
        line = (_read(self._p("proc/stat")) or "").split("\n", 1)[0].split()
        if not line or line[0] != "cpu":
            return float("nan")
        vals = [int(x) for x in line[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        total = sum(vals[:8])  # guest time is already counted in user
        prev = self._prev_cpu
        self._prev_cpu = (total, idle)
        if prev is not None and total > prev[0]:
            return 1.0 - (idle - prev[1]) / (total - prev[0])
        return 1.0 - idle / total if total else float("nan")

    def memory_kib(self) -> tuple[int, int]:
        """(MemTotal, MemAvailable) in KiB."""
        info = {}
        for ln in (_read(self._p("proc/meminfo")) or "").splitlines():
            k, _, rest = ln.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                info[k] = int(parts[0])
        total = info.get("MemTotal", 0)
        return total, info.get("MemAvailable", info.get("MemFree", 0))
