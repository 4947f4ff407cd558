"""Deflate of the packed pixels: no model at all, the floor for tiny inputs."""
from __future__ import annotations

import zlib

import numpy as np

from ..container.wire import bounded_inflate
from ..errors import ArchiveError
from .base import Encoded, PayloadMethod, split_flat

AUTO_MAX_PIXELS = 1 << 16     # auto tries deflate on chunks this small (it rarely wins above)


class Deflate(PayloadMethod):
    name, code = "deflate", 0
    pixels_per_byte = 8 * 1032            # deflate expands at most 1032:1

    def worth_trying(self, images, models, best_bytes, ahead=None) -> bool:
        return sum(image.size for image in images) <= AUTO_MAX_PIXELS

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        bits = np.concatenate([image.reshape(-1) for image in images])
        return Encoded(packer.compress(np.packbits(bits).tobytes()) + packer.flush())

    def decode(self, chunk, shapes, models, progress=None) -> list:
        total = sum(h * w for h, w in shapes)
        packed = bounded_inflate(chunk.payload, (total + 7) // 8, "pixels")
        if len(packed) != (total + 7) // 8:
            raise ArchiveError("corrupted archive: the deflate payload has the wrong length")
        return split_flat(np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:total], shapes)
