"""Deterministic KL warm-up: geometric (paper §5.1, the MLP model) or linear (appendix 8, the
ResNet model: β rises linearly from 0 to 1 over the first 256 epochs).

KL level n = 0..N−1 lasts 2ⁿ units of training with weight β_n; β_0 = 0 and
β_n = 10^((n − N) / (N − 1)) for n ≥ 1, so β_1 = 0.1 and the levels are evenly spaced in
log β up to β_N = 1, the plain ELBO, which holds for the rest of training. With the paper's
unit of one epoch and N = 10 the warm-up lasts 2¹⁰ − 1 = 1023 epochs (Table 4: 1024).
A fractional ``unit`` scales the whole warm-up down for short budgets.

(The extracted paper text prints the exponent as "n / (N−1)"; read literally that exceeds 1
for every n ≥ 1. The form above is the one consistent with β_0 = 0 < β_n ≤ β_N = 1 and a
geometric progression, as Fig. 6b shows.)
"""
from __future__ import annotations

import math


def beta_level(n: int, levels: int) -> float:
    if n <= 0:
        return 0.0
    if n >= levels:
        return 1.0
    return 10.0 ** ((n - levels) / (levels - 1))


def level_epochs(levels: int, unit: float = 1.0) -> list[float]:
    """Length, in epochs, of warm-up levels 0..N−1."""
    return [unit * 2 ** n for n in range(levels)]


def warmup_epochs(levels: int, unit: float = 1.0) -> float:
    return unit * (2 ** levels - 1)


def beta_at(epoch: float, levels: int, unit: float = 1.0) -> float:
    """β after ``epoch`` (fractional) epochs of training; 1 once the warm-up is over."""
    if levels <= 0:
        return 1.0
    start = 0.0
    for n, length in enumerate(level_epochs(levels, unit)):
        if epoch < start + length:
            return beta_level(n, levels)
        start += length
    return 1.0


def warmup_beta(epoch: float, levels: int, unit: float = 1.0, linear_epochs: float = 0.0) -> float:
    """β of either warm-up: linear over ``linear_epochs`` when that is set, else geometric."""
    if linear_epochs > 0:
        return min(1.0, max(0.0, epoch) / linear_epochs)
    return beta_at(epoch, levels, unit)


def learning_rate_at(epoch: float, base: float, total_epochs: float, decay_epochs: float,
                     final_fraction: float = 0.02) -> float:
    """Adam's step size: ``base``, then a cosine cool-down over the last ``decay_epochs``.

    The paper keeps 1e-3 for all 4000 epochs; a budget 10x shorter stops while the constant
    step size still makes the weights jitter, and annealing it over the final stretch recovers
    part of what the missing epochs would have given. ``decay_epochs = 0`` is the paper's rule.
    """
    start = total_epochs - decay_epochs
    if decay_epochs <= 0 or epoch <= start:
        return base
    progress = min(1.0, (epoch - start) / decay_epochs)
    final = base * final_fraction
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
