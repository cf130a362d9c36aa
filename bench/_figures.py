"""Output shared by the benchmarks: one JSON object on one line, or a two-column table."""

from __future__ import annotations

import json


def print_figures(res: dict, as_json: bool, width: int = 34) -> None:
    """``res`` as compact JSON on one line (``--json``), else as a figure/value table."""
    if as_json:
        print(json.dumps(res, separators=(",", ":")))
        return
    print(f"{'figure':<{width}}{'value':>14}")
    for k, v in res.items():
        print(f"{k:<{width}}{v!s:>14}")
