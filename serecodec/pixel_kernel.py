"""The compiled steps of the pixel-regressive likelihood: g's two integer layers per pixel,
given its [a_i, h_i(z)] inputs and its context number. The encoder runs them over every pixel
of a batch at once (``teacher_logits``, contexts from the known images); the decoder runs one
raster position of a batch of images per call (``raster_probabilities``, contexts read from
what it has decoded so far), so the two compute each logit with the same integer operations
(``_logit``). A test holds them equal to the ``IntLinear`` layers they were exported as."""
from __future__ import annotations

import numpy as np
from numba import njit

from .fixedpoint import ACT_LIMIT

LIMIT = float(ACT_LIMIT)


@njit(cache=True, inline="always")
def _steps(shift):
    """(half, down) such that floor((v + half) · down) = round(v / 2**shift), halves up, on an
    integer-valued float64 v: exact (adding a power of two to an integer below 2**53, scaling by a
    power of two, floor), the same integer ``fixedpoint.round_shift`` gives. Computed once a call."""
    return (2.0 ** (shift - 1), 2.0 ** (-shift)) if shift > 0 else (0.0, 2.0 ** (-shift))


@njit(cache=True, inline="always")
def _clamp(value):
    return min(max(value, -LIMIT), LIMIT)


@njit(cache=True, inline="always")
def _logit(inputs, ctx, acc, dense_w, context_table, bias, steps, out_w, out_bias, out_steps):
    """a_i + out(relu(hidden)) at 2**ACT_BITS for one pixel's inputs (1+F,) and context number;
    ``acc`` (hidden,) scratch.

    Integers held in float64, as the matrix engines hold them: every partial sum stays below
    2**53 (the export's bound for these layers), so each sum is exact in any order, and float
    arithmetic lets the compiler vectorize the hidden units (inner loops run over them)."""
    hidden = acc.shape[0]
    for j in range(hidden):
        acc[j] = context_table[ctx, j] + bias[j]
    for i in range(inputs.shape[0]):
        value = inputs[i]
        for j in range(hidden):
            acc[j] += value * dense_w[i, j]
    half, down = steps
    total = out_bias
    for j in range(hidden):
        total += min(max(np.floor((acc[j] + half) * down), 0.0), LIMIT) * out_w[j]
    out_half, out_down = out_steps
    return int(_clamp(inputs[0] + _clamp(np.floor((total + out_half) * out_down))))


@njit(cache=True)
def teacher_logits(inputs, contexts, dense_w, context_table, bias, shift, out_w, out_bias, out_shift):
    """(R,) int64 logits for rows ``inputs`` (R, 1+F) with context numbers (R,) < len(context_table)."""
    out = np.empty(inputs.shape[0], np.int64)
    acc, steps, out_steps = np.empty(dense_w.shape[1]), _steps(shift), _steps(out_shift)
    for r in range(inputs.shape[0]):
        out[r] = _logit(inputs[r], contexts[r], acc, dense_w, context_table, bias, steps, out_w, out_bias, out_steps)
    return out


@njit(cache=True)
def raster_probabilities(canvas, rows, at, offsets, per_pixel, pixel, sigmoid, sigmoid_lo, scale,
                         dense_w, context_table, bias, shift, out_w, out_bias, out_shift):
    """P(1) (float, for the coder) of raster position ``pixel`` in the images ``rows``: each
    one's context number from ``canvas`` (B, N) 0/1 at ``at + offsets`` (first offset highest),
    its inputs from ``per_pixel`` (B, P, 1+F) float64, the sigmoid from a direct table starting at
    logit ``sigmoid_lo``; probabilities are the table's integers / ``scale``."""
    out = np.empty(rows.shape[0], np.float64)
    top = sigmoid.shape[0] - 1
    mask = context_table.shape[0] - 1
    acc, steps, out_steps = np.empty(dense_w.shape[1]), _steps(shift), _steps(out_shift)
    for r in range(rows.shape[0]):
        b = rows[r]
        ctx = 0
        for k in range(offsets.shape[0]):
            ctx = (ctx << 1) | canvas[b, at + offsets[k]]
        logit = _logit(per_pixel[b, pixel], ctx & mask, acc, dense_w, context_table, bias, steps, out_w, out_bias,
                       out_steps)
        out[r] = sigmoid[min(max(logit - sigmoid_lo, 0), top)] / scale
    return out
