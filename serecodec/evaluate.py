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

from .bitsback import initial_word_count
from .codec import Codec
from .coding_model import CodingModel
from .errors import SerecodecError
from .export import export_coding_model
from .registry import resolve_coding_model
from .data import NUM_PIXELS
from .model import SeReVAE
from .progress import silent_bar

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
    result = elbo_figures(model, images)
    if iw_samples > 0:
        result.update(iw_figures(model, images, iw_samples, iw_limit, progress))
    return result


def elbo_figures(model: SeReVAE, images: np.ndarray) -> dict:
    """The cheap figures: the float model's −ELBO, reconstruction and KL (per layer) on every image."""
    model.eval()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32).reshape(len(images), -1))
    tic = time.time()
    elbo, recon, kl = elbo_per_image(model, x)
    return {
        "images": len(x),
        "neg_elbo_nats": -elbo.mean().item(),
        "neg_elbo_bpd": nats_to_bpd(-elbo.mean().item()),
        "recon_nats": -recon.mean().item(),
        "kl_nats": kl.sum(-1).mean().item(),
        "kl_per_layer_nats": kl.mean(0).tolist(),
        "elbo_seconds": time.time() - tic,
    }


def iw_figures(model: SeReVAE, images: np.ndarray, samples: int, limit: Optional[int] = None,
               progress: Optional[Callable[[int], None]] = None) -> dict:
    """The IW-``samples`` estimate of −log p(x) on the first ``limit`` images (all if None)."""
    model.eval()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32).reshape(len(images), -1))
    n_iw = len(x) if limit is None else min(limit, len(x))
    tic = time.time()
    log_px = iw_log_likelihood(model, x[:n_iw], samples=samples, progress=progress)
    elbo = elbo_per_image(model, x[:n_iw])[0]
    return {
        "iw_samples": samples,
        "iw_images": n_iw,
        "neg_iw_nats": -log_px.mean().item(),
        "neg_iw_bpd": nats_to_bpd(-log_px.mean().item()),
        "neg_elbo_nats_same_images": -elbo.mean().item(),
        "iw_seconds": time.time() - tic,
    }


def coding_bound(coding_model, images: np.ndarray, particles: int = 1, chunk: int = 200) -> dict:
    """The integer coding model's −ELBO and IW-K bound (nats/image), averaged over chunks so
    K × N decoder outputs never sit in memory at once."""
    totals: dict = {}
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        rate = coding_model.expected_rate(part, seed=start, particles=particles)
        for key in ("neg_elbo_nats", "iw_nats"):
            totals[key] = totals.get(key, 0.0) + rate[key] * len(part)
    return {key: value / len(images) for key, value in totals.items()}


def coded_rates(model_spec, model: SeReVAE, images: np.ndarray, particles: int = 1,
                progress: Callable = silent_bar) -> dict:
    """Run the real bits-back coder over 28x28 ``images`` and report its rates and speed.

    Coded as one chunk from initial words (no warm start), so the net rate (payload less those
    words) is the coder's rate at the bound it targets: the coding model's −ELBO, or IW-K with K
    particles. Not verified while encoding (the decode that follows checks every pixel), so the
    speeds are the coder's own.
    ``progress(total, desc)`` makes a context manager with ``update(n)`` (a progress bar)."""

    try:
        shipped = resolve_coding_model(model_spec)
    except SerecodecError:
        shipped = None
    settings = dict(warm_start=False, particles=particles, chunk_pixels=len(images) * images[0].size + 1)
    if shipped is not None and shipped.is_file():
        codec, origin = Codec(shipped, **settings), str(shipped)
    else:
        codec, origin = Codec(CodingModel(export_coding_model(model)), **settings), "exported on the fly (8 bucket bits)"
    n = len(images)
    squares = images.reshape(n, 28, 28)
    expected = coding_bound(codec.model, images, particles)
    tic = time.perf_counter()
    with progress(n, "encode") as bar:
        data = codec.compress(squares, progress=bar.update, method="bits-back", verify=False)
    encode_s = time.perf_counter() - tic
    tic = time.perf_counter()
    with progress(n, "decode") as bar:
        decoded = codec.decompress(data, progress=bar.update)
    decode_s = time.perf_counter() - tic
    archive = codec.read(data)
    net_nats = (archive.payload_bits - 32 * initial_word_count(codec.model, particles)) * LN2 / n
    total_nats = 8 * len(data) * LN2 / n
    return {
        "coding_model": origin, "coding_model_hash": codec.model.hash,
        "bucket_bits": codec.model.bucket_bits, "particles": particles,
        "neg_elbo_nats": expected["neg_elbo_nats"], "neg_elbo_bpd": nats_to_bpd(expected["neg_elbo_nats"]),
        "iw_nats": expected["iw_nats"], "iw_bpd": nats_to_bpd(expected["iw_nats"]),
        "net_nats": net_nats, "net_bpd": nats_to_bpd(net_nats),
        "total_nats": total_nats, "total_bpd": nats_to_bpd(total_nats), "archive_bytes": len(data),
        "net_over_bound": net_nats / expected["iw_nats"],
        "bit_exact": bool(np.array_equal(decoded, squares)),
        "encode_images_per_s": n / encode_s, "decode_images_per_s": n / decode_s,
    }
