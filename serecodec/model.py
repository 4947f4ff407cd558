"""The MLP Self-Reflective VAE of the paper (§3, appendix 7, Table 5) and its ablations.

Layer l (1..L) of the hierarchy, given the previous latent code z_{l-1}:

    prior       p(ε_l | z_{l-1}) = N(loc, σ²)          two 2×256 ReLU nets
    posterior   q(ε_l | z_{l-1}, x) = N(loc, σ²)       two 2×256 ReLU nets on
                                                       [evidence_l(x), latent_l(z_{l-1})]
    bijector    z_l = b + (diag(d) + u uᵀ) ε_l          three 2×20 tanh nets of z_{l-1}
    decoder     p(x | z_1..z_L) = Bernoulli(logits)    2×512 ReLU net on concat(z_1..z_L)

Layer 1 has unconditioned prior and bijector parameters. Because every f_l is a bijection
shared by p and q, KL(q(z)||p(z)) = KL(q(ε)||p(ε)), which is computed in closed form.

Variants (``ModelConfig.variant``):
  * ``"sere"``: the SeRe-VAE above;
  * ``"dlgm"``: the independent VAE / DLGM of the paper's Fig. 1: posterior and prior are not
    fed z_{l-1} (the bijectors still chain the layers top-down);
  * ``"resnet"``: the ResNet SeRe-VAE of §5.2.2 / appendix 8 (``resnet``): convolutional
    evidence encoders and decoder, residual variational layers; priors and bijectors as above.
``ModelConfig.prior = "standard"`` replaces every prior by N(0, I).

The networks of one kind that read the same input (loc and scale nets, the three bijector
nets, the L evidence encoders) are evaluated together as a grouped MLP: same maths as
separate networks, far fewer kernel launches, which is what makes CPU training bearable.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .bijector import affine_forward
from .gaussian import kl_normal, log_normal, variance_from_output
from .layers import GroupedMLP
from .pixel_decoder import PixelContext
from .resnet import ResNetDecoder, ResNetEvidence, ResidualPosterior

UNIT_VARIANCE_RAW = math.log(math.e - 1.0)  # softplus(elu(r)) == 1


@dataclass
class ModelConfig:
    num_layers: int = 10
    latent_dim: int = 10
    image_pixels: int = 784
    hidden_layers: int = 2
    evidence_hidden: int = 256
    evidence_features: int = 20
    latent_hidden: int = 256
    latent_features: int = 20
    gaussian_hidden: int = 256
    bijector_hidden: int = 20
    decoder_hidden: int = 512
    variant: str = "sere"          # "sere" | "dlgm"
    prior: str = "learned"         # "learned" | "standard"
    batch_norm: bool = True
    tile_height: int = 0           # the image (tile) shape; 0: a square of image_pixels
    tile_width: int = 0
    pixel_context: str = ""        # a causal template name: the pixel-regressive likelihood (pixel_decoder)
    pixel_features: int = 2        # its per-pixel features h_i(z) from the decoder network
    pixel_hidden: int = 32         # its hidden units

    @property
    def tile_shape(self) -> tuple:
        if self.tile_height and self.tile_width:
            return self.tile_height, self.tile_width
        side = math.isqrt(self.image_pixels)
        return (side, side) if side * side == self.image_pixels else (1, self.image_pixels)

    def __post_init__(self) -> None:
        if self.tile_height and self.tile_width and self.tile_height * self.tile_width != self.image_pixels:
            raise ValueError(f"tile {self.tile_height}x{self.tile_width} does not hold {self.image_pixels} pixels")
        if self.variant not in ("sere", "dlgm", "resnet"):
            raise ValueError(f"variant must be 'sere', 'dlgm' or 'resnet', not {self.variant!r}")
        if self.pixel_context and self.variant == "resnet":
            raise ValueError("the pixel-regressive decoder is built for the MLP decoders (sere, dlgm), not resnet")
        if self.prior not in ("learned", "standard"):
            raise ValueError(f"prior must be 'learned' or 'standard', not {self.prior!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# Model sizes for `serecodec train --preset`. "paper" is the MLP of the paper (Tables 4-5);
# the smaller ones trade likelihood for speed (README: what each costs and gains).
PRESETS = {
    "paper": {},
    "small": {"evidence_hidden": 128, "latent_hidden": 128, "gaussian_hidden": 128, "decoder_hidden": 256},
    "tiny": {"num_layers": 4, "evidence_hidden": 64, "latent_hidden": 64, "gaussian_hidden": 64,
             "decoder_hidden": 128, "evidence_features": 16, "latent_features": 16},
    "resnet": {"variant": "resnet", "evidence_features": 64},
}


class FreeGaussian(nn.Module):
    """Unconditioned diagonal Gaussian (layer-1 prior, DLGM priors)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.raw_var = nn.Parameter(torch.full((dim,), UNIT_VARIANCE_RAW))

    def forward(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        var = variance_from_output(self.raw_var)
        return self.loc.expand(batch, -1), var.expand(batch, -1)


class FreeAffine(nn.Module):
    """Unconditioned affine bijector parameters for layer 1."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))
        self.raw_diag = nn.Parameter(torch.full((dim,), UNIT_VARIANCE_RAW))
        self.factor = nn.Parameter(0.1 * torch.randn(dim))

    def forward(self, batch: int):
        diag = variance_from_output(self.raw_diag)
        return self.shift.expand(batch, -1), diag.expand(batch, -1), self.factor.expand(batch, -1)


@dataclass
class Trace:
    """Per-sample quantities of one pass through the hierarchy (all shaped (batch,) or (batch, L))."""

    log_px: torch.Tensor                 # log p(x | z_1..z_L)
    kl: torch.Tensor                     # closed-form KL per layer, conditioned on the sampled z_{l-1}
    log_ratio: torch.Tensor              # log p(ε_l | z_{l-1}) − log q(ε_l | z_{l-1}, x) per layer
    z: list = field(default_factory=list)

    @property
    def elbo(self) -> torch.Tensor:
        return self.log_px - self.kl.sum(-1)

    @property
    def log_weight(self) -> torch.Tensor:
        """log p(x, z) − log q(z | x) for the sampled z (the Jacobians of f_l cancel)."""
        return self.log_px + self.log_ratio.sum(-1)


class SeReVAE(nn.Module):
    def __init__(self, config: Optional[ModelConfig] = None) -> None:
        super().__init__()
        self.config = c = config or ModelConfig()
        L, n, depth = c.num_layers, c.latent_dim, c.hidden_layers
        resnet = c.variant == "resnet"
        if resnet:
            self.evidence = ResNetEvidence(c.tile_shape, L, c.evidence_features)
        else:
            self.evidence = GroupedMLP(c.image_pixels, c.evidence_hidden, c.evidence_features, groups=L, depth=depth)
        conditioned = c.variant in ("sere", "resnet")
        self.latent_encoders = nn.ModuleList()
        self.posteriors = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.bijectors = nn.ModuleList()
        self.norms = nn.ModuleList()
        for layer in range(L):
            first = layer == 0
            self.norms.append(nn.BatchNorm1d(n) if (c.batch_norm and not first) else nn.Identity())
            feeds_posterior = conditioned and not first
            self.latent_encoders.append(
                GroupedMLP(n, c.latent_hidden, c.latent_features, depth=depth) if feeds_posterior else nn.Identity())
            in_q = c.evidence_features + (c.latent_features if feeds_posterior else 0)
            self.posteriors.append(
                ResidualPosterior(c.latent_features, c.evidence_features, n, c.gaussian_hidden, depth)
                if resnet and feeds_posterior else GroupedMLP(in_q, c.gaussian_hidden, n, groups=2, depth=depth))
            if c.prior == "standard":
                self.priors.append(nn.Identity())
            elif first or not conditioned:
                self.priors.append(FreeGaussian(n))
            else:
                self.priors.append(GroupedMLP(n, c.gaussian_hidden, n, groups=2, depth=depth))
            self.bijectors.append(FreeAffine(n) if first else GroupedMLP(
                n, c.bijector_hidden, n, groups=3, depth=depth, activation=torch.tanh, out_activation=torch.tanh))
        self.decoder_norm = nn.BatchNorm1d(L * n) if c.batch_norm else nn.Identity()
        outputs = c.image_pixels * (1 + c.pixel_features if c.pixel_context else 1)
        self.decoder = (ResNetDecoder(c.tile_shape, L * n) if resnet
                        else GroupedMLP(L * n, c.decoder_hidden, outputs, depth=depth))
        self.pixel_context = (PixelContext(c.pixel_context, c.pixel_features, c.pixel_hidden, c.tile_shape)
                              if c.pixel_context else None)

    # -- pieces reused by training, evaluation and (later) coding --------------------------
    @property
    def evidence_device(self) -> torch.device:
        return next(self.evidence.parameters()).device

    def layer_prior(self, layer: int, z_in: Optional[torch.Tensor], batch: int):
        prior = self.priors[layer]
        if isinstance(prior, nn.Identity):
            zeros = torch.zeros(batch, self.config.latent_dim, device=self.evidence_device)
            return zeros, torch.ones_like(zeros)
        if isinstance(prior, FreeGaussian):
            return prior(batch)
        loc, raw = prior(z_in)
        return loc, variance_from_output(raw)

    def layer_bijector(self, layer: int, z_in: Optional[torch.Tensor], batch: int):
        bij = self.bijectors[layer]
        if isinstance(bij, FreeAffine):
            return bij(batch)
        shift, raw_diag, factor = bij(z_in)
        return shift, variance_from_output(raw_diag), factor

    def layer_posterior(self, layer: int, evidence: torch.Tensor, z_in: Optional[torch.Tensor]):
        enc, posterior = self.latent_encoders[layer], self.posteriors[layer]
        if not isinstance(posterior, GroupedMLP):       # the ResNet model's residual variational layer
            loc, raw = posterior(evidence, enc(z_in)[0])
            return loc, variance_from_output(raw)
        features = evidence if isinstance(enc, nn.Identity) else torch.cat([evidence, enc(z_in)[0]], dim=-1)
        loc, raw = posterior(features)
        return loc, variance_from_output(raw)

    def decode_logits(self, zs: list, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pixel logits given the latents; a pixel-regressive model also needs the image x
        (teacher forcing: each pixel sees its true causal neighbours)."""
        decoded = self.decoder(self.decoder_norm(torch.cat(zs, dim=-1)))[0]
        if self.pixel_context is None:
            return decoded
        if x is None:
            raise ValueError("a pixel-regressive decoder needs the image for its causal contexts")
        return self.pixel_context(decoded, x)

    # -- the stochastic pass ----------------------------------------------------------------
    def forward(self, x: torch.Tensor, num_samples: int = 1, generator: Optional[torch.Generator] = None) -> Trace:
        """One pass with ``num_samples`` posterior samples per image (rows image-major)."""
        x = x.to(self.decoder.first_weight.dtype)
        evidence = self.evidence(x)                                # (L, B, F), once per image
        if num_samples > 1:
            evidence = evidence.repeat_interleave(num_samples, dim=1)
            x = x.repeat_interleave(num_samples, dim=0)
        zs, kl, log_ratio = self.hierarchy(evidence, generator)
        logits = self.decode_logits(zs, x)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return Trace(log_px=log_px, kl=kl, log_ratio=log_ratio, z=zs)

    def hierarchy(self, evidence: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple:
        """The SeRe hierarchy, top-down, one posterior sample per row of ``evidence`` (L, B, F):
        (latents z_1..z_L, KL per layer (B, L), log p(ε_l | z_{l-1}) − log q(ε_l | z_{l-1}, x) (B, L)).
        Every model with this hierarchy (the VAEs here, the SeRe-MAF) runs this one loop."""
        batch = evidence.shape[1]
        zs, kls, ratios = [], [], []
        z_prev = None
        for layer in range(self.config.num_layers):
            z_in = self.norms[layer](z_prev) if z_prev is not None else None
            loc_q, var_q = self.layer_posterior(layer, evidence[layer], z_in)
            loc_p, var_p = self.layer_prior(layer, z_in, batch)
            noise = torch.randn(loc_q.shape, generator=generator, device=loc_q.device, dtype=loc_q.dtype)
            eps = loc_q + var_q.sqrt() * noise
            kls.append(kl_normal(loc_q, var_q, loc_p, var_p))
            ratios.append(log_normal(eps, loc_p, var_p) - log_normal(eps, loc_q, var_q))
            z_prev = self.bijector_forward(layer, eps, z_in)
            zs.append(z_prev)
        return zs, torch.stack(kls, -1), torch.stack(ratios, -1)

    def bijector_forward(self, layer: int, eps: torch.Tensor, z_in: Optional[torch.Tensor]) -> torch.Tensor:
        """z_l = f_l(ε_l; z_{l-1}): here the diagonal-plus-unit-rank affine map of the paper's MLP."""
        return affine_forward(eps, *self.layer_bijector(layer, z_in, eps.shape[0]))

    @torch.no_grad()
    def warm_start(self, state: dict) -> list:
        """Copy the shared parts of another model's weights (e.g. a factorized model into a
        pixel-regressive one): every tensor of the same name and shape, and the logit rows of a
        decoder output layer that gained feature planes. Returns the names left as initialized."""
        own = self.state_dict()
        pixels = self.config.image_pixels
        for name, value in state.items():
            if name in own and own[name].shape == value.shape:
                own[name].copy_(value)
            elif name in own and name.startswith("decoder.") and own[name].shape[:-1] == value.shape[:-1] \
                    and value.shape[-1] == pixels:
                own[name][..., :pixels].copy_(value)
                own[name][..., pixels:].zero_()
            else:
                continue
        return [name for name in own if name not in state]

    @torch.no_grad()
    def decay_parameters(self) -> tuple[list, list]:
        """(network kernels and biases that get the paper's l2 penalty, everything else)."""
        decay = [p for m in self.modules() if isinstance(m, GroupedMLP) for p in m.parameters()]
        chosen = {id(p) for p in decay}
        return decay, [p for p in self.parameters() if id(p) not in chosen]
