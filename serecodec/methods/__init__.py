"""The payload methods, by name and by archive code: the one registry the codec, the container's
readers and the command line look methods up in. Adding a method is its module plus one line here."""
from __future__ import annotations

from ..errors import ArchiveError
from .adaptive import Adaptive
from .base import Encoded, PayloadMethod
from .bits_back import BitsBack
from .deflate import Deflate
from .lzma_pixels import LzmaPixels
from .pages import Pages
from .static_context import StaticContext

REGISTRY: dict = {}


def register(method: PayloadMethod) -> PayloadMethod:
    if method.name in REGISTRY or any(m.code == method.code for m in REGISTRY.values()):
        raise ValueError(f"payload method {method.name!r} (code {method.code}) is registered twice")
    REGISTRY[method.name] = method
    return method


# in the order auto tries them: the cheap ones first, so bits-back's estimate has a size to beat
for _method in (Pages(), Adaptive(), Deflate(), LzmaPixels(), StaticContext(), BitsBack()):
    register(_method)

METHOD_NAMES = tuple(REGISTRY)


def by_name(name: str) -> PayloadMethod:
    return REGISTRY[name]


def by_code(code: int) -> PayloadMethod:
    for method in REGISTRY.values():
        if method.code == code:
            return method
    raise ArchiveError(f"unknown payload method {code}")


__all__ = ["Encoded", "PayloadMethod", "METHOD_NAMES", "REGISTRY", "by_code", "by_name", "register"]
