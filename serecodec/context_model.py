"""A static context model for small archives: P(pixel | 12 causal neighbours, 7x7 block).

Bits-back coding pays ~1000 initial bits once per archive, so below a few dozen images a
plain pixel-by-pixel model wins. This one is JBIG's idea with the adaptivity replaced by
counts fitted once on the MNIST training digits: each pixel is coded with a range coder under
a probability looked up from its 12 already-coded neighbours (two rows above, four to the left)
and which of the 4x4 blocks of 7x7 pixels it lies in. No initial bits, no per-archive
adaptation cost: one digit takes ~20 bytes. The table is fitted by training/fit_context_model.py
and its probabilities are integers / 2**PIXEL_BITS, so coding is bit-exact everywhere.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import constriction
import numpy as np

from .causal import DIGITS_12, context_numbers
from .errors import SerecodecError
from .fileio import atomic_write_bytes
from .inputs import require_bilevel
from .paths import MODELS_DIR

PIXEL_BITS = 24
TEMPLATE = DIGITS_12          # the causal neighbours (``causal``), most significant context bit first
BLOCK = 7
PAD_TOP, PAD_SIDE = 2, 4
DEFAULT_CONTEXT_MODEL = MODELS_DIR / "context.npz"
# An archive names its table by number; each number stands for one fitted table forever.
CONTEXT_TABLES = {1: "52bd1964499678bb"}     # id -> sha256 prefix of the table
CURRENT_TABLE = 1

_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


class ContextModelError(SerecodecError):
    """The context-model file is missing or damaged; the message names it."""


def _block_index(height: int, width: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(height) // BLOCK, np.arange(width) // BLOCK, indexing="ij")
    return rows * -(-width // BLOCK) + cols


def context_bits(height: int, width: int) -> int:
    blocks = int(_block_index(height, width).max()) + 1
    return len(TEMPLATE) + max(1, (blocks - 1).bit_length())


def contexts(images: np.ndarray) -> np.ndarray:
    """Context number of every pixel, (N, H, W) int64; pixels outside the image count as 0."""
    images = require_bilevel(np.ascontiguousarray(images), "context model input")
    n, height, width = images.shape
    ctx = context_numbers(images, TEMPLATE)
    shift = context_bits(height, width) - len(TEMPLATE)
    return (ctx << shift) | _block_index(height, width)[None]


def fit_table(images: np.ndarray, prior: float = 0.4) -> np.ndarray:
    """P(1 | context) from counts (add-``prior`` smoothing) as integers in [1, 2**PIXEL_BITS − 1]."""
    images = np.asarray(images, dtype=np.uint8)
    ctx = contexts(images).ravel()
    size = 1 << context_bits(*images.shape[1:])
    ones = np.bincount(ctx[images.ravel() == 1], minlength=size)
    total = np.bincount(ctx, minlength=size)
    p1 = (ones + prior) / (total + 2 * prior)
    scale = 1 << PIXEL_BITS
    return np.clip(np.round(p1 * scale), 1, scale - 1).astype(np.int64)


@dataclass
class ContextModel:
    table: np.ndarray           # int64 P(1 | context) · 2**PIXEL_BITS
    height: int = 28
    width: int = 28

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.table.astype("<i8").tobytes()).hexdigest()

    def _probabilities(self, ctx: np.ndarray) -> np.ndarray:
        return self.table[ctx].astype(np.float64) / (1 << PIXEL_BITS)   # exact in float64

    def expected_bits(self, images: np.ndarray) -> float:
        """Ideal code length of ``images`` (N, H, W) in bits, without the coder's rounding."""
        p1 = self._probabilities(contexts(images))
        return float(-np.log2(np.where(np.asarray(images) == 1, p1, 1.0 - p1)).sum())

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint32 range-coder words for ``images`` (N, H, W) of 0/1, coded pixel by pixel,
        all images' pixel 0 first, so that decoding runs one step per pixel position."""
        images = np.asarray(images)
        self._check_shape(images.shape)
        encoder = constriction.stream.queue.RangeEncoder()
        order = images.reshape(len(images), -1).T.ravel().astype(np.int32)
        probs = self._probabilities(contexts(images)).reshape(len(images), -1).T.ravel()
        encoder.encode(order, _BERNOULLI, probs)
        return encoder.get_compressed()

    def decode(self, words: np.ndarray, count: int) -> np.ndarray:
        decoder = constriction.stream.queue.RangeDecoder(np.asarray(words, dtype=np.uint32))
        return self.decode_with(lambda probs: decoder.decode(_BERNOULLI, probs), count)

    def sequence(self, image: np.ndarray) -> tuple:
        """(pixels in raster order, P(1) of each): what a warm start pushes onto a bits-back stack."""
        image = np.asarray(image)[None]
        self._check_shape(image.shape)
        return image.reshape(-1).astype(np.int32), self._probabilities(contexts(image)).reshape(-1)

    def decode_with(self, pop, count: int) -> np.ndarray:
        """Decode ``count`` images one pixel position at a time; ``pop(P(1) per image)`` returns
        the bits from whichever coder holds them (the range coder here, an ANS stack in a warm start)."""
        height, width = self.height, self.width
        padded_width = width + 2 * PAD_SIDE
        padded = np.zeros((count, (PAD_TOP + height) * padded_width), dtype=np.uint8)
        # for each pixel: the flat positions of its neighbours, and the weights that make them a number
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        here = (PAD_TOP + rows.ravel()) * padded_width + PAD_SIDE + cols.ravel()
        offsets = np.array([dy * padded_width + dx for dy, dx in TEMPLATE])
        neighbours = here[:, None] + offsets[None, :]
        shift = context_bits(height, width) - len(TEMPLATE)
        weights = (1 << np.arange(len(TEMPLATE) - 1, -1, -1)) << shift
        blocks = _block_index(height, width).ravel()
        for pixel in range(height * width):
            ctx = padded[:, neighbours[pixel]].astype(np.int64) @ weights + blocks[pixel]
            padded[:, here[pixel]] = pop(self._probabilities(ctx))
        return padded[:, here].reshape(count, height, width).astype(np.uint8)

    def _check_shape(self, shape) -> None:
        if len(shape) != 3 or tuple(shape[1:]) != (self.height, self.width):
            raise ValueError(f"the context model codes {self.height}x{self.width} images, not {shape}")

    def save(self, path: Path, meta: str = "") -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, table=self.table.astype(np.int32), shape=np.array([self.height, self.width]),
                            meta=np.array(meta))
        atomic_write_bytes(Path(path), buffer.getvalue())


def load_context_model(path: Path = DEFAULT_CONTEXT_MODEL) -> ContextModel:
    path = Path(path)
    try:
        with np.load(path) as blob:
            table, (height, width) = blob["table"].astype(np.int64), blob["shape"].tolist()
    except FileNotFoundError:
        raise ContextModelError(f"{path}: no such context-model file") from None
    except Exception as exc:   # numpy raises many kinds for a damaged file
        raise ContextModelError(f"{path}: not a readable context model ({type(exc).__name__})") from None
    if table.shape != (1 << context_bits(height, width),) or table.min() < 1 or table.max() >= 1 << PIXEL_BITS:
        raise ContextModelError(f"{path}: context table has the wrong size or range")
    model = ContextModel(table, height, width)
    if not model.hash.startswith(CONTEXT_TABLES[CURRENT_TABLE]):
        raise ContextModelError(f"{path}: context table {model.hash[:16]} is not table "
                                f"{CURRENT_TABLE} ({CONTEXT_TABLES[CURRENT_TABLE]}) that archives refer to")
    return model
