"""Building blocks the float models share (the MLP SeRe-VAE and its ResNet parts): Keras'
glorot-normal initialization and G independent MLPs evaluated as one batched product."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def glorot_normal_(tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Keras' glorot_normal: truncated normal (±2σ) with variance 2 / (fan_in + fan_out)."""
    std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
    nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class GroupedMLP(nn.Module):
    """G independent MLPs that all read the same input; output shaped (G, batch, out)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, groups: int = 1, depth: int = 2,
                 activation=F.relu, out_activation=None) -> None:
        super().__init__()
        self.groups, self.hidden, self.activation, self.out_activation = groups, hidden, activation, out_activation
        self.first_weight = nn.Parameter(torch.empty(in_dim, groups * hidden))
        self.first_bias = nn.Parameter(torch.empty(groups * hidden))
        dims = [hidden] * (depth - 1) + [out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        fan_in = hidden
        for fan_out in dims:
            self.weights.append(nn.Parameter(torch.empty(groups, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.empty(groups, 1, fan_out)))
            fan_in = fan_out
        with torch.no_grad():
            glorot_normal_(self.first_weight, in_dim, hidden)
            glorot_normal_(self.first_bias, hidden, hidden)
            for w, b in zip(self.weights, self.biases):
                glorot_normal_(w, w.shape[1], w.shape[2])
                glorot_normal_(b, b.shape[2], b.shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        h = torch.addmm(self.first_bias, x, self.first_weight)
        h = self.activation(h).view(batch, self.groups, self.hidden).transpose(0, 1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.activation(h)
        return self.out_activation(h) if self.out_activation is not None else h
