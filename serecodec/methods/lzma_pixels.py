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

SAMPLE_BYTES = 1 << 14        # the band auto compresses first (packed bytes; ~5 ms)
MIN_DICT_BITS, MAX_DICT_BITS = 12, 26     # dictionary 4 KiB .. 64 MiB (xz -9's), by the input's size


def _filters(dict_bits: int) -> list:
    """Preset 9e with a dictionary no larger than the input needs: the encoder's memory is about
    11x the dictionary (700 MB at xz -9's 64 MiB), the decoder's about 1x."""
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << dict_bits}]


def _dict_bits(size: int) -> int:
    return min(MAX_DICT_BITS, max(MIN_DICT_BITS, (max(size, 1) - 1).bit_length()))


def _packed(images) -> bytes:
    return np.packbits(np.concatenate([image.reshape(-1) for image in images])).tobytes()


def _compress(raw: bytes, dict_bits: int) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_filters(dict_bits))


class LzmaPixels(PayloadMethod):
    name, code = "lzma", 4
    pixels_per_byte = 8 << 16             # a raw LZMA2 stream expands at most ~7,000:1; room to spare

    def worth_trying(self, images, models, best_bytes, ahead=None) -> bool:
        raw = _packed(images)
        if best_bytes is None or len(raw) <= SAMPLE_BYTES:
            return True
        start = (len(raw) - SAMPLE_BYTES) // 2                   # the middle band: past margins
        band = _compress(raw[start:start + SAMPLE_BYTES], _dict_bits(SAMPLE_BYTES))
        # a band sees only its own repeats: the whole image compresses better, so give it room
        return len(band) * len(raw) / SAMPLE_BYTES < 1.25 * best_bytes

    def params_bytes(self, fields: dict) -> bytes:
        return bytes([fields["dict_bits"]])

    def read_params(self, raw: bytes, payload_bytes: int) -> dict:
        if len(raw) != 1 or not MIN_DICT_BITS <= raw[0] <= MAX_DICT_BITS:
            raise ArchiveError("corrupted archive: bad lzma parameters")
        return {"dict_bits": raw[0]}

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        raw = _packed(images)
        bits = _dict_bits(len(raw))
        return Encoded(_compress(raw, bits), {"dict_bits": bits})

    def decode(self, chunk, shapes, models, progress=None) -> list:
        total = sum(h * w for h, w in shapes)
        size = (total + 7) // 8
        inflater = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_filters(chunk.fields["dict_bits"]))
        try:
            packed = inflater.decompress(chunk.payload, max_length=size + 1)
        except lzma.LZMAError:
            raise ArchiveError("corrupted archive: the lzma payload does not decompress") from None
        if len(packed) != size or not inflater.eof or inflater.unused_data:
            raise ArchiveError("corrupted archive: the lzma payload has the wrong length")
        return split_flat(np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:total], shapes)
