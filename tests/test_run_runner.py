"""`hil run` end to end on the virtual bench: run directory, verdicts and exit
codes, determinism of the archive, and SIGTERM (real subprocess, real signal)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from hil_rig.archive import REPRODUCIBLE_TABLES, load_run, table_rows

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCENARIO = """
[scenario]
name = "{name}"
epoch = "2026-03-20T00:00:00Z"
duration = "{duration}"
seed = {seed}

[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"

[payload]
workload = "{workload}"

[[requirement]]
kind = "soc_floor"
min = {floor}

[[requirement]]
kind = "payload_temp_max"
max_c = 70
"""


def _scenario(tmp: pathlib.Path, name: str = "short", duration: str = "3 min", seed: int = 1,
              workload: str = "idle", floor: float = 0.3) -> pathlib.Path:
    p = tmp / f"{name}.toml"
    p.write_text(SCENARIO.format(name=name, duration=duration, seed=seed, workload=workload, floor=floor))
    return p


def _assert_same_archives(a_dir: pathlib.Path, b_dir: pathlib.Path) -> None:
    """Every archive table of two runs identical, row for row (naming the first difference)."""
    for table in REPRODUCIBLE_TABLES:
        a, b = table_rows(a_dir, table), table_rows(b_dir, table)
        assert len(a) == len(b), f"table {table}: {len(a)} rows vs {len(b)}"
        for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
            assert ra == rb, f"table {table} row {i} differs:\n{ra}\n{rb}"


def _runs_with(path: pathlib.Path, tmp: pathlib.Path, attr: str) -> dict:
    """The scenario at ``path`` run to its end twice in this process, with the Run
    option ``attr`` (RunOptions) False, then True (output in tmp/off and tmp/on); the Run
    objects by that value, each asserted to pass."""
    from hil_rig.run import Run
    from hil_rig.scenario import load_scenario

    sc = load_scenario(path)
    runs = {}
    for value in (False, True):
        run = Run(sc, out=tmp / ("on" if value else "off"))
        setattr(run.options, attr, value)
        with run:
            run.run_until(run.duration_ns)
            assert run.finish().passed
        runs[value] = run
    return runs


def _hil(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_run_writes_a_complete_run_directory(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "run"
    res = _hil("run", str(_scenario(tmp_path, workload="compute")), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    for f in ("telemetry.sqlite", "events.log", "summary.json", "junit.xml"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["sim_seconds"] == 180.0
    assert summary["wall_seconds"] > 0 and summary["bench"].startswith("'virtual'")
    assert [r["name"] for r in summary["requirements"]] == ["soc_floor", "payload_temp_max"]
    assert summary["rt_priority"] == (1 if _real_time_permitted() else None)
    cases = ET.parse(out / "junit.xml").getroot().findall("testcase")
    assert [c.get("name") for c in cases] == ["soc_floor", "payload_temp_max"]
    run = load_run(out)
    tm = run["telemetry"]
    assert len(tm) == 181 and tm["t_ns"][-1] == 180 * 10**9
    assert set(run["payload"]["board"]) == {"jetson0", "rpi0"}
    kinds = set(run["events"]["kind"])
    assert {"run_start", "run_end", "verdict", "mode_transition", "board_power"} <= kinds
    # the flight software really flew: it left BOOT and the boards answered its housekeeping
    assert tm["fsw_mode"].max() >= 1 and (run["payload"]["temp_k"] > 250).any()
    # no wall-clock value leaked into the archive
    assert "wall" not in " ".join(run.meta) and "wall" not in " ".join(run["channels"]["name"])


def test_failed_requirement_exits_1(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "run"
    res = _hil("run", str(_scenario(tmp_path, duration="30 s", floor=0.95)), "--out", str(out),
               "--rt-priority", "0")
    assert res.returncode == 1, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and summary["rt_priority"] is None  # turned off
    soc = summary["requirements"][0]
    assert soc["name"] == "soc_floor" and soc["passed"] is False and "floor 0.950" in soc["detail"]
    failures = ET.parse(out / "junit.xml").getroot().findall("testcase/failure")
    assert len(failures) == 1 and "floor 0.950" in failures[0].get("message")


@pytest.mark.parametrize("argv, needle", [
    (["run", "no-such-scenario"], "no such scenario file; shipped scenarios: "),
    (["run", "--duration", "5 parsecs"], "--duration: unknown unit 'parsecs'"),
    (["run", "--virtual", "--speed", "3"], "either --virtual or --speed"),
    (["run", "--bench", "/nonexistent/bench.toml", "--duration", "1 s"], "bench file not found"),
    (["run", "--rt-priority", "100"], "--rt-priority: expected an integer in 0..99, got '100'"),
    (["run", "--rt-priority", "high"], "--rt-priority: expected an integer in 0..99, got 'high'"),
])
def test_bad_input_is_a_clear_error(argv: list[str], needle: str) -> None:
    res = _hil(*argv)
    assert res.returncode == 2 and needle in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def _real_time_permitted() -> bool:
    """Whether a process here may take SCHED_FIFO (asked of a fresh interpreter,
    not of the code under test)."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


_POLICY_PROBE = "import os; print(os.sched_getscheduler(0))"


def test_loop_priority_is_real_time_for_the_block_only_and_not_inherited() -> None:
    import threading

    from hil_rig.run import loop_priority

    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    with loop_priority(3) as applied:
        inside = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
        seen: list[int] = []
        t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
        t.start()
        t.join()
        child = subprocess.run([sys.executable, "-c", _POLICY_PROBE], capture_output=True, text=True)
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before  # restored
    if _real_time_permitted():
        assert applied == 3
        assert inside == (os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 3)
        # a thread or a process started meanwhile (a rebooted board, a job worker) is normal
        assert seen == [os.SCHED_OTHER] and int(child.stdout) == os.SCHED_OTHER
    else:
        assert applied is None and inside == before


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def test_the_emulated_boards_agents_share_the_loops_priority_and_their_job_workers_do_not(
        tmp_path: pathlib.Path) -> None:
    """While the loop runs at real-time priority, the virtual bench's agents do too (a busy
    machine must not queue them behind other work while the loop waits on them); their
    job workers stay at the normal policy; after the loop, the agents are normal again."""
    from hil_rig.run import Run
    from hil_rig.scenario import load_scenario

    if not _real_time_permitted():
        pytest.skip("real-time priority is not permitted here")
    fifo = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
    run = Run(load_scenario(_scenario(tmp_path, duration="20 min", workload="compute")), out=tmp_path / "out")
    seen: dict[str, list] = {"agents": [], "workers": []}

    def sample() -> None:  # from inside the loop, once a simulated second
        for pid in run.parts.vb.board_pids():
            seen["agents"].append(os.sched_getscheduler(pid))
            for child in _children(pid):
                try:
                    seen["workers"].append(os.sched_getscheduler(child))
                except OSError:
                    pass  # it ended meanwhile

    with run:
        before = {os.sched_getscheduler(pid) for pid in run.parts.vb.board_pids()}
        recorder_second = run.parts.recorder.second
        run.parts.recorder.second = lambda parts, t, *rest: (recorder_second(parts, t, *rest), sample())
        run.run_until(run.duration_ns)
        after = {os.sched_getscheduler(pid) for pid in run.parts.vb.board_pids()}
        assert run.rt_applied == 1
        assert run.finish().passed
    assert len(seen["agents"]) >= 2 * 1200 and len(seen["workers"]) > 0
    assert before == after == {os.SCHED_OTHER}
    assert set(seen["agents"]) == {fifo}
    assert set(seen["workers"]) == {os.SCHED_OTHER}


def test_a_run_keeps_what_it_built_out_of_the_collectors_sight_until_it_closes(tmp_path: pathlib.Path) -> None:
    """What start() built lives as long as the run: frozen (gc.freeze) for the loop,
    so that a full collection walks only what the loop made; released at close, so a
    process that runs many runs (a campaign's worker) keeps nothing of a closed one."""
    import gc

    from hil_rig.run import Run
    from hil_rig.scenario import load_scenario

    gc.unfreeze()
    run = Run(load_scenario(_scenario(tmp_path, duration="2 min", workload="idle")), out=tmp_path / "out")
    with run:  # (started on entry)
        frozen = gc.get_freeze_count()
        run.finish()
    assert frozen > 10_000  # the run's parts, the modules it imported, ...
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_loop_priority_without_permission_runs_normally() -> None:
    code = (
        "import os, resource\n"
        "from hil_rig.run import loop_priority\n"
        "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "with loop_priority(1) as applied:\n"
        "    print(applied, os.sched_getscheduler(0) == os.SCHED_OTHER)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["None", "True"]


@pytest.mark.parametrize("bad", [0, 100, -1, True, 1.5, "1"])
def test_loop_priority_rejects_a_bad_value(bad: object) -> None:
    from hil_rig.run import RunError, loop_priority

    with pytest.raises(RunError, match=r"rt_priority must be an integer in 1\.\.99"):
        with loop_priority(bad):  # type: ignore[arg-type]
            pass


def test_same_scenario_and_seed_give_identical_archives(tmp_path: pathlib.Path) -> None:
    sc = _scenario(tmp_path, duration="4 min", seed=11)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        res = _hil("run", str(sc), "--out", str(out))
        assert res.returncode == 0, res.stderr[-3000:]
    for table in REPRODUCIBLE_TABLES:
        a, b = (table_rows(o, table) for o in outs)
        assert a == b, f"table {table} differs"
    assert len(table_rows(outs[0], "telemetry")) == 241
    # and a different seed changes the sensor noise the flight software saw
    res = _hil("run", str(_scenario(tmp_path, name="other", duration="4 min", seed=12)),
               "--out", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert table_rows(outs[0], "telemetry") != table_rows(tmp_path / "c", "telemetry")


def test_compute_workload_gives_identical_archives_even_under_cpu_load(tmp_path: pathlib.Path) -> None:
    """Jobs on the emulated boards progress in simulation time, so a compute run is
    reproducible too: job completions, board power and temperatures, row for row,
    also when CPU hogs slow the machine down during the second run."""
    sc = _scenario(tmp_path, name="compute", duration="4 min", seed=11, workload="compute")
    outs = [tmp_path / "a", tmp_path / "b"]
    hog = "while True:\n    sum(i * i for i in range(10000))\n"
    for k, out in enumerate(outs):
        hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2 * k)]
        try:
            res = _hil("run", str(sc), "--out", str(out))
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_archives(*outs)
    events = [r for r in table_rows(outs[0], "events") if "job_completed" in map(str, r)]
    assert len(events) >= 1  # the run really computed: a job finished on a board


def test_link_pipeline_changes_nothing_in_the_archive(tmp_path: pathlib.Path, monkeypatch) -> None:
    """In virtual time each board's link sends the next frame's time sync ahead, at
    the end of the payload manager's frame, so the emulated boards compute while the
    loop runs (firmware_bridge.link.Link.idle). What the boards do and report must
    not change: the archives are identical, row for row, with and without it
    (compute workload: jobs start, progress, finish), with a hung board that FDIR
    power-cycles while the sync ahead is out (FDIR runs after the payload frame)."""
    from firmware_bridge.link import PIPELINE_ENV
    from hil_rig.run import Run
    from hil_rig.scenario import load_scenario

    path = _scenario(tmp_path, name="lead", duration="4 min", seed=11, workload="compute")
    path.write_text(path.read_text() + '\n[[fault]]\nkind = "payload_hang"\nboard = "rpi0"\nat = "70 s"\n')
    sc = load_scenario(path)
    outs = {False: tmp_path / "plain", True: tmp_path / "lead"}
    used = {}
    for pipeline, out in outs.items():
        monkeypatch.setenv(PIPELINE_ENV, "1" if pipeline else "0")
        run = Run(sc, out=out)
        with run:
            run.run_until(run.duration_ns)
            stats = [link.stats for link in run.links.values()]
            pm = run.fsw.payload
            used[pipeline] = (sum(s.syncs_ahead for s in stats), sum(s.syncs_ahead_used for s in stats),
                              pm.checkpoints_led, pm.checkpoints_taken_late)
            assert run.finish().passed
    assert used[False][:2] == (0, 0)
    assert used[True][1] > 400  # two boards, 240 frames: nearly every sync went ahead
    assert used[True][0] - used[True][1] <= 10  # (dropped: the hung board's, FDIR's, the run's end)
    for pipeline in outs:  # the periodic checkpoints (30 s) went out without waiting,
        # their replies taken seconds later (all but those cut short: the hung board, the run's end)
        assert used[pipeline][2] >= 6 and used[pipeline][3] >= used[pipeline][2] - 3
    _assert_same_archives(*outs.values())
    events = [str(r) for r in table_rows(outs[True], "events")]
    assert any("job_completed" in e for e in events)
    assert any("payload_hang_injected" in e for e in events)
    assert any("board_power" in e and "rpi0" in e and '"on": false' in e for e in events)  # FDIR cycled it


C_FRAMES_FAULTS = """
[[fault]]
kind = "sensor_bias"
sensor = "gyro"
bias = 0.002
at = "20.35 s"
duration = "40 s"

[[fault]]
kind = "sensor_stuck"
sensor = "mag"
at = "33.07 s"
duration = "9.4 s"

[[fault]]
kind = "sensor_dead"
sensor = "sun"
at = "50.5 s"
duration = "30 s"

[[fault]]
kind = "wheel_stuck"
wheel = "y"
at = "61.23 s"
duration = "20 s"

[[fault]]
kind = "relay_off"
board = "rpi0"
at = "70.55 s"
duration = "12.3 s"

[[fault]]
kind = "hot_case"
at = "90.91 s"
"""


def test_control_frames_in_c_change_nothing_in_the_archive(tmp_path: pathlib.Path) -> None:
    """Between two 1 Hz ticks the flight software's C ADCS runs the control frames
    through the plant's C sensor/actuator port, in one call (``Run.c_frames``).
    It must run exactly the frames of the one-step path: identical archives, with
    faults landing between frames (a gyro bias and dead sun sensors go through the
    port; a stuck magnetometer sends those frames back to the Python path), a
    wheel stuck, a relay cycled (a board boot in mid-second) and a hot case."""
    path = _scenario(tmp_path, name="cframes", duration="150 s", seed=5, workload="compute")
    path.write_text(path.read_text() + C_FRAMES_FAULTS)
    runs = _runs_with(path, tmp_path, "c_frames")
    _assert_same_archives(runs[False].run_dir, runs[True].run_dir)
    kinds = [str(r) for r in table_rows(runs[True].run_dir, "events")]
    assert any("sensor_stuck_start" in r for r in kinds) and any("board_power" in r for r in kinds)


def _external_bench(tmp: pathlib.Path):  # type: ignore[no-untyped-def]
    """Simulated instruments and emulated boards hosted by this test process (so they
    outlive the runner), and a bench file that points the runner at them as it would
    at a lab bench: Modbus URLs and serial ports."""
    from hosted_bench import write_bench_file

    from hil_rig.benchfile import load_bench
    from hil_rig.virtual_bench import VirtualBench

    vb = VirtualBench(load_bench(None), clock="virtual", test_mode=True).start()
    return vb, write_bench_file(vb, tmp / "bench.toml", name="external")


def test_sigterm_leaves_a_readable_archive_and_safe_instruments(tmp_path: pathlib.Path) -> None:
    vb, bench = _external_bench(tmp_path)
    out = tmp_path / "run"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hil_rig.cli", "run", str(_scenario(tmp_path, duration="3 h")),
             "--bench", str(bench), "--out", str(out)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            rows = 0
            while rows < 20:
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.2)
                try:
                    rows = len(load_run(out)["telemetry"])
                except Exception:  # noqa: BLE001 - not created yet
                    rows = 0
            supply = vb.sim_supplies["psu0"].state()
            assert supply.output_on and supply.voltage_v > 10  # the run powers the boards ...
            assert any(vb.sim_switches["relays0"].states())
            os.kill(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, err[-3000:]
        # ... and leaves them in the bench file's safe state, read back from the simulators
        assert vb.sim_supplies["psu0"].state().output_on is False
        assert vb.sim_switches["relays0"].states() == [False] * 8
    finally:
        vb.close()
    run = load_run(out)
    assert len(run["telemetry"]) >= 20
    assert "run_aborted" in set(run["events"]["kind"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aborted"] == "SIGTERM" and summary["passed"] is False


FAULTS = """
[[fault]]
kind = "relay_off"
board = "rpi0"
at = "10 s"
duration = "20 s"

[[fault]]
kind = "brownout"
board = "jetson0"
at = "45 s"
duration = "10 s"

[[fault]]
kind = "sensor_bias"
sensor = "gyro"
bias = 0.01
at = "5 s"

[[fault]]
kind = "wheel_stuck"
wheel = "z"
at = "5 s"
duration = "30 s"
"""


def test_power_and_plant_faults_reach_the_bench_and_the_flight_software(tmp_path: pathlib.Path) -> None:
    sc = _scenario(tmp_path, name="faults", duration="90 s")
    sc.write_text(sc.read_text() + FAULTS)
    out = tmp_path / "run"
    res = _hil("run", str(sc), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    run = load_run(out)
    ev = run["events"]
    rig_power = [(int(t // 10**9), d) for t, s, k, d in zip(ev["t_ns"], ev["source"], ev["kind"], ev["detail"],
                                                           strict=True) if s == "rig" and k == "board_power"]
    assert (10, "rpi0 relay off (fault[0] relay_off rpi0 start)") in rig_power
    assert (45, "jetson0 browned out (0 V)") in rig_power and (45, "rpi0 browned out (0 V)") in rig_power
    # the flight software noticed the dead board and walked its recovery ladder to a power cycle
    fdir = [d for s, k, d in zip(ev["source"], ev["kind"], ev["detail"], strict=True)
            if s == "fsw" and k == "fdir_action"]
    assert any('"power_cycle"' in d and '"rpi0"' in d for d in fdir), fdir
    pl = run["payload"]
    at = {(int(t // 10**9), b): st for t, b, st in zip(pl["t_ns"], pl["board"], pl["state"], strict=True)}
    assert at[(20, "rpi0")] in ("OFF", "FAULT") and at[(20, "jetson0")] == "IDLE"
    assert at[(50, "rpi0")] in ("OFF", "FAULT") and at[(50, "jetson0")] in ("OFF", "FAULT")
    assert at[(90, "rpi0")] == "IDLE" and at[(90, "jetson0")] == "IDLE"
    # the brownout really cut the supply: the boards' measured draw fell to zero
    tm = run["telemetry"]
    p = dict(zip((tm["t_ns"] // 10**9).tolist(), tm["payload_power_w_meas"].tolist(), strict=True))
    assert p[40] > 1.0 and p[50] == 0.0 and p[85] > 1.0


def test_supply_readings_kept_change_nothing_in_the_archive(tmp_path: pathlib.Path) -> None:
    """In virtual time on the virtual bench the power loop reads the simulated supply
    only when the reading can have changed (``RunOptions.reuse_supply_readings``): the same
    archive, row for row, as reading it at every update, through a relay cycled, a
    brownout and jobs starting and ending; and the supply's server really answered
    fewer reads, one fewer for each reading kept."""
    path = _scenario(tmp_path, name="reads", duration="150 s", seed=3, workload="compute")
    path.write_text(path.read_text() + FAULTS)
    runs = _runs_with(path, tmp_path, "reuse_supply_readings")
    _assert_same_archives(runs[False].run_dir, runs[True].run_dir)
    reused = {k: r.parts.power_loop.readings_reused for k, r in runs.items()}
    reads = {k: next(iter(r.parts.vb.sim_supplies.values())).reads for k, r in runs.items()}
    assert reused[False] == 0 and reused[True] > 0
    assert reads[False] - reads[True] == reused[True]


def test_link_disconnect_and_reconnect(tmp_path: pathlib.Path) -> None:
    """The board's serial port vanishes for 10 s (a pulled USB adapter, through the
    fault proxy) and comes back under the same path; the link reconnects."""
    sc = _scenario(tmp_path, name="disc", duration="60 s")
    sc.write_text(sc.read_text() + '\n[[fault]]\nkind = "link_disconnect"\nboard = "rpi0"\nat = "10 s"\n'
                  'duration = "10 s"\n\n[[fault]]\nkind = "sensor_stuck"\nsensor = "mag"\nat = "5 s"\n')
    out = tmp_path / "run"
    res = _hil("run", str(sc), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    pl = load_run(out)["payload"]
    rpi = {int(t // 10**9): st for t, b, st in zip(pl["t_ns"], pl["board"], pl["state"], strict=True)
           if b == "rpi0"}
    assert rpi[5] == "IDLE" and rpi[18] == "FAULT" and rpi[60] == "IDLE"
