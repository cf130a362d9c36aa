"""hil campaign (issue 23): real Dask schedulers and workers on 127.0.0.1, real short runs.

- a planted weakness (an extra requirement that any stuck wheel breaks) is found,
  confirmed, shrunk by hypothesis to one fault at the low ends of its ranges, and the
  minimal scenario replays through ``hil run`` with the same verdict and archive digest;
- ``dask scheduler`` and two ``dask worker`` processes, one worker SIGKILLed mid-campaign:
  every schedule has exactly one result;
- a run past its budget is killed, recorded as a timeout, confirmed and shrunk to the
  smallest schedule that still times out;
- an interrupted campaign resumed gives the results of one run straight through;
- bad campaign files: exit 2 naming the file and the key.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("distributed")

BASE = """
[scenario]
name = "camp_base"
epoch = "2026-03-20T00:00:00Z"
duration = "1 min"
seed = 3

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[payload]
workload = "idle"

[[requirement]]
kind = "soc_floor"
min = 0.3
"""

CAMPAIGN = """
[campaign]
name = "{name}"
scenario = "base.toml"
duration = "{duration}"
examples = {examples}
seed = 4
faults_per_schedule = [1, 3]
timeout_s = {timeout_s}
timeout_per_sim_s = 0
shrink_runs = 40

[[space]]
kind = "sensor_bias"
sensor = ["gyro", "mag"]
at = [{{ event = "t", from = "0 s", to = "50 s" }}]
duration = ["1 s", "20 s"]
bias = [-0.01, 0.01]

[[space]]
kind = "wheel_stuck"
wheel = ["x", "y", "z"]
at = [{{ event = "t", from = "10 s", to = "50 s" }}]
duration = ["1 s", "10 s"]
{extra}
"""

PLANTED = """
# the planted weakness: any stuck wheel breaks it
[[requirement]]
kind = "event_never_seen"
name = "planted"
event = "wheel_stuck_start"
source = "fault"
"""


def _campaign(tmp: pathlib.Path, name: str = "t", examples: int = 6, extra: str = "", timeout_s: float = 300,
              duration: str = "1 min") -> pathlib.Path:
    (tmp / "base.toml").write_text(BASE)
    p = tmp / f"{name}.toml"
    p.write_text(CAMPAIGN.format(name=name, examples=examples, extra=extra, timeout_s=timeout_s, duration=duration))
    return p


def _hil(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _records(out: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_planted_weakness_is_found_confirmed_shrunk_and_replays(tmp_path: pathlib.Path) -> None:
    from hil_rig.campaign.worker import archive_digest

    out = tmp_path / "out"
    res = _hil("campaign", str(_campaign(tmp_path, extra=PLANTED)), "--workers", "2", "--out", str(out))
    assert res.returncode == 1, res.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["schedules"] == len(json.loads((out / "schedules.json").read_text())["schedules"])
    assert sum(s["results"].values()) == s["schedules"]
    fails = {tuple(f["failed"]): f for f in s["failures"]}
    assert ("planted",) in fails, s["failures"]
    assert fails[("planted",)]["confirmed"] and not fails[("planted",)]["flakes"]
    [m] = [m for m in s["minimal"] if m["failed"] == ["planted"]]
    # hypothesis's shrinker: one fault, the first wheel, the low ends of the ranges
    assert m["faults"] == [{"kind": "wheel_stuck", "at": "10 s", "duration": "1 s", "wheel": "x"}], m
    assert m["replay_identical"], m
    # the minimal scenario replays through hil run: same verdict, bit-identical archive
    replay = tmp_path / "replay"
    r = _hil("run", m["file"], "--out", str(replay))
    assert r.returncode == 1, r.stderr[-2000:]
    verdicts = json.loads((replay / "summary.json").read_text())["requirements"]
    assert sorted(v["name"] for v in verdicts if not v["passed"]) == ["planted"]
    assert archive_digest(replay) == m["digest"]
    assert "MINIMAL" in (out / "summary.txt").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_running_a_run(out: pathlib.Path) -> int | None:
    """The pid of the Dask worker process whose task runs a ``hil run`` under ``out``."""
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"hil_rig.cli" in cmd and b"run" in cmd and str(out).encode() in b" ".join(cmd):
                stat = (proc / "stat").read_text()
                return int(stat.rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    return None


def test_real_scheduler_and_a_worker_killed_mid_campaign(tmp_path: pathlib.Path) -> None:
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1; one worker process
    is SIGKILLed while runs are under way; its nanny restarts it, the scheduler reschedules
    its task, and every schedule ends with exactly one result."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                           "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out = tmp_path / "out"
        camp = subprocess.Popen([sys.executable, "-m", "hil_rig.cli", "campaign", str(_campaign(tmp_path, examples=5)),
                                 "--scheduler", addr, "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # wait until a worker process runs a hil run of this campaign, then SIGKILL that worker
        killed = None
        for _ in range(1200):
            killed = _worker_running_a_run(out)
            if killed or camp.poll() is not None:
                break
            time.sleep(0.1)
        if not killed:
            camp.kill()
            pytest.fail(f"no worker ever ran a hil run; hil campaign said: {camp.communicate()[1][-3000:]}")
        os.kill(killed, signal.SIGKILL)
        stdout, stderr = camp.communicate(timeout=600)
        assert camp.returncode in (0, 1), stderr[-3000:]
        recs = [r for r in _records(out) if r["phase"] == "example"]
        plan = json.loads((out / "schedules.json").read_text())["schedules"]
        assert sorted(r["id"] for r in recs) == list(range(len(plan)))  # none lost, none twice
        assert all(r["status"] == "pass" for r in recs), [(r["id"], r["status"], r.get("error")) for r in recs]
        assert "dashboard" in stderr or "scheduler tcp://127.0.0.1" in stderr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_run_past_its_budget_is_killed_recorded_and_shrunk_as_a_timeout(tmp_path: pathlib.Path) -> None:
    """A budget of 0.5 s: every run is killed before it can end (Python does not even start
    the rig in that time, under any load), so every run times out. A timeout is a failure of
    its own kind: confirmed by a second run, then shrunk by hypothesis to the smallest
    schedule that still times out: one fault, the first kind and target of the space, at the
    low ends of its ranges (the bias range's simplest value, 0)."""
    out = tmp_path / "out"
    camp = _campaign(tmp_path, examples=2, timeout_s=0.5)
    camp.write_text(camp.read_text().replace("shrink_runs = 40", "shrink_runs = 25"))
    res = _hil("campaign", str(camp), "--workers", "2", "--out", str(out))
    assert res.returncode == 1, res.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["results"] == {"timeout": s["schedules"]}
    assert len(s["timeouts"]) == s["schedules"]
    [group] = s["failures"]
    assert group["status"] == "timeout" and group["failed"] == []
    assert sorted(group["confirmed"]) == list(range(s["schedules"])) and not group["flakes"]
    [m] = s["minimal"]
    assert m["status"] == "timeout" and m["replay_identical"], m
    assert m["faults"] == [{"kind": "sensor_bias", "at": "0 s", "duration": "1 s", "sensor": "gyro", "bias": 0.0}], m
    recs = _records(out)
    shrunk = [r for r in recs if r["phase"] == "shrink"]
    assert 0 < len(shrunk) <= 25 and m["shrink_runs"] == len(shrunk)
    assert all(r["status"] == "timeout" for r in recs)
    assert "TIMEOUT" in res.stdout and "MINIMAL TIMEOUT" in res.stdout


@pytest.mark.slow
def test_resume_after_an_interruption_gives_the_same_results(tmp_path: pathlib.Path) -> None:
    camp = _campaign(tmp_path, examples=4)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _hil("campaign", str(camp), "--workers", "2", "--out", str(whole)).returncode == 0
    assert _hil("campaign", str(camp), "--workers", "2", "--out", str(part)).returncode == 0
    # the interruption: the last two results never arrived (the last line torn mid-write)
    lines = (part / "results.jsonl").read_text().splitlines(keepends=True)
    (part / "results.jsonl").write_text("".join(lines[:-2]) + lines[-2][:40])
    again = _hil("campaign", str(camp), "--workers", "2", "--out", str(part))
    assert again.returncode == 2 and "--resume" in again.stderr
    res = _hil("campaign", str(camp), "--workers", "2", "--out", str(part), "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "(2 done before)" in res.stderr

    def by_id(out: pathlib.Path) -> dict:
        return {r["id"]: (r["key"], r["status"], r["digest"]) for r in _records(out) if r["phase"] == "example"}

    assert by_id(part) == by_id(whole)
    assert len([r for r in _records(part) if r["phase"] == "example"]) == 4


@pytest.mark.parametrize("edit, where", [
    (("examples = 6", "examples = 0"), "[campaign] examples"),
    (("kind = \"wheel_stuck\"", "kind = \"wheel_stik\""), "space[1].kind"),
    (("from = \"10 s\"", "from = \"ten s\""), "space[1].at[0].from"),
    (("bias = [-0.01, 0.01]", "bias = [-0.01, 1e9]"), "space[0].bias"),
    (("wheel = [\"x\", \"y\", \"z\"]", "wheel = [\"w\"]"), "space[1].wheel"),
    (("shrink_runs = 40", "shrink_runs = 40\nspeed = 2"), "[campaign] speed"),
    (("scenario = \"base.toml\"", "scenario = \"nowhere\""), "[campaign] scenario"),
    (("duration = \"1 min\"", "duration = \"0 s\""), "[campaign] duration"),
])
def test_bad_campaign_files_name_the_file_and_the_key(tmp_path: pathlib.Path, edit: tuple[str, str],
                                                      where: str) -> None:
    p = _campaign(tmp_path)
    p.write_text(p.read_text().replace(*edit))
    res = _hil("campaign", str(p), "--workers", "1", "--out", str(tmp_path / "out"), timeout=120)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert f"{p}: {where}" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_bad_extra_requirement_names_the_campaign_file(tmp_path: pathlib.Path) -> None:
    p = _campaign(tmp_path, extra=PLANTED.replace("wheel_stuck_start", "wheel_stuk_start"))
    res = _hil("campaign", str(p), "--out", str(tmp_path / "out"), timeout=120)
    assert res.returncode == 2 and f"{p}: requirement[0].event" in res.stderr, res.stderr


def test_generation_is_the_same_for_the_same_seed(tmp_path: pathlib.Path) -> None:
    from hil_rig.campaign import load_campaign
    from hil_rig.campaign.schedules import generate

    spec = load_campaign(_campaign(tmp_path, examples=30))
    a, b = generate(spec), generate(spec)
    assert a == b and len(a) > 10
    assert {f["kind"] for s in a for f in s} == {"sensor_bias", "wheel_stuck"}
