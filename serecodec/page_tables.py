"""The page model's fixed-point constants and tables: the one place that defines them (the
compiled kernel, ``_page_kernel.c``, carries copies that ``page_model`` checks on import)."""
from __future__ import annotations

import numpy as np

PAD = 34                       # template reach, rows above and columns each side (page_model: 2 periods)
STATE_BITS = 10                # a slot: probability << STATE_BITS | count
APM_STEP = 192                 # stretch units between APM knots (33 knots over -3072..3072)
# σ(k/2) for k = -24..24 in 16-bit fixed point: the knots of squash (linear between them)
SQUASH_KNOTS = np.array([0, 1, 1, 2, 3, 5, 8, 13, 22, 36, 60, 98, 162, 267, 439, 720, 1179, 1921, 3108, 4971,
                         7812, 11955, 17625, 24743, 32768, 40793, 47911, 53581, 57724, 60565, 62428, 63615, 64357,
                         64816, 65097, 65269, 65374, 65438, 65476, 65500, 65514, 65523, 65528, 65531, 65533,
                         65534, 65535, 65535, 65536], dtype=np.int64)
# The layered state's second mixers (the kernel): one weight set per (ink count of the 10-pixel
# template, 0..10) x (the large hashed model's confidence bucket, 4), then one per run-map state
# pair (8 lengths x 2 bits of the first map, x 3 states of the second).
NEAR_SETS = 11 * 4
RUN_SETS = 8 * 2 * 3
LAYERED_SETS = NEAR_SETS + RUN_SETS
STRETCH_LIMIT = 3071           # logits are in 1/256 units, within ±12


def _squash_table() -> np.ndarray:
    d = np.arange(-STRETCH_LIMIT, STRETCH_LIMIT + 1, dtype=np.int64) + 3072
    i, w = d >> 7, d & 127
    p = SQUASH_KNOTS[i] + (((SQUASH_KNOTS[i + 1] - SQUASH_KNOTS[i]) * w) >> 7)
    return np.clip(p, 1, 65535)


SQUASH = _squash_table()                                   # index d + STRETCH_LIMIT -> P(1) in 1..65535
# stretch of a 12-bit probability: the smallest logit whose squash reaches the bucket's middle
STRETCH = (np.searchsorted(SQUASH, np.arange(4096, dtype=np.int64) * 16 + 8) - STRETCH_LIMIT).astype(np.int64)
RECIPROCAL = (65536 * 2 // (2 * np.arange(1 << STATE_BITS, dtype=np.int64) + 3)).astype(np.int64)
