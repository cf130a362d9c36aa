"""cffi builder for the flight core, API (out-of-line) mode.

Run at install time through setup.py's ``cffi_modules``. It compiles every
``native/src/*.c`` with ``-std=c99 -Wall -Wextra -Werror`` into ``native._core``.
The declarations cffi sees are the ones in ``CDEF`` below; they must match the
headers in ``native/include``.
"""

from __future__ import annotations

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
INCLUDE = HERE / "include"
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in (HERE / "src").glob("*.c"))
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]

CDEF = """
int ohil_core_abi_version(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "native._core",
    '#include "ohil_core.h"\n',
    sources=SOURCES,
    include_dirs=[str(INCLUDE)],
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
