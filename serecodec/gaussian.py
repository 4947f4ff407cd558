"""Diagonal Gaussians on ε: the paper's scale map, log densities and the closed-form KL."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def variance_from_output(raw: torch.Tensor) -> torch.Tensor:
    """σ² = softplus(elu(raw)) (paper eq. 11): large outputs pass through, negatives floor smoothly."""
    return F.softplus(F.elu(raw))


def log_normal(x: torch.Tensor, loc: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Σ over the last axis of log N(x; loc, var)."""
    return -0.5 * (LOG_2PI + torch.log(var) + (x - loc) ** 2 / var).sum(-1)


def kl_normal(loc_q: torch.Tensor, var_q: torch.Tensor, loc_p: torch.Tensor, var_p: torch.Tensor) -> torch.Tensor:
    """KL(N(loc_q, var_q) || N(loc_p, var_p)) summed over the last axis."""
    return 0.5 * (torch.log(var_p) - torch.log(var_q) + (var_q + (loc_q - loc_p) ** 2) / var_p - 1.0).sum(-1)
