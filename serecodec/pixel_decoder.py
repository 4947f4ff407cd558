"""The pixel-regressive likelihood (issue 21): p(x | z) = Π_i Bernoulli(σ(a_i(z) + g(c_i, a_i, h_i(z)))).

The factorized decoder pays for every stroke-edge pixel as if its neighbours were unknown. Here
each pixel's logit a_i(z) is corrected by a small network g that also sees c_i, the pixel's
causal neighbours (a template from ``causal``, read as 0 outside the image), and F extra
per-pixel features h_i(z) that the decoder network emits beside the logits. g is one hidden
layer of H ReLU units, so a pixel costs about (K + 1 + F)·H + H multiply-adds on top of the
decoder: coding can afford to evaluate it pixel by pixel, vectorized over a batch of images.

Training is teacher-forced: the contexts come from the true image (``causal.neighbours_torch``),
so one pass computes every pixel's logit. g's output layer starts at zero, so a model warm-started
from a factorized one begins at exactly its ELBO.
"""
from __future__ import annotations

import torch
from torch import nn

from .causal import TEMPLATES, check_causal, neighbours_torch


class PixelContext(nn.Module):
    def __init__(self, template_name: str, features: int, hidden: int, tile_shape: tuple) -> None:
        super().__init__()
        self.template = check_causal(TEMPLATES[template_name])
        self.features, self.tile_shape = features, tuple(tile_shape)
        k = len(self.template)
        self.context_weight = nn.Parameter(torch.randn(k, hidden) * (1.0 / k) ** 0.5)
        self.logit_weight = nn.Parameter(torch.randn(hidden) * 0.1)
        self.feature_weight = nn.Parameter(torch.randn(features, hidden) * 0.1)
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))
        self.out_weight = nn.Parameter(torch.zeros(hidden))
        self.out_bias = nn.Parameter(torch.zeros(()))

    def forward(self, decoded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Final logits (B, P) from the decoder's output (B, P·(1+F): logits, then F feature
        planes) and the true images x (B, P) whose causal neighbours condition each pixel."""
        batch, pixels = x.shape
        logits = decoded[:, :pixels]
        feats = decoded[:, pixels:].reshape(batch, self.features, pixels).transpose(1, 2)   # (B, P, F)
        context = neighbours_torch(x.reshape(batch, *self.tile_shape), self.template)        # (B, K, H, W)
        context = context.reshape(batch, len(self.template), pixels).transpose(1, 2)         # (B, P, K)
        hidden = context @ self.context_weight + logits.unsqueeze(-1) * self.logit_weight + self.hidden_bias
        if self.features:
            hidden = hidden + feats @ self.feature_weight
        return logits + torch.relu(hidden) @ self.out_weight + self.out_bias
