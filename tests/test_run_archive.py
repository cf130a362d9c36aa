"""Telemetry archive (hil_rig.archive) and ``hil archive export``."""

from __future__ import annotations

import csv
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hil_rig.archive
from hil_rig.archive import Archive, ArchiveError, Column, export_csv, load_run, table_rows
from hil_rig.cli import main as hil_main

CH = [Column("soc", "1", "state of charge"), Column("orbit", "1", "orbit number", "INTEGER")]


def _write(d: pathlib.Path, rows: list[tuple[int, float, int]]) -> None:
    with Archive(d / "telemetry.sqlite", CH, meta={"scenario": "t", "seed": 1}) as a:
        for t, soc, orb in rows:
            a.telemetry(t, [soc, orb])
            a.payload(t, "p0", "running", 5.0, 300.0, orb)
            a.event(t, "rig", "tick", f"t={t}")
            a.commit()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 50)), max_size=30))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, vals: list[tuple[float, int]]) -> None:
    d = tmp_path_factory.mktemp("run")
    rows = [(i * 1_000_000_000, s, o) for i, (s, o) in enumerate(vals)]
    _write(d, rows)
    run = load_run(d)
    assert run.meta["scenario"] == "t" and run.meta["schema_version"] == "2"
    tm = run["telemetry"]
    assert tm.dtype.names == ("t_ns", "soc", "orbit")
    assert [(int(r["t_ns"]), float(r["soc"]), int(r["orbit"])) for r in tm] == rows
    assert len(run["events"]) == len(rows) == len(run["payload"])
    assert list(run["channels"]["name"]) == ["soc", "orbit"]


def test_csv_export_cli(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, [(0, 0.5, 1), (10**9, 0.25, 1)])
    assert hil_main(["archive", "export", str(tmp_path), "--csv", str(tmp_path / "csv")]) == 0
    with (tmp_path / "csv" / "telemetry.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows == [["t_ns", "soc", "orbit"], ["0", "0.5", "1"], ["1000000000", "0.25", "1"]]
    assert {p.name for p in (tmp_path / "csv").iterdir()} == {
        "telemetry.csv", "payload.csv", "events.csv", "meta.csv", "channels.csv", "enums.csv", "link_stats.csv"}
    assert hil_main(["archive", "export", str(tmp_path / "nope"), "--csv", str(tmp_path)]) == 2
    assert "no telemetry archive there" in capsys.readouterr().err


def test_bad_archive_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "telemetry.sqlite").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ArchiveError, match="not a readable orbit-hil archive"):
        load_run(tmp_path)
    with pytest.raises(ArchiveError, match="exists already"):
        Archive(tmp_path / "telemetry.sqlite", CH)


def test_to_pandas_optional(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, [(0, 0.5, 1)])
    run = load_run(tmp_path)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas"):
            run.to_pandas()
    else:
        assert run.to_pandas()["telemetry"]["soc"].tolist() == [0.5]


def test_sigkill_loses_at_most_the_last_second(tmp_path: pathlib.Path) -> None:
    """A writer killed with SIGKILL mid-transaction: everything committed is readable."""
    script = textwrap.dedent(f"""
        import sys
        from hil_rig.archive import Archive, Column
        a = Archive({str(tmp_path / 'telemetry.sqlite')!r}, [Column("soc", "1", "soc")])
        for t in range(600):  # the checkpoint thread runs twice meanwhile (every 250 commits)
            a.telemetry(t * 10**9, [t / 600])
            a.commit()
        a.telemetry(600 * 10**9, [1.0])   # left uncommitted
        print("ready", flush=True)
        sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        p.kill()
    tm = load_run(tmp_path)["telemetry"]
    assert len(tm) == 600 and np.array_equal(tm["t_ns"], np.arange(600) * 10**9)
    assert table_rows(tmp_path, "telemetry")[-1] == (599 * 10**9, 599 / 600)
    # and the file is a sound database
    assert sqlite3.connect(tmp_path / "telemetry.sqlite").execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_checkpoints_copy_committed_rows_into_the_file_while_the_run_goes_on(tmp_path: pathlib.Path) -> None:
    """The WAL is checkpointed on a thread of its own every CHECKPOINT_EVERY commits,
    without the writer waiting: the rows reach the database file itself."""
    from hil_rig.archive import CHECKPOINT_EVERY

    path = tmp_path / "telemetry.sqlite"
    a = Archive(path, CH)
    try:
        for t in range(CHECKPOINT_EVERY + 3):
            a.telemetry(t, [0.5, 1])
            a.commit()
        assert a._checkpointer is not None
        a._checkpointer.close()  # its last checkpoint is done when this returns
        a._checkpointer = None
        # the database file alone (immutable: the WAL is not read) holds the rows
        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        n = db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        db.close()
        assert n == CHECKPOINT_EVERY + 3
    finally:
        a.close()
    assert len(load_run(tmp_path)["telemetry"]) == CHECKPOINT_EVERY + 3


def test_export_names_unknown_table(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, [(0, 0.5, 1)])
    with pytest.raises(ArchiveError, match="unknown table"):
        table_rows(tmp_path, "nope")
    assert len(export_csv(tmp_path, tmp_path / "c", tables=["events"])) == 1


def _writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("archive writer")]


def test_rows_handed_to_the_writer_thread_are_in_the_file_after_commit(tmp_path: pathlib.Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """commit_soon() hands each batch to the archive's writer thread (here at every call);
    commit() waits for them: another connection then sees every row, in order; close()
    ends the thread and leaves one file."""
    monkeypatch.setattr(hil_rig.archive, "COMMIT_EVERY_S", 0.0)
    path = tmp_path / "telemetry.sqlite"
    before = _writer_threads()
    a = Archive(path, CH)
    assert _writer_threads() == [*before, "archive writer telemetry.sqlite"]
    for t in range(300):
        a.telemetry(t, [t / 300, t % 7])
        a.payload(t, "p0", "running", 5.0, 300.0, t)
        a.event(t, "rig", "tick", f"t={t}")
        a.commit_soon()
    a.set_meta("end", "yes")
    a.telemetry(300, [1.0, 0])  # after the last hand-over: goes with commit()
    a.commit()
    assert not a.dirty
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT t_ns, soc FROM telemetry ORDER BY t_ns").fetchall() == \
            [(t, t / 300) for t in range(300)] + [(300, 1.0)]
        assert db.execute("SELECT t_ns, detail FROM events ORDER BY seq").fetchall() == \
            [(t, f"t={t}") for t in range(300)]
        assert db.execute("SELECT COUNT(*) FROM payload").fetchone() == (300,)
        assert db.execute("SELECT value FROM meta WHERE key = 'end'").fetchone() == ("yes",)
    finally:
        db.close()
    a.close()
    assert _writer_threads() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["telemetry.sqlite"]
    with pytest.raises(ArchiveError, match="the archive is closed"):
        a.commit()


@pytest.mark.parametrize("reset_on_fork", [False, True], ids=["chrt", "loop_priority"])
def test_the_writer_thread_runs_at_the_normal_policy(tmp_path: pathlib.Path, reset_on_fork: bool) -> None:
    """An archive opened by a SCHED_FIFO thread: its writer thread does not compete with
    the boards' agents at real-time priority, whether or not the creator set
    SCHED_RESET_ON_FORK (``chrt`` does not; the run loop's real-time block does)."""
    policies: list[int] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            flags = os.SCHED_RESET_ON_FORK if reset_on_fork else 0
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO | flags, os.sched_param(1))
            except PermissionError:
                return
            with Archive(tmp_path / "telemetry.sqlite", CH) as a:
                a.telemetry(0, [0.5, 1])
                a.commit()  # the writer has run (and set its policy) when this returns
                policies.append(os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK)
                policies.append(os.sched_getscheduler(a._writer.native_id) & ~os.SCHED_RESET_ON_FORK)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    t = threading.Thread(target=opener)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    if not policies:
        pytest.skip("SCHED_FIFO not permitted here")
    assert policies == [os.SCHED_FIFO, os.SCHED_OTHER]
