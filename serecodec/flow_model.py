"""The Self-Reflective Masked Autoregressive Flow (SeRe-MAF, paper §4.2, Fig. 5, appendix 9) and
the plain MAF it is measured against, for continuous (dequantized, logit-space) images.

SeRe-MAF = the SeRe hierarchy of ``model.SeReVAE`` (prior and posterior of ε_l conditioned on
z_{l-1}; the bijector f_l a chain of rational-quadratic spline couplings instead of the MLP's
affine map) with a flow likelihood p(y | z_1..z_L):

    base        N(loc, diag + u uᵀ) with γ = (loc, diag, u) refined layer by layer,
                γ^l = γ^{l-1} + r_l(h(γ^{l-1}), z_l), γ^0 learned constants
    flow        T flow steps g_t, each L conditional MADEs (layer l's MADE sees z_l through
                the mask offset of §9.2: the conditioning inputs reach every hidden unit),
                with batch normalization between MADEs (MAF paper, appendix B)

The MAF baseline has the same MADEs, unconditioned, and the base distribution γ^0.

MADEs and splines come from zuko: its masked MLP connects context inputs to every hidden unit
(the mask offset), its MAF transform evaluates a density in one pass, and its spline flows are
maintained; only the batch-norm bijector and the residual base distribution are written here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .gaussian import variance_from_output
from .layers import GroupedMLP
from .model import ModelConfig, SeReVAE, Trace, UNIT_VARIANCE_RAW


@dataclass
class FlowConfig:
    variational: bool = True       # SeRe-MAF; False: the MAF baseline (same MADEs, no latents)
    image_pixels: int = 784
    num_layers: int = 5            # L: latent layers, and MADEs per flow step
    latent_dim: int = 20
    flows: int = 2                 # T flow steps
    made_hidden: int = 256
    made_depth: int = 2
    evidence_hidden: int = 128
    evidence_features: int = 32
    latent_hidden: int = 128
    latent_features: int = 20
    gaussian_hidden: int = 128
    bijector_hidden: int = 60
    spline_bins: int = 8
    spline_couplings: int = 2
    base_features: int = 64        # h(γ^{l-1}), the base parameters' feature map
    base_hidden: int = 64
    dropout: float = 0.0           # in the residual blocks of the base distribution
    alpha: float = 1e-6            # logit transform, as the MAF paper for MNIST
    order_seed: int = 0            # the MADEs' random input orders

    def to_dict(self) -> dict:
        return {"kind": "flow", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "FlowConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def made_count(self) -> int:
        return self.flows * self.num_layers


def logit_transform(x: torch.Tensor, alpha: float) -> tuple:
    """y = logit(α + (1 − 2α) x) for dequantized x in [0, 1], and log|dy/dx| per image."""
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    log_det = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).sum(-1)
    return y, log_det


class BatchNormFlow(nn.Module):
    """The MAF paper's batch-norm bijector: batch statistics in training (running averages kept),
    the averages at evaluation; returns (u, log|det|) per row."""

    def __init__(self, dim: int, momentum: float = 0.05, eps: float = 1e-5) -> None:
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> tuple:
        if self.training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        u = (x - mean) / torch.sqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return u, log_det.expand(x.shape[0])


class FlowLikelihood(nn.Module):
    """log p(y | z_1..z_L) of the flow (or log p(y) unconditioned, the MAF baseline)."""

    def __init__(self, c: FlowConfig, conditioned: bool) -> None:
        super().__init__()
        from zuko.flows import MaskedAutoregressiveTransform    # (flows only: the codec never loads zuko)

        d, n = c.image_pixels, c.latent_dim
        self.conditioned, self.num_layers = conditioned, c.num_layers
        generator = torch.Generator().manual_seed(c.order_seed)
        self.mades = nn.ModuleList(
            MaskedAutoregressiveTransform(d, n if conditioned else 0, order=torch.randperm(d, generator=generator),
                                          hidden_features=[c.made_hidden] * c.made_depth)
            for _ in range(c.made_count))
        self.norms = nn.ModuleList(BatchNormFlow(d) for _ in range(c.made_count - 1))
        self.base_loc = nn.Parameter(torch.zeros(d))
        self.base_raw_diag = nn.Parameter(torch.full((d,), UNIT_VARIANCE_RAW))
        self.base_factor = nn.Parameter(torch.zeros(d))
        if conditioned:
            self.base_features = nn.ModuleList(nn.Linear(3 * d, c.base_features) for _ in range(c.num_layers))
            self.base_residuals = nn.ModuleList(GroupedMLP(c.base_features + n, c.base_hidden, 3 * d, depth=2)
                                                for _ in range(c.num_layers))
            with torch.no_grad():             # γ^l starts at γ^{l-1}: the residuals begin at zero
                for r in self.base_residuals:
                    r.weights[-1].zero_()
                    r.biases[-1].zero_()
            self.dropout = nn.Dropout(c.dropout)

    def base_parameters(self, zs: Optional[list], batch: int) -> tuple:
        """γ = (loc, raw diag, factor), each (B, D): γ^0 refined by each layer's residual block."""
        gamma = torch.cat([self.base_loc, self.base_raw_diag, self.base_factor]).expand(batch, -1)
        if self.conditioned:
            for feature, residual, z in zip(self.base_features, self.base_residuals, zs):
                h = self.dropout(F.relu(feature(gamma)))
                gamma = gamma + residual(torch.cat([h, z], dim=-1))[0]
        return gamma.chunk(3, dim=-1)

    def log_prob(self, y: torch.Tensor, zs: Optional[list] = None) -> torch.Tensor:
        batch = y.shape[0]
        u, log_det = y, torch.zeros(batch, dtype=y.dtype, device=y.device)
        for i, made in enumerate(self.mades):
            context = zs[i % self.num_layers] if self.conditioned else None   # flow step t, layer l
            u, ladj = made(context).call_and_ladj(u)
            log_det = log_det + ladj
            if i < len(self.norms):
                u, ladj = self.norms[i](u)
                log_det = log_det + ladj
        loc, raw_diag, factor = self.base_parameters(zs, batch)
        base = torch.distributions.LowRankMultivariateNormal(loc, factor.unsqueeze(-1), variance_from_output(raw_diag))
        return base.log_prob(u) + log_det


class SplineBijector(nn.Module):
    """f_l: a chain of rational-quadratic spline couplings of ε_l, conditioned on z_{l-1}
    (appendix 9's bijective layer). Only the map is needed: the KL is taken in ε space."""

    def __init__(self, dim: int, context: int, bins: int, couplings: int, hidden: int) -> None:
        super().__init__()
        from zuko.flows import NSF

        self.flow = NSF(dim, context, bins=bins, transforms=couplings, passes=2, hidden_features=[hidden, hidden],
                        activation=nn.Tanh)

    def forward(self, eps: torch.Tensor, z_in: Optional[torch.Tensor]) -> torch.Tensor:
        return self.flow.transform(z_in)(eps)


class SeReMAF(SeReVAE):
    """The SeRe hierarchy (``SeReVAE.hierarchy``) with spline bijectors and a flow likelihood."""

    def __init__(self, config: Optional[FlowConfig] = None) -> None:
        c = config or FlowConfig()
        super().__init__(ModelConfig(num_layers=c.num_layers, latent_dim=c.latent_dim, image_pixels=c.image_pixels,
                                     evidence_hidden=c.evidence_hidden, evidence_features=c.evidence_features,
                                     latent_hidden=c.latent_hidden, latent_features=c.latent_features,
                                     gaussian_hidden=c.gaussian_hidden, decoder_hidden=1))
        self.config, self.flow_config = c, c
        del self.decoder, self.decoder_norm, self.pixel_context     # the flow likelihood replaces them
        self.bijectors = nn.ModuleList(
            SplineBijector(c.latent_dim, 0 if layer == 0 else c.latent_dim, c.spline_bins, c.spline_couplings,
                           c.bijector_hidden) for layer in range(c.num_layers))
        self.likelihood = FlowLikelihood(c, conditioned=True)

    def bijector_forward(self, layer: int, eps: torch.Tensor, z_in: Optional[torch.Tensor]) -> torch.Tensor:
        return self.bijectors[layer](eps, z_in)

    def forward(self, x: torch.Tensor, num_samples: int = 1, generator: Optional[torch.Generator] = None) -> Trace:
        """x: dequantized images in [0, 1] (B, D); log_px of the trace is log p(y | z) in logit space."""
        y, _ = logit_transform(x, self.config.alpha)
        evidence = self.evidence(x)
        if num_samples > 1:
            evidence = evidence.repeat_interleave(num_samples, dim=1)
            y = y.repeat_interleave(num_samples, dim=0)
        zs, kl, log_ratio = self.hierarchy(evidence, generator)
        return Trace(log_px=self.likelihood.log_prob(y, zs), kl=kl, log_ratio=log_ratio, z=zs)

    def decay_parameters(self) -> tuple[list, list]:
        return list(self.parameters()), []


class MAF(nn.Module):
    """The baseline: the same MADEs and base distribution γ^0, no latents (KL terms are empty)."""

    def __init__(self, config: Optional[FlowConfig] = None) -> None:
        super().__init__()
        self.config = self.flow_config = config or FlowConfig(variational=False)
        self.likelihood = FlowLikelihood(self.config, conditioned=False)

    def forward(self, x: torch.Tensor, num_samples: int = 1, generator: Optional[torch.Generator] = None) -> Trace:
        y, _ = logit_transform(x, self.config.alpha)
        if num_samples > 1:
            y = y.repeat_interleave(num_samples, dim=0)
        log_py = self.likelihood.log_prob(y)
        empty = log_py.new_zeros(log_py.shape[0], 0)
        return Trace(log_px=log_py, kl=empty, log_ratio=empty)

    def decay_parameters(self) -> tuple[list, list]:
        return list(self.parameters()), []


def build_flow(config: FlowConfig) -> nn.Module:
    return SeReMAF(config) if config.variational else MAF(config)
