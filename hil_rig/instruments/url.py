"""Modbus endpoint URLs, in the spirit of pyserial's ``serial_for_url``.

The scheme says which transport:

- ``modbus-tcp://HOST:PORT?unit=N`` : Modbus TCP (port defaults to 502);
- ``modbus-rtu://SERIAL?baud=B&unit=N&parity=P&stopbits=S`` : Modbus RTU over a
  serial port; ``SERIAL`` is a device path (``modbus-rtu:///dev/ttyUSB0``) or a
  pyserial URL (``modbus-rtu://socket://host:port`` for RTU over a TCP bridge);
- a bare device path (``/dev/ttyUSB0``) is RTU too, with the defaults below;
- ``sim://tcp`` and ``sim://rtu`` : a simulated instrument that the virtual
  bench starts and replaces by one of the above.

>>> parse_modbus_url("modbus-tcp://127.0.0.1:5020?unit=3")
ModbusEndpoint(transport='tcp', host='127.0.0.1', port=5020, serial='', baud=115200, parity='N', stopbits=1, unit=3)
>>> parse_modbus_url("modbus-rtu:///dev/ttyUSB0?baud=9600").serial
'/dev/ttyUSB0'
"""

from __future__ import annotations

import dataclasses
import urllib.parse

DEFAULT_BAUD = 115200
DEFAULT_UNIT = 1
_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


@dataclasses.dataclass(frozen=True)
class ModbusEndpoint:
    """Where an instrument is and how to reach it."""

    transport: str  # "tcp", "rtu" or "sim-tcp"/"sim-rtu" (not yet started)
    host: str = ""
    port: int = 0
    serial: str = ""
    baud: int = DEFAULT_BAUD
    parity: str = "N"
    stopbits: int = 1
    unit: int = DEFAULT_UNIT

    @property
    def is_simulated(self) -> bool:
        return self.transport.startswith("sim-")

    def url(self) -> str:
        """The canonical URL of this endpoint (parses back to an equal endpoint)."""
        if self.transport == "tcp":
            return f"modbus-tcp://{self.host}:{self.port}?unit={self.unit}"
        if self.transport == "rtu":
            q = f"baud={self.baud}&unit={self.unit}"
            if self.parity != "N":
                q += f"&parity={self.parity}"
            if self.stopbits != 1:
                q += f"&stopbits={self.stopbits}"
            return f"modbus-rtu://{self.serial}?{q}"
        return f"sim://{self.transport[4:]}?unit={self.unit}&baud={self.baud}"


def _int(value: str, what: str, url: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{what} in {url!r} must be an integer, got {value!r}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{what} in {url!r} must be in {lo}..{hi}, got {n}")
    return n


def _query(query: str, url: str, allowed: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if key not in allowed:
            raise ValueError(
                f"unknown parameter {key!r} in {url!r} (expected one of {', '.join(sorted(allowed))})"
            )
        out[key] = values[-1]
    return out


def _serial_params(q: dict[str, str], url: str) -> dict[str, object]:
    out: dict[str, object] = {}
    if "baud" in q:
        baud = _int(q["baud"], "baud", url, 1, 4_000_000)
        if baud not in _BAUDS:
            raise ValueError(f"baud in {url!r} must be one of {_BAUDS}, got {baud}")
        out["baud"] = baud
    if "parity" in q:
        parity = q["parity"].upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"parity in {url!r} must be N, E or O, got {q['parity']!r}")
        out["parity"] = parity
    if "stopbits" in q:
        out["stopbits"] = _int(q["stopbits"], "stopbits", url, 1, 2)
    return out


def parse_modbus_url(url: str, *, unit: int | None = None, baud: int | None = None) -> ModbusEndpoint:
    """Parse an instrument URL; ``unit``/``baud`` are defaults that the URL may override.

    Raises ``ValueError`` with a message naming the URL and what was wrong.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("an instrument URL must be a non-empty string")
    url = url.strip()
    base: dict[str, object] = {"unit": DEFAULT_UNIT if unit is None else unit}
    if baud is not None:
        base["baud"] = baud
    if url.startswith("modbus-tcp://"):
        parts = urllib.parse.urlsplit(url)
        q = _query(parts.query, url, {"unit"})
        if not parts.hostname:
            raise ValueError(f"no host in {url!r} (expected modbus-tcp://HOST:PORT?unit=N)")
        try:
            port = parts.port if parts.port is not None else 502
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        if port == 0:
            raise ValueError(f"port in {url!r} must be 1..65535")
        if "unit" in q:
            base["unit"] = _int(q["unit"], "unit", url, 0, 247)
        return ModbusEndpoint("tcp", host=parts.hostname, port=port, **base)  # type: ignore[arg-type]
    if url.startswith("sim://"):
        rest, _, query = url[len("sim://") :].partition("?")
        if rest not in ("tcp", "rtu"):
            raise ValueError(f"simulated instrument URL {url!r} must be sim://tcp or sim://rtu")
        q = _query(query, url, {"unit", "baud"})
        if "unit" in q:
            base["unit"] = _int(q["unit"], "unit", url, 1, 247)
        base.update(_serial_params(q, url))
        return ModbusEndpoint("sim-" + rest, **base)  # type: ignore[arg-type]
    if url.startswith("modbus-rtu://"):
        rest = url[len("modbus-rtu://") :]
        serial, _, query = rest.partition("?")
        # a nested pyserial URL keeps its own query after the first '?': only our
        # parameters are taken from the last query part
        if "://" in serial and "?" in query:
            inner, _, query = query.rpartition("?")
            serial = f"{serial}?{inner}"
        q = _query(query, url, {"unit", "baud", "parity", "stopbits"})
        if not serial:
            raise ValueError(f"no serial port in {url!r} (expected modbus-rtu:///dev/ttyUSB0?baud=115200)")
        if "unit" in q:
            base["unit"] = _int(q["unit"], "unit", url, 1, 247)
        base.update(_serial_params(q, url))
        return ModbusEndpoint("rtu", serial=serial, **base)  # type: ignore[arg-type]
    if url.startswith("/") or url.startswith("COM"):
        return ModbusEndpoint("rtu", serial=url, **base)  # type: ignore[arg-type]
    raise ValueError(
        f"unsupported instrument URL {url!r}: expected modbus-tcp://HOST:PORT?unit=N, "
        "modbus-rtu://SERIAL?baud=B&unit=N, a device path, or sim://tcp / sim://rtu"
    )
