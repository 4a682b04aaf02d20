"""The one C extension, genloom.nn._onerow (nn/onerow.c), decoding at batch 1; everything else is in pyproject.toml.

Optional: without a C compiler the package installs without it and decodes through torch's own products."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("genloom.nn._onerow", ["src/genloom/nn/onerow.c"], extra_compile_args=["-O3"],
                             libraries=["pthread", "m"], optional=True)])
