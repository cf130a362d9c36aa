"""setuptools shim: cffi's out-of-line (API mode) modules are declared here.

Everything else lives in pyproject.toml. `cffi_modules` has no pyproject.toml
spelling, so this file exists only to name the cffi builders.
"""

from setuptools import setup

setup(cffi_modules=["native/build_core.py:ffibuilder", "native/build_plant.py:ffibuilder"])
