"""Bad input and a hostile environment get a clear error and an exit code, never a
traceback: each case through the real `hil` in a subprocess."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import hil_rig.archive
from hil_rig.archive import Archive, ArchiveError, Column, load_run

REPO = pathlib.Path(__file__).resolve().parent.parent
ISS = (REPO / "tests" / "data" / "iss.tle").read_text()


def hil(*args: str, cwd: pathlib.Path | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900, **kw)  # type: ignore[call-overload]


def no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("duration, message", [
    ("0 s", "--duration: '0 s': a run must be longer than zero"),
    ("0 orbits", "--duration: '0 orbits': a run must be longer than zero"),
    ("-3 min", "--duration: a duration must be finite and >= 0, got '-3 min'"),
    ("1e9 h", "--duration: '1e9 h' is too long: times are signed 64-bit nanosecond counts, which end at "
              "2262-04-11T23:47:16Z; from the epoch 2026-03-20T00:00:00+00:00 a run lasts at most 2,069,280 h"),
    ("2e7 orbits", "--duration: '2e7 orbits' is too long"),
])
def test_bad_duration(tmp_path: pathlib.Path, duration: str, message: str) -> None:
    p = hil("run", "--duration", duration, "--out", str(tmp_path / "run"))
    assert p.returncode == 2 and message in p.stderr, p.stderr
    no_traceback(p)
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_too_long_a_duration_in_a_scenario_file(tmp_path: pathlib.Path) -> None:
    text = (REPO / "scenarios" / "nominal.toml").read_text().replace('duration = "3 orbits"', 'duration = "3e6 d"')
    (tmp_path / "s.toml").write_text(text)
    p = hil("run", str(tmp_path / "s.toml"))
    assert p.returncode == 2 and f"{tmp_path / 's.toml'}: [scenario] duration: '3e6 d' is too long" in p.stderr
    no_traceback(p)


def test_a_tle_orbit_that_decays_before_the_end(tmp_path: pathlib.Path) -> None:
    """SGP4 cannot follow the ISS's 2019 TLE for decades: the run's end is out of its range."""
    text = (REPO / "scenarios" / "nominal.toml").read_text()
    text = text.replace('altitude_km = 550\ninclination_deg = "sso"\nltan = "10:30"', 'tle_file = "iss.tle"')
    (tmp_path / "iss.tle").write_text(ISS)
    (tmp_path / "s.toml").write_text(text)
    p = hil("run", str(tmp_path / "s.toml"), "--duration", "30000 d")
    assert p.returncode == 2, p.stderr
    assert "--duration '30000 d': the orbit cannot be propagated to the run's end: ISS (ZARYA): SGP4 " in p.stderr
    no_traceback(p)


def test_sigterm_during_set_up_stops_at_once(tmp_path: pathlib.Path) -> None:
    """99999 orbits (18 years) is a run `hil run` accepts; its set-up (the eclipses of 18
    years) takes a while, and SIGTERM then stops it with 143 and summary.json, not after."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hil_rig.cli", "run", "--duration", "99999 orbits",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not out.is_dir() and proc.poll() is None:  # Run.start makes it first
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM while setting up" in stderr
    no_traceback(subprocess.CompletedProcess([], 143, stdout, stderr))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aborted"] == "SIGTERM" and summary["started"] is False


def test_ctrl_c_during_set_up(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hil_rig.cli", "run", "--duration", "99999 orbits",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not out.is_dir() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130 and "hil: interrupted" in stderr and "Traceback" not in stderr, stderr
    assert json.loads((out / "summary.json").read_text())["aborted"] == "interrupted"


def test_out_naming_a_file(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("keep me\n")
    p = hil("run", "--duration", "1 min", "--out", str(f))
    assert p.returncode == 2 and f"--out {f}: exists and is not a directory" in p.stderr, p.stderr
    assert f.read_text() == "keep me\n"
    no_traceback(p)


def test_out_under_a_file(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("")
    p = hil("run", "--duration", "1 min", "--out", str(f / "run"))
    assert p.returncode == 2 and f"run directory {f / 'run'}: Not a directory" in p.stderr, p.stderr
    no_traceback(p)


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> object:
    """A real 1 MB tmpfs (the tests run as root); skipped where mounting is not permitted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_out_read_only(small_disk: pathlib.Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    p = hil("run", "--duration", "1 min", "--out", str(small_disk / "run"))
    assert p.returncode == 2 and f"run directory {small_disk / 'run'}: Read-only file system" in p.stderr, p.stderr
    no_traceback(p)


def test_a_full_disk_ends_the_run_with_an_error_naming_the_run_directory(small_disk: pathlib.Path) -> None:
    run_dir = small_disk / "run"
    p = hil("run", "--duration", "1 orbit", "--out", str(run_dir))
    assert p.returncode == 1, p.stderr
    assert f"{run_dir / 'telemetry.sqlite'}: cannot write the archive: the disk is full" in p.stderr, p.stderr
    assert f"the run stopped there; run directory: {run_dir}" in p.stderr
    no_traceback(p)
    t = load_run(run_dir)["telemetry"]["t_ns"]  # readable: every second committed before
    assert len(t) > 10 and list(t) == [i * 10**9 for i in range(len(t))]


def test_a_write_the_archive_thread_failed_is_refused_at_the_next_call(small_disk: pathlib.Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The inserts and COMMITs run on the archive's writer thread: a full disk there makes
    the next call raise the same ArchiveError, and every call after; the rows committed
    before stay readable, none lost or reordered."""
    monkeypatch.setattr(hil_rig.archive, "COMMIT_EVERY_S", 0.0)  # every commit_soon() hands over
    path = small_disk / "telemetry.sqlite"
    a = Archive(path, [Column("soc", "1", "state of charge")])
    try:
        refused = None
        for t in range(100_000):  # 1 MB fills long before
            try:
                a.telemetry(t * 10**9, [0.5])
                a.event(t * 10**9, "rig", "tick", "x" * 300)
                a.commit_soon()
                while a.dirty:  # the writer thread has this batch until it is committed or refused
                    time.sleep(0.001)
            except ArchiveError as exc:
                refused = str(exc)
                break
        assert refused is not None, "the archive took 100,000 rows on a 1 MB disk"
        assert refused.startswith(f"{path}: cannot write the archive: the disk is full"), refused
        for call in (lambda: a.telemetry(0, [0.5]), lambda: a.event(0, "rig", "x"), a.commit_soon, a.commit):
            with pytest.raises(ArchiveError) as err:
                call()
            assert str(err.value) == refused
    finally:
        a.close()  # reported already: close() ends quietly
    assert not [th for th in threading.enumerate() if th.name.startswith("archive writer")]
    run = load_run(small_disk)
    tm, ev = run["telemetry"]["t_ns"], run["events"]
    assert len(tm) > 10 and list(tm) == [i * 10**9 for i in range(len(tm))]  # ~3 WAL pages a commit
    assert list(ev["t_ns"]) == list(tm) and list(ev["seq"]) == list(range(1, len(tm) + 1))


def test_a_failed_last_write_is_raised_by_close(small_disk: pathlib.Path) -> None:
    """Rows that never reached the writer thread before close(): their failure is
    raised there, never lost silently."""
    a = Archive(small_disk / "telemetry.sqlite", [Column("soc", "1", "state of charge")])
    for t in range(10_000):  # ~3 MB of events, never handed over before close()
        a.telemetry(t * 10**9, [0.5])
        a.event(t * 10**9, "rig", "tick", "x" * 300)
    with pytest.raises(ArchiveError, match="cannot write the archive: the disk is full"):
        a.close()
    assert a.db is None and len(load_run(small_disk)["telemetry"]) == 0


def _archive(d: pathlib.Path) -> pathlib.Path:
    d.mkdir()
    with Archive(d / "telemetry.sqlite", [Column("soc", "1", "state of charge")], meta={"scenario": "t"}) as a:
        for t in range(6000):
            a.telemetry(t * 10**9, [0.5])
            a.event(t * 10**9, "rig", "tick", "x" * 300)
            a.commit()
    return d


def test_export_onto_a_file(tmp_path: pathlib.Path) -> None:
    run = _archive(tmp_path / "run")
    f = tmp_path / "out.csv"
    f.write_text("precious\n")
    p = hil("archive", "export", str(run), "--csv", str(f))
    assert p.returncode == 2 and f"{f}: exists and is not a directory" in p.stderr, p.stderr
    assert f.read_text() == "precious\n"
    no_traceback(p)


def test_export_onto_a_full_disk(tmp_path: pathlib.Path, small_disk: pathlib.Path) -> None:
    run = _archive(tmp_path / "run")
    p = hil("archive", "export", str(run), "--csv", str(small_disk / "csv"))
    assert p.returncode == 2, p.stderr
    assert re.search(rf"{small_disk / 'csv'}/\w+\.csv: cannot write the CSV export: No space left on device",
                     p.stderr), p.stderr
    no_traceback(p)


def test_stdout_on_a_full_device_is_an_error_not_a_traceback() -> None:
    """The last resort: an OSError no command expected (here stdout on /dev/full)."""
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "hil_rig.cli", "orbit", "eclipses", "--alt", "550", "--inc", "sso",
                            "--ltan", "10:30", "--epoch", "2026-03-20T00:00:00Z", "--start", "2026-03-20T00:00:00Z",
                            "--hours", "2"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr == "hil: error: No space left on device\n", p.stderr


@pytest.mark.parametrize("args", [
    ["orbit", "eclipses", "--alt", "550", "--inc", "sso", "--ltan", "10:30", "--epoch", "2026-03-20T00:00:00Z",
     "--start", "2026-03-20T00:00:00Z", "--hours", "24"],
    ["archive", "info", "RUN"],
], ids=["orbit eclipses", "archive info"])
def test_a_closed_pipe_ends_quietly(tmp_path: pathlib.Path, args: list[str]) -> None:
    """As `hil ... | head -1` once head has gone: the reader's end is closed before hil writes."""
    run = _archive(tmp_path / "run")
    args = [str(run) if a == "RUN" else a for a in args]
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "hil_rig.cli", *args], stdout=w, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    finally:
        os.close(w)
    assert p.returncode == 128 + signal.SIGPIPE and p.stderr == "", p.stderr


def test_hil_alone_prints_usage_and_exits_2() -> None:
    p = hil()
    assert p.returncode == 2 and p.stderr.startswith("usage: hil ") and "give a command" in p.stderr
    p = hil("orbit")
    assert p.returncode == 2 and p.stderr.startswith("usage: hil orbit ")


def _bad_checksum(tle: str) -> str:
    """The TLE with line 2 (its last line) given a wrong checksum digit."""
    lines = tle.splitlines()
    lines[2] = lines[2][:68] + str((int(lines[2][68]) + 1) % 10)
    return "\n".join(lines) + "\n"


def test_tle_line_numbers_agree_between_hil_orbit_and_scenario_files(tmp_path: pathlib.Path) -> None:
    """Line 3 of a 3-line TLE file is line 3 for `hil orbit --tle` and for a scenario's
    tle_file; an inline tle counts the lines of its string the same way."""
    tle = tmp_path / "iss.tle"
    tle.write_text(_bad_checksum(ISS))
    p = hil("orbit", "eclipses", "--tle", str(tle), "--start", "2019-12-10T00:00:00Z", "--hours", "2")
    assert p.returncode == 2 and f"{tle}: line 3, column 69: bad checksum" in p.stderr, p.stderr
    base = (REPO / "scenarios" / "nominal.toml").read_text()
    elements = 'altitude_km = 550\ninclination_deg = "sso"\nltan = "10:30"'
    (tmp_path / "file.toml").write_text(base.replace(elements, 'tle_file = "iss.tle"'))
    p = hil("run", str(tmp_path / "file.toml"))
    assert p.returncode == 2 and f"[orbit] tle_file: {tle}: line 3, column 69: bad checksum" in p.stderr, p.stderr
    (tmp_path / "inline.toml").write_text(base.replace(elements, f'tle = """\n{_bad_checksum(ISS)}"""'))
    p = hil("run", str(tmp_path / "inline.toml"))
    assert p.returncode == 2 and "inline.toml: [orbit] tle: line 3, column 69: bad checksum" in p.stderr, p.stderr


def test_payload_hang_comment_names_the_trigger_the_file_uses() -> None:
    text = (REPO / "scenarios" / "payload_hang.toml").read_text()
    assert 'at = "sunlight + 600 s"' in text and "600 s after the first sunlit instant" in text


def test_the_documented_duration_example_passes(tmp_path: pathlib.Path) -> None:
    """docs/running.md's `hil run nominal --duration ...` example ends PASSED, as shown."""
    doc = (REPO / "docs" / "running.md").read_text()
    line = next(ln for ln in doc.splitlines() if ln.startswith("hil run nominal --duration"))
    args = re.findall(r'"[^"]*"|\S+', line.split("#")[0])[2:]
    args = [a.strip('"') for a in args]
    args[args.index("--out") + 1] = str(tmp_path / "try1")
    p = hil("run", *args)
    assert p.returncode == 0 and "nominal: PASSED" in p.stdout, p.stdout + p.stderr
    shutil.rmtree(tmp_path / "try1")
