"""Integer importance weights for importance-weighted bits-back (BB-IS, as in McBits).

With K particle chains z¹..zᴷ drawn from the posterior, the coder picks one chain j with
probability w_j / Σ w, w_k = p(x | zᵏ) p(zᵏ) / q(zᵏ | x). Encoder and decoder must compute
that distribution identically on every machine, engine and batch size, so it is built from
integers only: log2 of the coder's integer probabilities from a table made by an integer
algorithm (no libm), sums in int64, and 2^(difference) from a table made by integer products.
Rounding here only blurs the weights (a tiny rate cost), never the agreement of both sides.
"""
from __future__ import annotations

import numpy as np

LOG_BITS = 16                    # log2 values are int / 2**16
_MANTISSA_BITS = 16              # log2 of v's leading 16 bits after the top one, looked up
_EXP_STEPS = 256                 # 2^(-d) is tabulated at 1/256-bit steps
_EXP_SCALE_BITS = 30             # the most likely particle gets mass 2**30
_EXP_STEP_FACTOR = 1070838486    # round(2**30 · 2**(-1/256)), written out so no libm is involved


def _log2_one_plus(fraction_bits: int, out_bits: int) -> np.ndarray:
    """log2(1 + i / 2**fraction_bits) at 2**out_bits for every i, by repeated squaring (integers only)."""
    precision = 30
    m = (np.arange(1 << fraction_bits, dtype=np.int64) + (1 << fraction_bits)) << (precision - fraction_bits)
    result = np.zeros_like(m)
    for _ in range(out_bits):
        m = (m * m) >> precision                     # m < 2**31 here, so m² < 2**62 fits int64
        carry = m >= (2 << precision)
        m = np.where(carry, m >> 1, m)
        result = (result << 1) | carry
    return result


_LOG_TABLE = _log2_one_plus(_MANTISSA_BITS, LOG_BITS)


def _exp_table() -> np.ndarray:
    values = [1 << _EXP_SCALE_BITS]
    for _ in range(_EXP_STEPS - 1):
        values.append((values[-1] * _EXP_STEP_FACTOR + (1 << 29)) >> 30)
    return np.array(values, dtype=np.int64)


_EXP_TABLE = _exp_table()


def log2_fixed(values: np.ndarray) -> np.ndarray:
    """log2(v) at 2**LOG_BITS for integers 1 ≤ v < 2**46 (truncated to 16 mantissa bits)."""
    v = np.maximum(np.asarray(values, dtype=np.int64), 1)
    top = np.zeros_like(v)
    for step in (32, 16, 8, 4, 2, 1):                # floor(log2 v), bit by bit
        top += step * ((v >> (top + step)) != 0)
    mantissa = ((v << _MANTISSA_BITS) >> top) - (1 << _MANTISSA_BITS)
    return (top << LOG_BITS) + _LOG_TABLE[mantissa]


def index_masses(log_weights: np.ndarray) -> np.ndarray:
    """(B, K) integer masses ∝ 2^(log_weights / 2**LOG_BITS) per row, the best one 2**30."""
    d = log_weights.max(axis=-1, keepdims=True) - np.asarray(log_weights, dtype=np.int64)
    whole = np.minimum(d >> LOG_BITS, 62)
    step = (d >> (LOG_BITS - 8)) & (_EXP_STEPS - 1)
    return _EXP_TABLE[step] >> whole
