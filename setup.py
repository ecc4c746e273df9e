"""Build hook for the optional C accelerator of the tar header codec.

Everything else is declared in ``pyproject.toml``. ``converters/_tarheader.c`` is built
when a C compiler and the Python headers are present (``scripts/setup.sh`` installs
them); without them the build goes on without it, and docker2aci uses the pure-Python
codec, which gives the same results, only slower.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("converters._tarheader", ["converters/_tarheader.c"], optional=True,
                             extra_compile_args=["-O2"])])
