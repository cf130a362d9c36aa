"""The orbit-hil pytest plugin (docs/running.md, "pytest plugin").

Registered as the ``pytest11`` entry point ``orbit_hil``, so any test suite in
an environment where orbit-hil is installed gets it.

Options (one definition shared with ``hil run``, see ``hil_rig.run_cli``):
``--bench FILE`` (default: the virtual bench), ``--speed X``, ``--scenario-dir DIR``.

Fixtures:

- ``bench`` (session): :class:`hil_rig.run.BenchInfo` of the bench in use;
- ``rig``: a :class:`Rig` that starts scenario runs on that bench; every run
  directory of a failed test is kept and named in the failure report;
- ``fsw``: the flight software of the rig's current run (starts the nominal
  scenario if none is running);
- ``board``: the name of a payload board of the run (the kind asked by a
  ``board(kind)`` marker, else the first board).

Markers:

- ``hardware``: needs real boards; skipped on a virtual bench, naming the bench;
- ``board(kind)``: needs a board of that kind (``jetson``, ``rpi``, ``emulated``);
- ``instrument(kind)``: needs an instrument of that kind (``supply``, ``relay``, a driver name).

Each test that uses the plugin records the bench and its boards as JUnit
properties (``hil_bench``, ``hil_boards``).
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from hil_rig.run_cli import add_shared_options

_FIXTURES = {"bench", "rig", "fsw", "board"}
_RUNS_KEY = pytest.StashKey[list]()
_BENCH_KEY = pytest.StashKey[Any]()
_FAILED_KEY = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orbit-hil", "orbit-hil hardware-in-the-loop rig")
    add_shared_options(group.addoption)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs real boards on the bench; skipped on the virtual bench")
    config.addinivalue_line("markers", "board(kind): needs a payload board of that kind (jetson, rpi, emulated)")
    config.addinivalue_line("markers", "instrument(kind): needs an instrument of that kind (supply, relay, driver name)")


def _bench_info(config: pytest.Config) -> Any:
    """The bench described by --bench (loaded once per session, not started)."""
    if _BENCH_KEY not in config.stash:
        from hil_rig.run import describe_bench

        config.stash[_BENCH_KEY] = describe_bench(config.getoption("hil_bench"))
    return config.stash[_BENCH_KEY]


def _uses_plugin(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    marks = {m.name for m in item.iter_markers()}
    return bool(names & _FIXTURES or marks & {"hardware", "board", "instrument"})


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _uses_plugin(item):
        return
    try:
        info = _bench_info(item.config)
    except Exception as exc:  # a bad bench file: every test that needs it fails, clearly
        pytest.fail(f"orbit-hil: bench file {item.config.getoption('hil_bench')}: {exc}", pytrace=False)
    item.user_properties.append(("hil_bench", info.label))
    item.user_properties.append(("hil_boards", info.boards_text or "none"))
    if item.get_closest_marker("hardware") is not None and not info.real_boards:
        pytest.skip(f"needs real boards; bench {info.label} has only emulated boards")
    for mark in item.iter_markers("board"):
        kind = _mark_kind(mark, "board")
        if not info.has_board(kind):
            have = ", ".join(f"{n} ({k}, {e})" for (n, k), (_, e) in zip(info.boards, info.emulates, strict=True)) or "none"
            pytest.skip(f"needs a {kind} board; bench {info.label} has: {have}")
    for mark in item.iter_markers("instrument"):
        kind = _mark_kind(mark, "instrument")
        if not info.has_instrument(kind):
            have = ", ".join(sorted({k for _, ks in info.instruments for k in ks})) or "none"
            pytest.skip(f"needs a {kind} instrument; bench {info.label} has: {have}")


def _mark_kind(mark: pytest.Mark, name: str) -> str:
    if len(mark.args) != 1 or not isinstance(mark.args[0], str):
        raise pytest.UsageError(f"@pytest.mark.{name}(kind) takes one string, got {mark.args!r}")
    return mark.args[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    report = yield
    if report.failed:
        item.stash[_FAILED_KEY] = True
        runs = item.stash.get(_RUNS_KEY, None)
        if runs:
            dirs = "\n".join(str(r) for r in runs)
            report.sections.append(("orbit-hil run directory", f"run directory kept: {dirs}"))
    return report


class Rig:
    """Starts scenario runs on the session's bench, in the test's directory."""

    def __init__(self, config: pytest.Config, base: pathlib.Path, runs: list[pathlib.Path]) -> None:
        self.config = config
        self.base = base
        self._runs = runs
        self.current: Any = None
        self.bench_file: str | None = config.getoption("hil_bench")
        self.speed: float | None = config.getoption("hil_speed")
        d = config.getoption("hil_scenario_dir")
        self.scenario_dirs = [pathlib.Path(d)] if d else []

    def scenario(self, name_or_path: str | None = None, **changes: Any) -> Any:
        """Load a scenario (a shipped name, or a file), with overrides such as
        ``duration="20 min"`` or ``seed=3``."""
        from hil_rig.scenario import find_scenario, load_scenario, parse_duration

        sc = load_scenario(find_scenario(name_or_path, self.scenario_dirs))
        if isinstance(changes.get("duration"), str):
            changes["duration"] = parse_duration(changes["duration"], "duration")
        if self.speed is not None and "speed" not in changes:
            changes["speed"] = self.speed
        return sc.replace(**changes)

    def start(self, scenario: Any = None, **changes: Any) -> Any:
        """Start a run (a :class:`hil_rig.run.Run`) and make it current."""
        from hil_rig.run import Run

        if scenario is None or isinstance(scenario, str | pathlib.Path):
            scenario = self.scenario(scenario, **changes)
        elif changes:
            scenario = scenario.replace(**changes)
        if self.current is not None:
            self.current.close()
        out = self.base / f"{scenario.name}-{len(self._runs)}"
        self._runs.append(out)
        self.current = Run(scenario, bench=self.bench_file, out=out)
        self.current.start()
        return self.current

    def run(self, scenario: Any = None, check: bool = True, **changes: Any) -> Any:
        """Run a scenario to its end; with ``check`` a failed requirement fails the
        test, naming the requirement and the run directory."""
        r = self.start(scenario, **changes)
        result = r.finish()
        self.current = None
        if check:
            result.check()
        return result

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest) -> Any:
    """The bench in use (``--bench FILE``, default the virtual bench)."""
    return _bench_info(request.config)


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bench: Any) -> Iterator[Rig]:
    runs: list[pathlib.Path] = []
    request.node.stash[_RUNS_KEY] = runs
    base = tmp_path_factory.mktemp("hil-runs", numbered=True)
    r = Rig(request.config, base, runs)
    try:
        yield r
    finally:
        r.close()
    if not request.node.stash.get(_FAILED_KEY, False):
        for d in runs:  # a passed test leaves nothing behind; a failed one keeps its runs
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fsw(rig: Rig) -> Any:
    """The flight software of the rig's current run (the nominal scenario if none)."""
    if rig.current is None:
        rig.start()
    return rig.current.fsw


@pytest.fixture
def board(request: pytest.FixtureRequest, rig: Rig) -> str:
    """A payload board of the current run: the kind asked by ``board(kind)``, else the first."""
    if rig.current is None:
        rig.start()
    mark = request.node.get_closest_marker("board")
    boards = rig.current.boards  # name -> kind
    if mark is not None:
        kind = _mark_kind(mark, "board")
        names = [n for n, k in boards.items() if k == kind]
    else:
        names = list(boards)
    if not names:
        pytest.skip(f"no board of the asked kind on bench {rig.current.bench_label}")
    return names[0]
