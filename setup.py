"""Build shim: metadata lives in pyproject.toml; this only wires the cffi build."""

from __future__ import annotations

from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"])
