"""The adaptive context model: JBIG2's 16-pixel template with counts that adapt as it codes,
started from fitted initial counts; any size, no model file, no initial bits."""
from __future__ import annotations

from ..errors import ArchiveError
from .base import SMALL_IMAGE_PIXELS, Encoded, PayloadMethod, TableParameter, split_flat


class Adaptive(TableParameter, PayloadMethod):
    name, code = "adaptive", 2
    rows_per_byte = 8 * 2048              # a repeated row costs one flag, P <= 1 - 1/1026 (counts halve past 512)

    def worth_trying(self, images, models, best_bytes, ahead=None) -> bool:
        """Not after the page model on pages (``auto_order`` tries it first there): its mixture
        starts from this model's template, and it coded all 90 held-out documents of the corpus
        smaller (results/documents.json). On small images, or with nothing to beat, tried."""
        return best_bytes is None or max(image.size for image in images) <= SMALL_IMAGE_PIXELS

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        return Encoded(models.adaptive.encode(images), {"table": models.adaptive.table_id})

    def validate(self, chunk, shapes, models, unordered) -> None:
        if chunk.fields["table"] != models.adaptive.table_id:
            raise ArchiveError(f"archive uses adaptive table {chunk.fields['table']}; this version of serecodec "
                               f"has table {models.adaptive.table_id}")
        super().validate(chunk, shapes, models, unordered)

    def decode(self, chunk, shapes, models, progress=None) -> list:
        return split_flat(models.adaptive.decode(chunk.payload, shapes), shapes)
