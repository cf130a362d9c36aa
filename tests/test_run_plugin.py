"""The orbit-hil pytest plugin, tested with pytest's own pytester."""

from __future__ import annotations

import pathlib

import pytest

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[1]

REAL_BENCH = """
[bench]
name = "lab-7"

[[instruments]]
name = "psu0"
driver = "riden-rd60xx"
url = "modbus-tcp://127.0.0.1:1?unit=1"
model = "RD6012"
limits = { voltage_v = [0.0, 14.0], current_a = [0.0, 6.0] }

[[boards]]
name = "jetson0"
kind = "jetson"
serial = "/dev/ttyUSB9"
supply = "psu0"
"""


def test_plugin_is_registered_once_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_x(request):
            pm = request.config.pluginmanager
            names = [n for n, p in pm.list_name_plugin() if getattr(p, "__name__", "") == "hil_rig.pytest_plugin"]
            assert names == ["orbit_hil"], names
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_markers_skip_with_reasons_on_the_virtual_bench(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.hardware
        def test_needs_hardware():
            pass

        @pytest.mark.board("jetson")
        def test_needs_a_jetson():   # the virtual bench emulates one
            pass

        @pytest.mark.board("stm32")
        def test_needs_an_stm32():
            pass

        @pytest.mark.instrument("relay")
        def test_needs_a_relay():
            pass

        @pytest.mark.instrument("oscilloscope")
        def test_needs_a_scope():
            pass
    """)
    res = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2, skipped=3)
    res.stdout.fnmatch_lines_random([
        "*needs real boards; bench 'virtual' (built-in virtual bench) has only emulated boards*",
        "*needs a stm32 board; bench 'virtual'*has: jetson0 (emulated, jetson), rpi0 (emulated, rpi)*",
        "*needs a oscilloscope instrument; bench 'virtual'*",
    ])


def test_hardware_runs_on_a_bench_with_real_boards(pytester: pytest.Pytester) -> None:
    bench = pytester.makefile(".toml", lab=REAL_BENCH)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.hardware
        @pytest.mark.board("jetson")
        def test_needs_hardware(bench):
            assert bench.real_boards == ("jetson0",)

        @pytest.mark.board("rpi")
        def test_needs_rpi():
            pass
    """)
    res = pytester.runpytest_subprocess("-rs", f"--bench={bench}", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=1)
    res.stdout.fnmatch_lines(["*needs a rpi board; bench 'lab-7'*"])


def test_options_reach_the_fixtures(pytester: pytest.Pytester) -> None:
    bench = pytester.makefile(".toml", lab=REAL_BENCH)
    sdir = pytester.mkdir("my_scenarios")
    (sdir / "nominal.toml").write_text(
        (ROOT / "scenarios" / "nominal.toml").read_text().replace('name = "nominal"', 'name = "mine"'))
    pytester.makepyfile(f"""
        def test_opts(bench, rig):
            assert bench.label == "'lab-7' ({bench})"
            assert rig.bench_file == {str(bench)!r}
            assert rig.speed == 25.0
            assert rig.scenario("nominal").name == "mine"      # --scenario-dir searched first
            assert rig.scenario("nominal").speed == 25.0       # --speed reaches the scenario
            assert rig.scenario("seu").name == "seu"           # shipped ones still found
    """)
    res = pytester.runpytest_subprocess(f"--bench={bench}", "--speed=25", f"--scenario-dir={sdir}",
                                        "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)


def test_bad_bench_file_fails_clearly(pytester: pytest.Pytester) -> None:
    bad = pytester.makefile(".toml", bad="[bench]\nname = 3\n")
    pytester.makepyfile("""
        def test_x(bench):
            pass
    """)
    res = pytester.runpytest_subprocess(f"--bench={bad}", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines([f"*orbit-hil: bench file {bad}*"])


def test_junit_properties_name_bench_and_boards(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_x(bench):
            pass
    """)
    xml = pytester.path / "out.xml"
    pytester.runpytest_subprocess(f"--junitxml={xml}", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    text = xml.read_text()
    assert 'name="hil_bench" value="\'virtual\' (built-in virtual bench)"' in text
    assert 'name="hil_boards" value="jetson0:jetson,rpi0:rpi"' in text  # as summary.json says


TINY = """
[scenario]
name = "tiny"
epoch = "2026-03-20T00:00:00Z"
duration = "20 s"
seed = 3
[orbit]
altitude_km = 550
inclination_deg = "sso"
ltan = "10:30"
[payload]
workload = "idle"
[[requirement]]
kind = "soc_floor"
min = {floor}
"""


def test_failing_requirement_fails_the_test_and_keeps_its_run_directory(pytester: pytest.Pytester) -> None:
    sdir = pytester.mkdir("sc")
    (sdir / "tiny.toml").write_text(TINY.format(floor=0.95))
    (sdir / "fine.toml").write_text(TINY.format(floor=0.1).replace('"tiny"', '"fine"'))
    pytester.makepyfile("""
        import pathlib

        import pytest

        def test_too_demanding(rig):
            rig.run("tiny")

        def test_fine(rig):
            result = rig.run("fine")
            assert result.passed
            pathlib.Path("fine_run_dir.txt").write_text(str(result.run_dir))

        @pytest.mark.board("rpi")
        def test_fsw_and_board_fixtures(rig, fsw, board):
            # no run started yet: fsw started the nominal scenario; board is the rpi asked for
            assert rig.current.scenario.name == "nominal" and fsw is rig.current.fsw
            assert board == "rpi0" and rig.current.boards[board] == "rpi"
            rig.current.run_until("5 s")
            assert fsw.mode in ("DETUMBLE", "SUN_POINT", "COMPUTE")
    """)
    res = pytester.runpytest_subprocess(f"--scenario-dir={sdir}", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([
        "*RequirementFailed: scenario 'tiny' failed; run directory: *tiny-0*",
        "*soc_floor: lowest SOC 0.900 at t = 0 s (< floor 0.950)*",
    ])
    res.stdout.fnmatch_lines(["*orbit-hil run directory*", "run directory kept: *tiny-0"])
    kept = [ln.split("run directory kept: ", 1)[1].strip() for ln in res.outlines if "run directory kept: " in ln]
    assert kept and (pathlib.Path(kept[0]) / "telemetry.sqlite").is_file()
    assert (pathlib.Path(kept[0]) / "summary.json").is_file()
    fine = pathlib.Path((pytester.path / "fine_run_dir.txt").read_text())
    assert not fine.exists(), "a passing test's run directory should be removed"
