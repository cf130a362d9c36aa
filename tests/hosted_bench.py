"""A bench file that points a run at instruments and boards hosted by a test (a
``VirtualBench`` the test started, so they outlive the run), as it would point
at a lab bench: Modbus URLs and serial ports. Shared by the run's tests."""

from __future__ import annotations

import pathlib
from typing import Any


def write_bench_file(vb: Any, path: pathlib.Path, name: str = "hosted", kinds: dict[str, str] | None = None,
                     serial: dict[str, str] | None = None) -> pathlib.Path:
    """Write the bench file of ``vb``'s endpoints to ``path``; ``kinds`` and ``serial``
    override a board's kind or serial port (by board name)."""
    lines = ["[bench]", f'name = "{name}"']
    for i in vb.bench.instruments:
        lines += ["[[instruments]]", f'name = "{i.name}"', f'driver = "{i.driver}"', f'url = "{i.url}"']
        if i.kind == "supply":
            lines += [f'model = "{i.model}"', "limits = { voltage_v = [0.0, 30.0], current_a = [0.0, 10.0] }",
                      "safe_state = { output = false }"]
        else:
            lines += [f"channels = {i.channels}", "safe_state = { on = [] }"]
    for b in vb.bench.boards:
        kind = (kinds or {}).get(b.name, b.emulates)
        port = (serial or {}).get(b.name, b.serial)
        lines += ["[[boards]]", f'name = "{b.name}"', f'kind = "{kind}"', f'serial = "{port}"',
                  f'supply = "{b.supply}"', f'switch = "{b.switch}"', f"channel = {b.channel}",
                  f"boot_time_s = {b.boot_time_s}"]
    path.write_text("\n".join(lines) + "\n")
    return path
