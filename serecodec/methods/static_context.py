"""The static digit context model: a fitted table of P(ink | 16-pixel context), 28x28 only (a
handful of digits, where bits-back's first batches cost more than they save)."""
from __future__ import annotations

import numpy as np

from ..context_model import CURRENT_TABLE
from ..errors import ArchiveError
from .base import Encoded, PayloadMethod, TableParameter

AUTO_MAX_IMAGES = 4096


def _digits(images) -> bool:
    return isinstance(images, np.ndarray) and images.shape[1:] == (28, 28)


class StaticContext(TableParameter, PayloadMethod):
    name, code = "context", 1
    pixels_per_byte = 8 * 45426           # probabilities are at most 1 - 2^-16

    def refuses(self, images, models):
        return None if _digits(images) else "the static context model codes 28x28 images only; use adaptive"

    def worth_trying(self, images, models, best_bytes, ahead=None) -> bool:
        return len(images) <= AUTO_MAX_IMAGES

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        return Encoded(models.context.encode(images).astype("<u4").tobytes(), {"table": CURRENT_TABLE})

    def validate(self, chunk, shapes, models, unordered) -> None:
        if chunk.fields["table"] != CURRENT_TABLE:
            raise ArchiveError(f"archive uses context table {chunk.fields['table']}; this version of serecodec "
                               f"has table {CURRENT_TABLE}")
        if any(shape != (28, 28) for shape in shapes):
            raise ArchiveError("corrupted archive: the static context model codes 28x28 images only")
        if len(chunk.payload) % 4:
            raise ArchiveError("corrupted archive: the static-context payload is not whole words")
        super().validate(chunk, shapes, models, unordered)

    def decode(self, chunk, shapes, models, progress=None) -> list:
        words = np.frombuffer(chunk.payload, dtype="<u4").astype(np.uint32)
        try:
            return list(models.context.decode(words, len(shapes)))
        except (ValueError, RuntimeError, AssertionError) as exc:   # the range decoder refuses impossible words
            raise ArchiveError(f"corrupted archive ({exc})") from None
