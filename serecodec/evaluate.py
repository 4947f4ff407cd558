"""Test-set evaluation: ELBO, importance-weighted log-likelihood, KL per layer.

The IW-k estimate is log (1/k) Σ_i p(x, z_i) / q(z_i | x) with z_i ~ q; it needs the sampled
log-densities (the analytic KL cannot go inside the log-mean-exp). The evidence encoders run
once per image; the k samples are pushed through the rest of the hierarchy in chunks of
``rows`` so memory stays bounded whatever k is.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import numpy as np
import torch

from .data import NUM_PIXELS
from .model import SeReVAE

LN2 = math.log(2.0)


def nats_to_bpd(nats: float, pixels: int = NUM_PIXELS) -> float:
    """Bits per dimension of a negative log-likelihood given in nats per image."""
    return nats / (pixels * LN2)


@torch.no_grad()
def elbo_per_image(model: SeReVAE, images: torch.Tensor, batch_size: int = 1000, seed: int = 0):
    """(ELBO, log p(x|z), KL per layer) for each image, one posterior sample each."""
    gen = torch.Generator(device=images.device).manual_seed(seed)
    elbos, recons, kls = [], [], []
    for start in range(0, len(images), batch_size):
        trace = model(images[start:start + batch_size], generator=gen)
        elbos.append(trace.elbo)
        recons.append(trace.log_px)
        kls.append(trace.kl)
    return torch.cat(elbos), torch.cat(recons), torch.cat(kls)


@torch.no_grad()
def iw_log_likelihood(model: SeReVAE, images: torch.Tensor, samples: int = 1000, rows: int = 4000,
                      seed: int = 0, progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) per image with ``samples`` samples."""
    gen = torch.Generator(device=images.device).manual_seed(seed)
    per_chunk = max(1, rows // samples)          # images per chunk
    piece = min(samples, rows)                   # samples per forward pass
    out = []
    for start in range(0, len(images), per_chunk):
        block = images[start:start + per_chunk]
        weights = []
        for done in range(0, samples, piece):
            k = min(piece, samples - done)
            weights.append(model(block, num_samples=k, generator=gen).log_weight.view(len(block), k))
        log_w = torch.cat(weights, dim=1)
        out.append(torch.logsumexp(log_w, dim=1) - math.log(samples))
        if progress:
            progress(len(block))
    return torch.cat(out)


def evaluate(model: SeReVAE, images: np.ndarray, iw_samples: int = 1000, iw_limit: Optional[int] = None,
             progress: Optional[Callable[[int], None]] = None) -> dict:
    """All the numbers of ``serecodec bpd`` for binary ``images`` of shape (N, 784), as a dict.

    The ELBO uses every image; the IW estimate uses the first ``iw_limit`` (all if None), since
    1000 samples per image cost 1000 forward passes of the hierarchy.
    """
    model.eval()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32).reshape(len(images), -1))
    tic = time.time()
    elbo, recon, kl = elbo_per_image(model, x)
    result = {
        "images": len(x),
        "neg_elbo_nats": -elbo.mean().item(),
        "neg_elbo_bpd": nats_to_bpd(-elbo.mean().item()),
        "recon_nats": -recon.mean().item(),
        "kl_nats": kl.sum(-1).mean().item(),
        "kl_per_layer_nats": kl.mean(0).tolist(),
        "elbo_seconds": time.time() - tic,
    }
    if iw_samples > 0:
        n_iw = len(x) if iw_limit is None else min(iw_limit, len(x))
        tic = time.time()
        log_px = iw_log_likelihood(model, x[:n_iw], samples=iw_samples, progress=progress)
        result.update({
            "iw_samples": iw_samples,
            "iw_images": n_iw,
            "neg_iw_nats": -log_px.mean().item(),
            "neg_iw_bpd": nats_to_bpd(-log_px.mean().item()),
            "neg_elbo_nats_same_images": -elbo[:n_iw].mean().item(),
            "iw_seconds": time.time() - tic,
        })
    return result
