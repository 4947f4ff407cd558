"""Limits a reader enforces before it allocates (a writer refuses the same), and the shape check
both sides share."""
from __future__ import annotations

from ..errors import ArchiveError, LimitError

MAX_SIDE = 1 << 20                  # pixels per row or column
MAX_IMAGE_PIXELS = 1 << 28          # one image: 268 Mpixel (a 16384 x 16384 page)
MAX_TOTAL_PIXELS = 1 << 31          # one archive's decoded output, bytes of uint8 pixels
MAX_NAME_BYTES = 4096               # one stored name, as file-system bytes
MAX_CHUNKS = 1 << 24                # chunks one format-4 archive may index
PAYLOAD_SLACK_PIXELS = 1 << 16      # what any payload may hold beyond its bytes' capacity


def check_shape(height: int, width: int, error=ArchiveError) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE) or height * width > MAX_IMAGE_PIXELS:
        raise error(f"image size {width}x{height} is outside the supported range "
                    f"(1..{MAX_SIDE} a side, at most {MAX_IMAGE_PIXELS:,} pixels)")


def check_image_shape(height: int, width: int) -> None:
    """What a writer accepts: the same range a reader does."""
    check_shape(height, width, LimitError)
