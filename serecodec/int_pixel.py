"""The integer twin of ``pixel_decoder.PixelContext``: the pixel-regressive likelihood of the
coding model, exact on every machine (numpy only).

g's hidden layer is one integer linear layer over [a_i, h_i(z), c_i] with the binary context
bits entering at activation scale (1.0 = 2**ACT_BITS), its output layer another; both come from
``export`` with the same quantization and exactness bound as every other layer. The context
part of the first product is looked up, not multiplied: a table over all 2**K context numbers
holds Σ_k bit_k(c)·w_k, which equals that part of the product exactly (integers). The encoder
(every pixel at once, contexts from the known image) and the decoder (one raster position at a
time over a batch of images, contexts from what it has decoded) call one compiled kernel
(``pixel_kernel``), so they compute the same logits.
"""
from __future__ import annotations

import numpy as np

from .causal import Raster, check_causal, context_numbers
from .fixedpoint import ACT_BITS
from .int_layers import IntLinear

MAX_CONTEXT_BITS = 20          # the context table has 2**K rows
MAX_TABLE_ENTRIES = 1 << 24    # 2**K x hidden: a model file cannot make loading take gigabytes


class IntPixelContext:
    def __init__(self, template, features: int, hidden_layer: IntLinear, out_layer: IntLinear,
                 tile_shape: tuple) -> None:
        self.template = check_causal(template)
        k = len(self.template)
        if not 1 <= k <= MAX_CONTEXT_BITS:
            raise ValueError(f"a pixel context of {k} pixels (1..{MAX_CONTEXT_BITS})")
        self.features, self.tile_shape = int(features), tuple(int(s) for s in tile_shape)
        self.pixels = self.tile_shape[0] * self.tile_shape[1]
        inputs = 1 + self.features
        if hidden_layer.weight.shape[0] != inputs + k or out_layer.weight.shape != (hidden_layer.weight.shape[1], 1):
            raise ValueError("pixel context layers have the wrong shapes")
        if (1 << k) * hidden_layer.weight.shape[1] > MAX_TABLE_ENTRIES:
            raise ValueError("pixel context table too large")
        self.hidden_layer, self.out_layer = hidden_layer, out_layer
        bits = (np.arange(1 << k)[:, None] >> np.arange(k - 1, -1, -1)) & 1        # first offset highest
        context_table = (bits.astype(np.float64) @ (hidden_layer.weight[inputs:] * float(1 << ACT_BITS))).astype(np.int64)
        # (integer-valued float64 for the kernel: exact, as the engines' products, below 2**53)
        self._kernel_weights = (hidden_layer.weight[:inputs].astype(np.float64), context_table.astype(np.float64),
                                hidden_layer.bias.astype(np.float64).reshape(-1), np.int64(hidden_layer.shift),
                                out_layer.weight[:, 0].astype(np.float64), float(out_layer.bias.reshape(-1)[0]),
                                np.int64(out_layer.shift))

    def split(self, decoded: np.ndarray) -> np.ndarray:
        """The decoder network's output (B, P·(1+F)) as (B, P, 1+F): each pixel's [a, h...]."""
        batch = len(decoded)
        return np.ascontiguousarray(decoded.reshape(batch, 1 + self.features, self.pixels).transpose(0, 2, 1),
                                    dtype=np.float64)

    def teacher_logits(self, decoded: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(B, P) logits of every pixel at once, contexts from the known images x (B, P)."""
        from .pixel_kernel import teacher_logits      # (numba loads when a pixel model first codes)
        batch = len(x)
        rows = self.split(decoded).reshape(batch * self.pixels, 1 + self.features)
        contexts = context_numbers(np.asarray(x, np.uint8).reshape(batch, *self.tile_shape), self.template)
        contexts = contexts.reshape(-1) & (len(self._kernel_weights[1]) - 1)     # (never out of the table)
        return teacher_logits(rows, contexts, *self._kernel_weights).reshape(batch, self.pixels)

    def raster_decode(self, decoded: np.ndarray, sigmoid, scale: float, pop, mask=None) -> np.ndarray:
        """Fill a batch of images pixel by pixel: at each raster position, P(1) of every image
        (contexts from what is decoded; ``sigmoid`` the coding model's logit table, probabilities
        its integers / ``scale``) → ``pop(probs)`` gives those images' bits. ``mask`` (B, P) bool:
        pixels outside it are padding, never popped, and read 0."""
        from .pixel_kernel import raster_probabilities
        batch = len(decoded)
        per_pixel = self.split(decoded)
        raster = Raster(batch, self.tile_shape, self.template)
        direct = sigmoid(np.arange(sigmoid.lo, sigmoid.hi + 1, dtype=np.int64))   # the table's own values, unrolled
        canvas, where, offsets, lo, weights = raster.canvas, raster.where.tolist(), raster.offsets, sigmoid.lo, \
            self._kernel_weights                        # (looked up once: this loop runs per raster position)
        all_rows = np.arange(batch)
        for pixel in range(self.pixels):
            rows = all_rows if mask is None else np.flatnonzero(mask[:, pixel])
            if len(rows):                           # (no padding: a column slice, cheaper than fancy indexing)
                canvas[slice(None) if mask is None else rows, where[pixel]] = pop(raster_probabilities(
                    canvas, rows, where[pixel], offsets, per_pixel, pixel, direct, lo, scale, *weights))
        return raster.images()
