"""cffi builder for the flight core, API (out-of-line) mode.

Run at install time through setup.py's ``cffi_modules``. It compiles every
``native/src/*.c`` with ``-std=c99 -Wall -Wextra -Werror`` into ``native._core``.

The declarations cffi sees are the public headers themselves (``CDEF_HEADERS``),
with preprocessor lines dropped except ``#define NAME <integer>``, so the cdef
cannot drift from the headers the C code is compiled against.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
INCLUDE = HERE / "include"
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in (HERE / "src").glob("*.c"))
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
CDEF_HEADERS = ["ohil_adcs.h", "ohil_eps.h", "ohil_thermal.h", "ohil_core.h"]

_INT_DEFINE = re.compile(r"^#define\s+\w+\s+\d+\s*$")


def header_cdef(text: str) -> str:
    """Turn a public header into cdef text: keep ``#define NAME <int>``, drop other ``#`` lines."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not _INT_DEFINE.match(stripped):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


CDEF = "".join(header_cdef((INCLUDE / name).read_text()) for name in CDEF_HEADERS)

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "native._core",
    '#include "ohil_core.h"\n',
    sources=SOURCES,
    include_dirs=[str(INCLUDE)],
    extra_compile_args=CFLAGS,
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
