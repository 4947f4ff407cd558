"""Causal contexts, defined once: the templates of already-coded neighbours (raster order) that
context models look at, and their extraction for whole images at once, in numpy for coding and
in torch for teacher-forced training, with the same numbers (pixels outside the image read 0).

A template is a tuple of (row offset, column offset), most significant context bit first; every
offset lies before the pixel in raster order (``check_causal``), so a decoder that fills an
image pixel by pixel always knows them. The adaptive model's compiled kernel keeps its 16-pixel
template in shift registers for speed; ``JBIG2_16`` is that template, and a test holds the two
together.
"""
from __future__ import annotations

import numpy as np

# JBIG2's generic-region template 0 without its adaptive pixels: rows y-2 (x-2..x+2), y-1
# (x-3..x+3), y (x-4..x-1). The adaptive context model (adaptive_kernel) codes with it.
JBIG2_16 = tuple((-2, dx) for dx in range(-2, 3)) + tuple((-1, dx) for dx in range(-3, 4)) + \
    tuple((0, dx) for dx in range(-4, 0))
# The static digit model's 12 neighbours (context_model).
DIGITS_12 = ((-2, -1), (-2, 0), (-2, 1), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2),
             (0, -4), (0, -3), (0, -2), (0, -1))
TEMPLATES = {"jbig2-16": JBIG2_16, "digits-12": DIGITS_12}


def check_causal(template) -> tuple:
    """``template`` as a tuple of int pairs, or ValueError if an offset is not strictly before
    the pixel in raster order."""
    template = tuple((int(dy), int(dx)) for dy, dx in template)
    if not template or any(dy > 0 or (dy == 0 and dx >= 0) for dy, dx in template):
        raise ValueError(f"a causal template needs offsets above, or left in the same row: {template}")
    return template


def _reach(template: tuple) -> tuple:
    return (max(-dy for dy, _ in template), max(max(-dx for _, dx in template), 0),
            max(max(dx for _, dx in template), 0))


def _shifted(images: np.ndarray, template):
    """For each template offset, the (N, H, W) image of that neighbour of every pixel (0 outside)."""
    template = check_causal(template)
    images = np.asarray(images, dtype=np.uint8)
    n, height, width = images.shape
    top, left, right = _reach(template)
    padded = np.pad(images, ((0, 0), (top, 0), (left, right)))
    return [padded[:, top + dy:top + dy + height, left + dx:left + dx + width] for dy, dx in template]


def neighbours(images: np.ndarray, template) -> np.ndarray:
    """(N, H, W, K) uint8: for each pixel of (N, H, W) 0/1 ``images`` the K template pixels."""
    return np.stack(_shifted(images, template), axis=-1)


def context_numbers(images: np.ndarray, template) -> np.ndarray:
    """(N, H, W) int64: each pixel's template pixels read as a binary number, first offset highest."""
    ctx = np.zeros(np.shape(images), dtype=np.int64)
    for plane in _shifted(images, template):
        ctx = (ctx << 1) | plane
    return ctx


def neighbours_torch(images, template):
    """The torch twin of ``neighbours`` for training: (B, H, W) tensor -> (B, K, H, W), same
    values, differentiable in nothing (the inputs are data)."""
    import torch                          # (torch only for training; coding uses the numpy twin)
    import torch.nn.functional as F
    template = check_causal(template)
    top, left, right = _reach(template)
    height, width = images.shape[-2:]
    padded = F.pad(images, (left, right, top, 0))
    return torch.stack([padded[:, top + dy:top + dy + height, left + dx:left + dx + width] for dy, dx in template],
                       dim=1)


class Raster:
    """The layout of a batch of images being filled pixel by pixel in raster order, from which a
    decoder reads each pixel's template neighbours (the decoder's side of ``context_numbers``):
    flat canvases zero-padded by the template's reach, so outside the image reads 0 and every
    ``where[pixel] + offsets`` lies inside the canvas, for any pixel of the image."""

    def __init__(self, batch: int, shape: tuple, template) -> None:
        template = check_causal(template)
        self.height, self.width = int(shape[0]), int(shape[1])
        top, left, right = _reach(template)
        self.row_stride = left + self.width + right
        self.canvas = np.zeros((batch, (top + self.height) * self.row_stride), np.int64)
        # flat canvas index of each pixel, and of its template neighbours relative to it
        rows, cols = np.divmod(np.arange(self.height * self.width), self.width)
        self.where = (rows + top) * self.row_stride + cols + left
        self.offsets = np.array([dy * self.row_stride + dx for dy, dx in template], np.int64)

    def images(self) -> np.ndarray:
        """(B, H·W) uint8: what has been filled."""
        return self.canvas[:, self.where].astype(np.uint8)
