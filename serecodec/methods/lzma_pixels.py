"""LZMA (xz's coder) of the packed pixels: the floor for periodic images. A halftone repeats its
screen every few pixels, which a match finder exploits and a small-template context model does
not (xz -9e was 0.85x JBIG over scans and halftones, serecodec's adaptive model 1.14x). Auto
tries it on any size, but first on a band of the image: the whole file only when the band says
it can win."""
from __future__ import annotations

import lzma

import numpy as np

from ..errors import ArchiveError
from .base import Encoded, PayloadMethod, split_flat

FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
SAMPLE_BYTES = 1 << 16        # the band auto compresses first (packed bytes)


def _packed(images) -> bytes:
    return np.packbits(np.concatenate([image.reshape(-1) for image in images])).tobytes()


def _compress(raw: bytes) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=FILTERS)


class LzmaPixels(PayloadMethod):
    name, code = "lzma", 4
    pixels_per_byte = 8 << 16             # a raw LZMA2 stream expands at most ~7,000:1; room to spare

    def worth_trying(self, images, models, best_bytes) -> bool:
        raw = _packed(images)
        if best_bytes is None or len(raw) <= 4 * SAMPLE_BYTES:
            return True
        start = (len(raw) - SAMPLE_BYTES) // 2                   # the middle band: past margins
        estimate = len(_compress(raw[start:start + SAMPLE_BYTES])) * len(raw) / SAMPLE_BYTES
        return estimate < 1.1 * best_bytes

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        return Encoded(_compress(_packed(images)))

    def decode(self, chunk, shapes, models, progress=None) -> list:
        total = sum(h * w for h, w in shapes)
        size = (total + 7) // 8
        inflater = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
        try:
            packed = inflater.decompress(chunk.payload, max_length=size + 1)
        except lzma.LZMAError:
            raise ArchiveError("corrupted archive: the lzma payload does not decompress") from None
        if len(packed) != size or not inflater.eof or inflater.unused_data:
            raise ArchiveError("corrupted archive: the lzma payload has the wrong length")
        return split_flat(np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:total], shapes)
