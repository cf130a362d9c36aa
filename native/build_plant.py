"""cffi builder for the rig's spacecraft plant (ground code), API mode -> ``native._plant``.

Kept apart from the flight core (native/src, native/build_core.py): it compiles
only ``native/plant/*.c`` with ``-std=c99 -Wall -Wextra -Werror``. The cdef is the
public header itself, preprocessor lines dropped except ``#define NAME <int>``.
"""

from __future__ import annotations

import importlib.util
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
PLANT = HERE / "plant"
SOURCES = sorted(str(p.relative_to(HERE.parent)) for p in PLANT.glob("*.c"))


def _load_core_builder():
    """build_core.py by path: importing ``native`` would need the extension not built yet."""
    spec = importlib.util.spec_from_file_location("_ohil_build_core", HERE / "build_core.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_core = _load_core_builder()
CFLAGS = _core.CFLAGS  # the same warnings-as-errors flags as the flight core
_cdef = _core.header_cdef


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
