"""The C core under the compiler: warning-free, sanitizer-clean, no heap, no mutable statics.

These build the C sources directly with gcc (the README's set-up needs a C
compiler anyway) in a temporary directory.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
SOURCES = sorted(str(p) for p in (NATIVE / "src").glob("*.c"))
DRIVER = NATIVE / "ctest" / "test_core.c"
BASE = ["-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{NATIVE / 'include'}"]
STRICT = [
    "-pedantic",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Wdouble-promotion",
    "-Wcast-qual",
    "-Wundef",
]
CC = os.environ.get("CC", "gcc")


def run(cmd: list[str], cwd: pathlib.Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def cc() -> str:
    if shutil.which(CC) is None:
        pytest.fail(f"C compiler {CC!r} not found; the flight core needs one (see README)")
    return CC


@pytest.mark.parametrize("opt", ["-O0", "-O2", "-O3"])
def test_core_compiles_warning_free(cc: str, opt: str, tmp_path: pathlib.Path) -> None:
    for src in SOURCES:
        obj = tmp_path / (pathlib.Path(src).stem + ".o")
        res = run([cc, opt, *BASE, *STRICT, "-c", src, "-o", str(obj)], tmp_path)
        assert res.returncode == 0, f"{src} {opt}:\n{res.stderr}"
        assert res.stderr == ""


def test_core_has_no_heap_and_no_mutable_statics(cc: str, tmp_path: pathlib.Path) -> None:
    if shutil.which("nm") is None:
        pytest.fail("nm (binutils) not found")
    objs = []
    for src in SOURCES:
        obj = tmp_path / (pathlib.Path(src).stem + ".o")
        assert (
            run([cc, "-O2", "-fno-common", *BASE, "-c", src, "-o", str(obj)], tmp_path).returncode
            == 0
        )
        objs.append(str(obj))
    res = run(["nm", *objs], tmp_path)
    assert res.returncode == 0, res.stderr
    writable, heap = [], []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-2] in {"b", "B", "d", "D", "C", "G", "g", "S", "s"}:
            writable.append(line)  # .bss / .data / common: mutable storage
        if (
            len(parts) >= 2
            and parts[-2] == "U"
            and parts[-1] in {"malloc", "calloc", "realloc", "free"}
        ):
            heap.append(line)
    assert writable == [], f"mutable globals or statics in the core: {writable}"
    assert heap == [], f"heap use in the core: {heap}"


def test_c_driver_clean_under_address_and_undefined_sanitizers(
    cc: str, tmp_path: pathlib.Path
) -> None:
    exe = tmp_path / "test_core"
    build = run(
        [
            cc,
            *BASE,
            "-g",
            "-O1",
            "-fno-omit-frame-pointer",
            # undefined, plus the two float checks it leaves out by default
            "-fsanitize=address,undefined,float-divide-by-zero,float-cast-overflow",
            "-fno-sanitize-recover=all",
            *SOURCES,
            str(DRIVER),
            "-lm",
            "-o",
            str(exe),
        ],
        tmp_path,
    )
    assert build.returncode == 0, build.stderr
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:halt_on_error=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    res = run([str(exe)], tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all checks passed" in res.stdout
    assert "runtime error" not in res.stderr  # UBSan report
    assert "AddressSanitizer" not in res.stderr


def test_c_driver_detects_a_failure(cc: str, tmp_path: pathlib.Path) -> None:
    """The driver really checks: a core whose step corrupts the quaternion fails it."""
    broken = tmp_path / "adcs_broken.c"
    text = (NATIVE / "src" / "adcs.c").read_text()
    marker = "    memcpy(out->q_bi, st->q_bi, sizeof(out->q_bi));"
    assert marker in text
    broken.write_text(text.replace(marker, marker + "\n    out->q_bi[0] *= 1.001;"))
    sources = [s for s in SOURCES if not s.endswith("adcs.c")] + [str(broken)]
    exe = tmp_path / "test_core_broken"
    build = run(
        [cc, *BASE, f"-I{NATIVE / 'src'}", "-O1", *sources, str(DRIVER), "-lm", "-o", str(exe)],
        tmp_path,
    )
    assert build.returncode == 0, build.stderr
    res = run([str(exe)], tmp_path)
    assert res.returncode == 1
    assert "q_bi" in res.stderr or "sqrt(qn)" in res.stderr
