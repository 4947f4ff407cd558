"""The adaptive context model: JBIG's idea (16-pixel causal template, counts that adapt while
coding) started from counts learned on training images, for bilevel images of any size.

It is the floor under the learned model: any image, any size, no initial bits, and no model
file beyond a 512 KB table of initial counts. Per context c it keeps integer counts (n0, n1),
codes the pixel with P(1) = (n1 + 1/2) / (n0 + n1 + 1) in 16-bit fixed point, then adds
``INCREMENT`` to the count of the value seen and halves both once their sum passes ``LIMIT``
(so the statistics follow the page). The counts carry over from one image to the next, so an
archive of many small images learns as it goes. The initial counts, fitted once
(``training/fit_adaptive.py``) and scaled down to at most ``PRIOR_WEIGHT`` observations per
context, let a single small image code well; the archive names the table by number.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ArchiveError, SerecodecError
from .fileio import atomic_write_bytes
from .inputs import require_bilevel
from .paths import MODELS_DIR

INCREMENT = 2
LIMIT = 512
PRIOR_WEIGHT = 24
CONTEXTS = (1 << 16) + 1      # 16-pixel contexts, then the row-repeat flag
DEFAULT_TABLE_PATH = MODELS_DIR / "adaptive.npz"
# An archive names its initial counts by number; each number stands for one table forever.
ADAPTIVE_TABLES = {1: "31a3250736dbd5a6"}     # id -> sha256 prefix of the table (training/fit_adaptive.py)
CURRENT_TABLE = 1


class AdaptiveModelError(SerecodecError):
    """The table of initial counts is missing or damaged; the message names the file."""


def _flat(images: Sequence[np.ndarray]):
    heights = np.array([image.shape[0] for image in images], dtype=np.int64)
    widths = np.array([image.shape[1] for image in images], dtype=np.int64)
    if len(images) and isinstance(images, np.ndarray):
        pixels = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1)
    else:
        pixels = np.concatenate([np.ascontiguousarray(image, dtype=np.uint8).reshape(-1) for image in images]
                                or [np.zeros(0, np.uint8)])
    return require_bilevel(pixels, "adaptive model input"), heights, widths


def scale_counts(counts: np.ndarray, weight: int = PRIOR_WEIGHT) -> np.ndarray:
    """Observed counts (contexts, 2) shrunk so no context starts with more than ``weight`` (x INCREMENT)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(1, keepdims=True)
    scaled = counts * np.minimum(1.0, weight / np.maximum(total, 1)) * INCREMENT
    return np.round(scaled).astype(np.int32)


class AdaptiveContextModel:
    """Encode/decode images of any sizes with adaptive counts started from ``initial``."""

    method = "adaptive"

    def __init__(self, initial: np.ndarray, table_id: int = CURRENT_TABLE) -> None:
        initial = np.asarray(initial, dtype=np.int32)
        if initial.shape != (CONTEXTS, 2) or initial.min() < 0 or initial.sum(1).max() > LIMIT:
            raise AdaptiveModelError("initial counts have the wrong shape or range")
        self.initial, self.table_id = initial, table_id

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.initial.astype("<i4").tobytes()).hexdigest()

    increment, limit = INCREMENT, LIMIT

    def sequence(self, image: np.ndarray) -> tuple:
        """(symbols, P(1) as int / 2**16) of one image in coding order, from fresh counts: what the
        warm start pushes onto the bits-back stack."""
        from .adaptive_kernel import model_sequence      # (numba loads when a kernel first runs, not on import)

        pixels, heights, widths = _flat([image])
        return model_sequence(pixels, heights, widths, self.initial.copy(), INCREMENT, LIMIT)

    def encode(self, images: Sequence[np.ndarray]) -> bytes:
        from .adaptive_kernel import encode_pixels

        pixels, heights, widths = _flat(images)
        return encode_pixels(pixels, heights, widths, self.initial.copy(), INCREMENT, LIMIT).tobytes()

    def decode(self, payload: bytes, shapes: Sequence[tuple]) -> np.ndarray:
        """Flat 0/1 pixels of all images in order; raises ArchiveError unless exactly the payload was read."""
        from .adaptive_kernel import decode_pixels

        heights = np.array([h for h, _ in shapes], dtype=np.int64)
        widths = np.array([w for _, w in shapes], dtype=np.int64)
        pixels = np.zeros(int((heights * widths).sum()), dtype=np.uint8)
        data = np.frombuffer(payload, dtype=np.uint8)
        used = decode_pixels(data, heights, widths, self.initial.copy(), INCREMENT, LIMIT, pixels)
        if used != len(data):
            raise ArchiveError("corrupted archive: the adaptive-context payload does not decode to its length")
        return pixels

    def expected_bits(self, images: Sequence[np.ndarray]) -> float:
        return 8.0 * len(self.encode(images))

    def save(self, path: Path, meta: str = "") -> None:

        buffer = io.BytesIO()
        np.savez_compressed(buffer, initial=self.initial.astype(np.uint16), meta=np.array(meta))
        atomic_write_bytes(Path(path), buffer.getvalue())


def load_adaptive_model(path: Path = DEFAULT_TABLE_PATH, check_id: bool = True) -> AdaptiveContextModel:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as blob:
            initial = blob["initial"].astype(np.int32)
    except FileNotFoundError:
        raise AdaptiveModelError(f"{path}: no such adaptive-context table") from None
    except Exception as exc:   # numpy raises many kinds for a damaged file
        raise AdaptiveModelError(f"{path}: not a readable adaptive-context table ({type(exc).__name__})") from None
    try:
        model = AdaptiveContextModel(initial)
    except AdaptiveModelError as exc:
        raise AdaptiveModelError(f"{path}: {exc}") from None
    expected = ADAPTIVE_TABLES.get(CURRENT_TABLE)
    if check_id and expected and not model.hash.startswith(expected):
        raise AdaptiveModelError(f"{path}: table {model.hash[:16]} is not table {CURRENT_TABLE} ({expected}) "
                                 f"that archives refer to")
    return model
