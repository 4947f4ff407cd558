"""The ResNet parts of the SeRe-VAE of the paper's §5.2.2 and appendix 8 (Tables 6-7).

* Evidence encoders: one per latent layer, independent, each two ResNet blocks with feature
  maps 16 and 32, each halving the image (stride-2 3x3 convolutions), batch norm between the
  blocks, then a fully-connected layer to 64 features. The L encoders run as one grouped
  convolution (groups = L): the same maths as L separate networks, one kernel call.
* Decoder: a fully-connected layer from concat(z_1..z_L) to 32 maps of (H/4, W/4), two ResNet
  blocks with stride-2 transposed convolutions (32, then 16 maps), batch norm between them,
  and a 3x3 convolution to one map of logits.
* Residual variational layer (Fig. 8): φ_l = φ_l1(z_{l-1}) + r_l(z_{l-1}, D) in the networks'
  raw outputs, where φ_l1 reads the latent encoder's features of z_{l-1} and r_l reads the
  evidence D together with a hidden feature map of ⌊D_l/3⌋ features computed from z_{l-1}
  by a network shaped like φ_l1's.

Choices where the appendix is silent (README, "ResNet model"): a block is conv3x3(stride s) →
ReLU → conv3x3 → + shortcut (1x1 convolution of the input at the block's stride; for the
up-sampling blocks a nearest-neighbour doubling then 1x1) → ReLU; the decoder's first layer is
followed by a ReLU; the images must have sides divisible by 4 (28x28 here).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GroupedMLP, glorot_normal_

EVIDENCE_MAPS = (16, 32)
DECODER_MAPS = (32, 16)


def _glorot_(module: nn.Module) -> None:
    """Glorot-normal kernels (the paper's initializer), zero biases."""
    w = module.weight
    receptive = w[0, 0].numel()
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    if isinstance(module, nn.ConvTranspose2d):
        fan_in, fan_out = fan_out, fan_in
    with torch.no_grad():
        glorot_normal_(w, fan_in, fan_out)
        if module.bias is not None:
            module.bias.zero_()


class DownBlock(nn.Module):
    """conv3x3/2 → ReLU → conv3x3 → + 1x1/2 shortcut → ReLU, for ``groups`` independent networks."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(c_in * groups, c_out * groups, 3, stride=2, padding=1, groups=groups)
        self.conv_b = nn.Conv2d(c_out * groups, c_out * groups, 3, padding=1, groups=groups)
        self.shortcut = nn.Conv2d(c_in * groups, c_out * groups, 1, stride=2, groups=groups)
        for conv in (self.conv_a, self.conv_b, self.shortcut):
            _glorot_(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_b(F.relu(self.conv_a(x))) + self.shortcut(x))


class UpBlock(nn.Module):
    """convT3x3/2 → ReLU → conv3x3 → + 1x1 of the nearest-doubled input → ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        for conv in (self.conv_a, self.conv_b, self.shortcut):
            _glorot_(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        doubled = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.relu(self.conv_b(F.relu(self.conv_a(x))) + self.shortcut(doubled))


class ResNetEvidence(nn.Module):
    """L independent ResNet encoders of the image; output (L, B, features) like ``GroupedMLP``."""

    def __init__(self, tile: tuple, layers: int, features: int) -> None:
        super().__init__()
        height, width = tile
        if height % 4 or width % 4:
            raise ValueError(f"the ResNet model needs tile sides divisible by 4, not {height}x{width}")
        self.tile, self.layers = (height, width), layers
        c1, c2 = EVIDENCE_MAPS
        self.block1 = DownBlock(1, c1, layers)
        self.norm = nn.BatchNorm2d(c1 * layers)
        self.block2 = DownBlock(c1, c2, layers)
        flat = c2 * (height // 4) * (width // 4)
        self.fc_weight = nn.Parameter(torch.empty(layers, flat, features))
        self.fc_bias = nn.Parameter(torch.zeros(layers, 1, features))
        with torch.no_grad():
            glorot_normal_(self.fc_weight, flat, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        image = x.view(batch, 1, *self.tile).expand(batch, self.layers, *self.tile)
        h = self.block2(self.norm(self.block1(image)))                       # (B, L·c2, H/4, W/4)
        h = h.reshape(batch, self.layers, -1).transpose(0, 1)                # (L, B, flat)
        return torch.baddbmm(self.fc_bias, h, self.fc_weight)


class ResNetDecoder(nn.Module):
    """concat(z) → FC → 32 maps → two up-sampling blocks → logits; output (1, B, pixels)."""

    def __init__(self, tile: tuple, in_dim: int) -> None:
        super().__init__()
        height, width = tile
        self.tile = (height, width)
        c1, c2 = DECODER_MAPS
        self.start = (c1, height // 4, width // 4)
        self.fc = nn.Linear(in_dim, c1 * (height // 4) * (width // 4))
        _glorot_(self.fc)
        self.block1 = UpBlock(c1, c1)
        self.norm = nn.BatchNorm2d(c1)
        self.block2 = UpBlock(c1, c2)
        self.out = nn.Conv2d(c2, 1, 3, padding=1)
        _glorot_(self.out)

    @property
    def first_weight(self) -> torch.Tensor:      # the device/dtype probe SeReVAE uses
        return self.fc.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        h = F.relu(self.fc(z)).view(batch, *self.start)
        h = self.block2(self.norm(self.block1(h)))
        return self.out(h).view(1, batch, -1)


class ResidualPosterior(nn.Module):
    """Fig. 8: (loc, raw scale) = φ1(e) + r([D, h(e)]), e the latent encoder's features of z_{l-1}."""

    def __init__(self, latent_features: int, evidence_features: int, latent_dim: int, hidden: int,
                 depth: int) -> None:
        super().__init__()
        self.first = GroupedMLP(latent_features, hidden, latent_dim, groups=2, depth=depth)
        self.hidden_map = GroupedMLP(latent_features, hidden, latent_dim // 3, depth=depth)
        self.residual = GroupedMLP(evidence_features + latent_dim // 3, hidden, latent_dim, groups=2, depth=depth)

    def forward(self, evidence: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        rectified = self.residual(torch.cat([evidence, self.hidden_map(latent)[0]], dim=-1))
        return self.first(latent) + rectified
