"""The one C extension, genloom.nn._gemv (nn/gemv.c); everything else is in pyproject.toml.

Optional: without a C compiler the package installs without it and decodes through torch's own products."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("genloom.nn._gemv", ["src/genloom/nn/gemv.c"], extra_compile_args=["-O3"],
                             libraries=["pthread"], optional=True)])
