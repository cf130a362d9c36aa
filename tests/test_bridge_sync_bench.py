"""bench/sync.py runs against a real emulated board and prints one JSON object.

No timing is asserted here: the figures are benchmark output, not test bounds.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "sync.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_sync_bench_json_has_the_figures() -> None:
    res = _bench("--json", "--syncs", "30", "--repeat", "1", "--ended", "5")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    for key in ("link_main_cpu_us", "agent_cpu_us", "link_wall_us", "threadless_main_cpu_us",
                "threadless_wall_us", "link_vs_threadless_cpu", "read_on_wait_main_cpu_us",
                "read_on_wait_wall_us", "read_on_wait_vs_threadless_cpu"):
        assert data[key] >= 0, key
    assert data["link_wall_us"] > 0 and data["threadless_wall_us"] > 0
    assert data["read_on_wait_wall_us"] > 0
    # the report held the running job and the capped ended ones (4 of the 5)
    assert data["report_json_bytes_without_hk"] > 5 * 40
    assert (data["syncs"], data["repeat"], data["ended"]) == (30, 1, 5)


def test_sync_bench_rejects_bad_arguments() -> None:
    for args, name in ((("--syncs", "0"), "--syncs"), (("--repeat", "0"), "--repeat"),
                       (("--ended", "-1"), "--ended")):
        res = _bench(*args)
        assert res.returncode == 2 and name in res.stderr, res.stderr
