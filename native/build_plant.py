"""cffi builder for the rig's spacecraft plant (ground code), API mode -> ``native._plant``.

Kept apart from the flight core (native/src, native/build_core.py): it compiles
only ``native/plant/*.c`` with ``-std=c99 -Wall -Wextra -Werror``. The cdef is the
public header itself, preprocessor lines dropped except ``#define NAME <int>``.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
PLANT = HERE / "plant"
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in PLANT.glob("*.c"))
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
_INT_DEFINE = re.compile(r"^#define\s+\w+\s+\d+\s*$")


def _cdef(text: str) -> str:
    return (
        "\n".join(
            line
            for line in text.splitlines()
            if not line.strip().startswith("#") or _INT_DEFINE.match(line.strip())
        )
        + "\n"
    )


ffibuilder = FFI()
ffibuilder.cdef(_cdef((PLANT / "ohil_plant.h").read_text()))
ffibuilder.set_source(
    "native._plant",
    '#include "ohil_plant.h"\n',
    sources=SOURCES,
    include_dirs=[str(PLANT)],
    extra_compile_args=CFLAGS,
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
