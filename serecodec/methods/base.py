"""What every payload method is: a name, an archive code, and encode/decode/validate over its
own header fields. The container stores a chunk's method code, parameter bytes and payload;
the method alone gives them meaning, so adding one touches its module and the registry."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..container import Chunk
from ..container.limits import PAYLOAD_SLACK_PIXELS
from ..errors import ArchiveError
from .models import Models

Progress = Optional[Callable[[int], None]]


SMALL_IMAGE_PIXELS = 4096            # up to 64x64: bits-back's ground (digits, glyphs, icons); above, pages


@dataclass
class Encoded:
    """A method's output for one chunk: its payload and its header fields (``fields``, which
    ``params_bytes`` writes and ``read_params`` reads back)."""

    payload: bytes
    fields: dict = field(default_factory=dict)
    # None: not checked; else a callable that waits for the method's own checks of its output
    # (they may still be running in ``Models.verifier`` threads) and says whether they passed
    verified: Optional[Callable[[], bool]] = None


class PayloadMethod:
    """A way to code a run of images. Subclasses set ``name``, ``code`` and, when a payload byte
    can stand for at most so many pixels, ``pixels_per_byte`` (checked before any allocation)."""

    name: str = ""
    code: int = -1
    pixels_per_byte: Optional[int] = None
    # for methods whose rows can repeat the row above for one flag: a payload byte holds at most
    # so many rows (of any width), the only bound such a coder has
    rows_per_byte: Optional[int] = None
    unordered_saves: bool = False        # codes a collection as a multiset (saves log2 N!)
    auto: bool = True                    # whether ``auto`` tries it (False: superseded, still decodable)

    # -- header fields ---------------------------------------------------------------------------
    def params_bytes(self, fields: dict) -> bytes:
        return b""

    def read_params(self, raw: bytes, payload_bytes: int) -> dict:
        if raw:
            raise ArchiveError(f"corrupted archive: {self.name} takes no parameters")
        return {}

    # -- coding ------------------------------------------------------------------------------------
    def refuses(self, images, models: Models) -> Optional[str]:
        """Why this method cannot code ``images`` (None when it can)."""
        return None

    def worth_trying(self, images, models: Models, best_bytes: Optional[int], ahead: Optional[Future] = None) -> bool:
        """Whether ``auto`` should try it on ``images``, the best candidate so far being
        ``best_bytes``; ``ahead``: ``estimate``'s answer, worked out beside the earlier candidates."""
        return True

    def estimate_ahead(self, images) -> bool:
        """Whether ``auto`` should work out ``estimate`` beside the candidates it tries first, so
        that deciding on this method after them costs no wall time."""
        return False

    def estimate(self, images, models: Models):
        """What ``worth_trying`` decides by, found without coding (for methods that estimate ahead)."""
        raise NotImplementedError

    def encode(self, images, models: Models, progress: Progress = None, verify: bool = False,
               unordered: bool = False) -> Encoded:
        raise NotImplementedError

    def validate(self, chunk: Chunk, shapes: list, models: Models, unordered: bool) -> None:
        """Check ``chunk.fields`` against the chunk's image shapes and the limits before decoding
        allocates anything; ArchiveError otherwise."""
        if self.rows_per_byte is not None:
            rows = sum(h for h, _ in shapes)
            if rows > self.rows_per_byte * len(chunk.payload) + PAYLOAD_SLACK_PIXELS:
                raise ArchiveError(f"corrupted archive: {len(chunk.payload)} payload bytes cannot hold {rows:,} rows")
        if self.pixels_per_byte is None:
            return
        pixels = sum(h * w for h, w in shapes)
        if pixels > self.pixels_per_byte * len(chunk.payload) + PAYLOAD_SLACK_PIXELS:
            raise ArchiveError(f"corrupted archive: {len(chunk.payload)} payload bytes cannot hold {pixels:,} pixels")

    def decode(self, chunk: Chunk, shapes: list, models: Models, progress: Progress = None) -> list:
        raise NotImplementedError


class TableParameter:
    """For methods whose one parameter is the number of the fitted table they code with."""

    name: str

    def params_bytes(self, fields: dict) -> bytes:
        return bytes([fields["table"]])

    def read_params(self, raw: bytes, payload_bytes: int) -> dict:
        if len(raw) != 1:
            raise ArchiveError(f"corrupted archive: bad {self.name} parameters")
        return {"table": raw[0]}


def split_flat(flat: np.ndarray, shapes) -> list:
    """Cut a flat pixel run into images of the given shapes."""
    out, start = [], 0
    for height, width in shapes:
        out.append(flat[start:start + height * width].reshape(height, width))
        start += height * width
    return out
