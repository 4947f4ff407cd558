"""Metadata lives in setup.cfg; this file only declares the page model's compiled kernel (a plain C
extension: numba's start-up alone cost a fresh process more than coding a page). -fwrapv: signed
overflow wraps, as it did in numba (only a crafted state file could reach it), never undefined."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("serecodec._page_kernel", ["serecodec/_page_kernel.c"],
                             extra_compile_args=["-O2", "-std=c99", "-fwrapv", "-Wall", "-Wextra"])])
