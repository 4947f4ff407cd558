"""Diagonal-plus-rank-one affine bijector z = b + (diag(d) + u uᵀ) ε, d > 0.

This is eq. 19 of Rezende et al. (2014): with d > 0 the matrix is symmetric positive
definite, hence invertible, and both its log-determinant (matrix determinant lemma) and
its inverse (Sherman–Morrison) cost O(n) per vector instead of O(n³).
"""
from __future__ import annotations

import torch


def affine_forward(eps: torch.Tensor, shift: torch.Tensor, diag: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """z = shift + diag * eps + factor * <factor, eps>, all shaped (..., n)."""
    return shift + diag * eps + factor * (factor * eps).sum(-1, keepdim=True)


def affine_inverse(z: torch.Tensor, shift: torch.Tensor, diag: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """ε from z by Sherman–Morrison: (D + uuᵀ)⁻¹ y = D⁻¹y − D⁻¹u (uᵀD⁻¹y) / (1 + uᵀD⁻¹u)."""
    y = z - shift
    d_inv_y = y / diag
    d_inv_u = factor / diag
    coeff = (factor * d_inv_y).sum(-1, keepdim=True) / (1.0 + (factor * d_inv_u).sum(-1, keepdim=True))
    return d_inv_y - d_inv_u * coeff


def affine_log_det(diag: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """log|det(D + uuᵀ)| = Σ log d + log(1 + uᵀD⁻¹u) (matrix determinant lemma)."""
    return torch.log(diag).sum(-1) + torch.log1p((factor * factor / diag).sum(-1))


def affine_matrix(diag: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The dense matrix, for tests and inspection only."""
    return torch.diag_embed(diag) + factor.unsqueeze(-1) * factor.unsqueeze(-2)
