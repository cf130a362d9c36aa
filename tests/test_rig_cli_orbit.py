"""`hil orbit eclipses` and `hil orbit track`, through main() and a real subprocess."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

from hil_rig.cli import main

TLE = str(pathlib.Path(__file__).parent / "data" / "iss.tle")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_eclipses_json_tle(capsys):
    assert main(["orbit", "eclipses", "--tle", TLE, "--start", "2019-12-10T00:00:00Z", "--hours", "4", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    for r in rows[:2]:
        for k in ("penumbra_entry", "umbra_entry", "umbra_exit", "penumbra_exit"):
            assert ISO_MS.match(r[k]), r[k]
        assert 1600 < r["umbra_s"] < 1900 and 5 < r["penumbra_s"] < 60
    assert rows[2]["umbra_exit"] is None and rows[2]["penumbra_exit"] is None and rows[2]["umbra_s"] is None


def test_eclipses_table_elements(capsys):
    assert main(["orbit", "eclipses", "--alt", "550", "--inc", "sso", "--ltan", "10:30",
                 "--epoch", "2024-03-20T00:00:00Z", "--start", "2024-03-20", "--hours", "3"]) == 0
    out = capsys.readouterr().out
    assert "penumbra entry" in out and out.count("2024-03-20T") >= 8


def test_track_json(capsys):
    assert main(["orbit", "track", "--alt", "550", "--inc", "97.6", "--raan", "30", "--epoch", "2024-03-20",
                 "--start", "2024-03-20T00:00:00Z", "--hours", "1", "--step", "60", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 61
    for r in rows:
        assert 0.0 <= r["illumination"] <= 1.0 and -90 <= r["beta_deg"] <= 90
        assert r["frame"] == "TEME" and len(r["sat_teme_km"]) == 3 and len(r["sun_teme_km"]) == 3
        assert ISO_MS.match(r["t"])


@pytest.mark.parametrize(("argv", "needle"), [
    (["orbit", "eclipses", "--start", "2024-01-01", "--hours", "1"], "give --tle FILE"),
    (["orbit", "eclipses", "--tle", "/nonexistent.tle", "--start", "2024-01-01", "--hours", "1"], "not found"),
    (["orbit", "eclipses", "--alt", "7000", "--inc", "sso", "--ltan", "10:30", "--epoch", "2024-01-01",
      "--start", "2024-01-01", "--hours", "1"], "no sun-synchronous orbit at 7000 km"),
    (["orbit", "eclipses", "--tle", TLE, "--start", "yesterday", "--hours", "1"], "--start 'yesterday'"),
    (["orbit", "eclipses", "--tle", TLE, "--start", "2019-12-10", "--hours", "-1"], "--hours -1"),
    (["orbit", "track", "--tle", TLE, "--start", "2019-12-10", "--hours", "1", "--step", "0"], "--step 0"),
    (["orbit", "eclipses", "--alt", "500", "--inc", "polar", "--raan", "3", "--epoch", "2024-01-01",
      "--start", "2024-01-01", "--hours", "1"], "--inc 'polar'"),
])
def test_bad_input_exits_2_with_message(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_bad_checksum_through_subprocess(tmp_path):
    lines = pathlib.Path(TLE).read_text().splitlines()
    lines[2] = lines[2][:68] + str((int(lines[2][68]) + 1) % 10)
    bad = tmp_path / "bad.tle"
    bad.write_text("\n".join(lines) + "\n")
    # (via -c, not -m hil_rig.cli: under -m the module is __main__ and its UsageError is a
    # different class from the one the subcommands import)
    code = "import sys; from hil_rig.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "orbit", "eclipses", "--tle", str(bad),
                           "--start", "2019-12-10", "--hours", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "line 3, column 69: bad checksum" in proc.stderr and "Traceback" not in proc.stderr


def test_decayed_orbit_through_cli(tmp_path, capsys):
    from hil_rig.orbit import tle_checksum
    lines = pathlib.Path(TLE).read_text().splitlines()
    l1 = lines[1][:53] + " 38792-1" + lines[1][61:68]
    lines[1] = l1 + str(tle_checksum(l1))
    f = tmp_path / "decay.tle"
    f.write_text("\n".join(lines) + "\n")
    assert main(["orbit", "eclipses", "--tle", str(f), "--start", "2019-12-10", "--hours", "480"]) == 2
    err = capsys.readouterr().err
    assert "decayed" in err and "Traceback" not in err
