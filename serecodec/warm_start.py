"""The warm start of a bits-back stack: its first images are pushed whole under a context model
(by shape alone, so the decoder knows which: the static digit model for 28x28, the adaptive
model with fresh counts for any other size), so the stack has bits to give back before the
first bits-back batch instead of ~1,000 random initial bits. The decoder pops them last, pixel
by pixel, through the same integer probabilities the adaptive kernel uses."""
from __future__ import annotations

import constriction
import numpy as np

PROB_BITS_ADAPTIVE = 16     # the adaptive model's probabilities are int / 2**16
WARM_MAX_PIXELS = 1 << 16   # warm start only from images this small (their decoder runs pixel by pixel)
WARM_MAX_TOTAL = 1 << 22    # and at most this many warm-start pixels in all (bounds a hostile header)

_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


class WarmStartTooLarge(ValueError):
    """The first images are too large (or too many) for a warm start; use initial words instead."""


class WarmStart:
    """Which model codes a warm-start image, by its shape alone (so the decoder knows): the static
    digit context model for its 28x28, the adaptive model (fresh counts) for any other size."""

    def __init__(self, adaptive, static=None) -> None:
        self.adaptive, self.static = adaptive, static

    def _static_for(self, shape) -> bool:
        return self.static is not None and tuple(shape) == (self.static.height, self.static.width)

    def sequence(self, image: np.ndarray) -> tuple:
        """(symbols in decoding order, P(1) of each as float)."""
        if self._static_for(image.shape):
            return self.static.sequence(image)
        bits, probs = self.adaptive.sequence(image)
        return bits, probs / float(1 << PROB_BITS_ADAPTIVE)

    def decode(self, coder, shape: tuple) -> np.ndarray:
        """Pop one warm-start image pixel by pixel (the mirror of ``BitsBackEncoder.push_warm``)."""
        if self._static_for(shape):
            return self.static.decode_with(lambda probs: coder.decode(_BERNOULLI, probs), 1)[0]
        return _decode_adaptive_warm(coder, self.adaptive, shape)


def _decode_adaptive_warm(coder, adaptive, shape: tuple) -> np.ndarray:
    # numba (the kernels' compiler) loads only when a warm-start image of the adaptive model decodes
    from .adaptive_kernel import TP_CONTEXT, _probability, _update, context_at
    height, width = shape
    counts = adaptive.initial.copy()
    pixels = np.zeros(height * width, np.uint8)
    scale = float(1 << PROB_BITS_ADAPTIVE)
    pop = lambda p: int(coder.decode(_BERNOULLI, np.array([p / scale]))[0])  # noqa: E731
    for y in range(height):
        repeat = pop(_probability(counts, TP_CONTEXT))
        _update(counts, TP_CONTEXT, repeat, adaptive.increment, adaptive.limit)
        if repeat:
            if y:
                pixels[y * width:(y + 1) * width] = pixels[(y - 1) * width:y * width]
            continue
        for x in range(width):
            ctx = context_at(pixels, 0, width, height, y, x)
            bit = pop(_probability(counts, ctx))
            _update(counts, ctx, bit, adaptive.increment, adaptive.limit)
            pixels[y * width + x] = bit
    return pixels.reshape(height, width)
