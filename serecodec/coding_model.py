"""The frozen, integer-exact coding model exported from a trained float SeRe-VAE (numpy only:
decoding never imports torch).

The float model is for training. For coding, ``export.export_coding_model`` freezes it: batch norm
folded into the next linear layer, weights rounded to integers with a per-layer power-of-two
scale, and every nonlinearity and Gaussian quantity replaced by an integer table (see
``fixedpoint``). Every probability handed to the coder and every ẑ the networks see is then
a function of integers only, identical on every machine.

Latents are discretized into K = 2**bucket_bits buckets of equal mass under each conditional
prior, so in bucket space the prior is exactly Uniform(K). A bucket's posterior mass is the
difference of the posterior CDF at the bucket's edges; the networks see the bucket's
representative value (its prior quantile at (i + ½)/K).

The file (``.npz``) carries a content hash that archives name, so an archive is never decoded
with a different model.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import SerecodecError
from .fileio import atomic_write_bytes
from .fixedpoint import ACT_BITS, Table, clamp_act, get_engine, round_shift
from .int_layers import IntLinear, IntMLP
from .int_pixel import IntPixelContext
from .int_resnet import IntResidualPosterior, decoder_from_arrays, evidence_from_arrays

CODING_FORMAT = "serecodec-coding-model-1"
SIGMA_BITS = 16        # σ and 1/σ are int / 2**16
CDF_BITS = 30          # posterior CDF values are int / 2**30
PIXEL_BITS = 24        # pixel probabilities are int / 2**24


class CodingModelError(SerecodecError):
    """A coding-model file that cannot be used; the message names the file."""


def _table(arrays: dict, name: str) -> Table:
    prefix = f"table/{name}/"
    return Table.from_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})


# ---------------------------------------------------------------------------------------------
# the coding model
# ---------------------------------------------------------------------------------------------
class CodingModel:
    """Integer-exact prior, posterior, bijectors and decoder of a SeRe-VAE, with bucket tables."""

    def __init__(self, arrays: dict, engine: str = "numpy") -> None:
        self.arrays = arrays
        self.meta = json.loads(bytes(arrays["meta_json"]).decode())
        self.hash = content_hash(arrays)
        self.engine = get_engine(engine)
        m = self.meta
        self.num_layers, self.latent_dim, self.pixels = m["num_layers"], m["latent_dim"], m["image_pixels"]
        self.bucket_bits = m["bucket_bits"]
        self.buckets = 1 << self.bucket_bits
        self.tables = {name: _table(arrays, name) for name in ("tanh", "sigma", "inv_sigma", "diag", "phi", "sigmoid")}
        self.quantile = arrays["quantile"]          # Φ⁻¹(i/K), i = 1..K−1, at 2**ACT_BITS
        self.representative = arrays["representative"]   # Φ⁻¹((i+½)/K), i = 0..K−1
        self.nets = {name: self._load_mlp(name) for name in self.meta["nets"]}
        if m.get("variant") == "resnet":
            self.evidence_net = evidence_from_arrays(arrays, self.tile_shape, self.num_layers)
            self.decoder_net = decoder_from_arrays(arrays, self.tile_shape)
            self.residual_posteriors = {
                layer: IntResidualPosterior(*(self.nets[f"posterior{layer}_{part}"]
                                              for part in ("first", "hidden", "residual")))
                for layer in range(self.num_layers) if f"posterior{layer}_first" in self.nets}
        else:
            self.evidence_net, self.decoder_net, self.residual_posteriors = self.nets["evidence"], self.nets["decoder"], {}
        self.constants = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("const/")}
        self.pixel_net = self._load_pixel_context() if m.get("pixel_context") else None

    @property
    def regressive(self) -> bool:
        """True for a pixel-regressive likelihood: pixels are coded in raster order, each given
        its causal neighbours, so the decoder pops them one raster position at a time."""
        return self.pixel_net is not None

    def _load_pixel_context(self) -> IntPixelContext:
        spec = self.meta["pixel_context"]
        layers = [IntLinear(self.arrays[f"pixel/{part}/w"].astype(np.float64), self.arrays[f"pixel/{part}/b"],
                            int(self.arrays[f"pixel/{part}/shift"])) for part in ("hidden", "out")]
        return IntPixelContext(spec["template"], spec["features"], *layers, self.tile_shape)

    @property
    def tile_shape(self) -> tuple:
        """The (height, width) of the images the model codes: larger images are cut into such tiles."""
        shape = self.meta.get("tile_shape")
        if shape is None:
            side = int(round(self.pixels ** 0.5))
            shape = (side, side) if side * side == self.pixels else (1, self.pixels)
        return int(shape[0]), int(shape[1])

    def check(self) -> None:
        """Run one blank tile through every network: a damaged file fails here, not mid-archive."""
        height, width = self.tile_shape
        if height * width != self.pixels or not 1 <= self.bucket_bits <= 16 or self.num_layers < 1:
            raise CodingModelError("inconsistent sizes")
        x = np.zeros((1, self.pixels), np.int64)
        evidence, z, zs = self.evidence(x), None, []
        for layer in range(self.num_layers):
            p_loc, p_sigma = self.prior(layer, z, 1)
            masses = self.bucket_masses(p_loc, p_sigma, *self.posterior(layer, evidence[layer], z))
            if masses.shape != (1, self.latent_dim, self.buckets) or (masses < 0).any():
                raise CodingModelError("bucket masses have the wrong shape")
            z = self.transform(layer, self.bucket_value(p_loc, p_sigma, masses.argmax(-1)), z)
            zs.append(z)
        if self.pixel_probabilities(zs, x).shape != (1, self.pixels):
            raise CodingModelError("decoder output has the wrong size")

    def _load_mlp(self, name: str) -> IntMLP:
        spec = self.meta["nets"][name]
        layers = [IntLinear(self.arrays[f"net/{name}/{i}/w"].astype(np.float64), self.arrays[f"net/{name}/{i}/b"],
                            int(self.arrays[f"net/{name}/{i}/shift"])) for i in range(spec["depth"])]
        return IntMLP(layers, spec["groups"], spec["hidden"], self.tables["tanh"] if spec["tanh"] else None)

    def with_engine(self, engine: str) -> "CodingModel":
        return CodingModel(self.arrays, engine)

    # -- pieces of the hierarchy, all integer in and integer out --------------------------------
    def evidence(self, x: np.ndarray) -> np.ndarray:
        """(L, B, F) evidence features of binary images x (B, pixels)."""
        return self.evidence_net(np.asarray(x, dtype=np.int64), self.engine)

    def prior(self, layer: int, z_prev: Optional[np.ndarray], batch: int):
        """(loc at 2**ACT_BITS, σ at 2**SIGMA_BITS), each (B, n)."""
        name = f"prior{layer}"
        if name in self.nets:
            loc, raw = self.nets[name](z_prev, self.engine)
            return loc, self.tables["sigma"](raw)
        loc, sigma = self.constants[f"prior{layer}_loc"], self.constants[f"prior{layer}_sigma"]
        return np.broadcast_to(loc, (batch, self.latent_dim)), np.broadcast_to(sigma, (batch, self.latent_dim))

    def posterior(self, layer: int, evidence: np.ndarray, z_prev: Optional[np.ndarray]):
        """(loc at 2**ACT_BITS, 1/σ at 2**SIGMA_BITS), each (B, n)."""
        name = f"latent{layer}"
        if layer in self.residual_posteriors:
            latent = self.nets[name](z_prev, self.engine)[0]
            loc, raw = self.residual_posteriors[layer](evidence, latent, self.engine)
            return loc, self.tables["inv_sigma"](raw)
        features = evidence if name not in self.nets else np.concatenate(
            [evidence, self.nets[name](z_prev, self.engine)[0]], axis=-1)
        loc, raw = self.nets[f"posterior{layer}"](features, self.engine)
        return loc, self.tables["inv_sigma"](raw)

    def transform(self, layer: int, eps: np.ndarray, z_prev: Optional[np.ndarray]) -> np.ndarray:
        """ẑ_l = b + (diag(d) + u uᵀ) ε̂_l in fixed point."""
        name = f"bijector{layer}"
        if name in self.nets:
            shift, raw_diag, factor = self.nets[name](z_prev, self.engine)
            diag = self.tables["diag"](raw_diag)
        else:
            shift, diag, factor = (self.constants[f"bijector0_{k}"] for k in ("shift", "diag", "factor"))
        dot = round_shift((factor * eps).sum(-1, keepdims=True), ACT_BITS)
        return clamp_act(shift + round_shift(diag * eps, ACT_BITS) + round_shift(factor * dot, ACT_BITS))

    def bucket_masses(self, prior_loc, prior_sigma, post_loc, post_inv_sigma) -> np.ndarray:
        """(B, n, K) integer posterior masses of the K equal-prior-mass buckets (sum 2**CDF_BITS).

        Bucket edge i is μ_p + σ_p Φ⁻¹(i/K); its posterior CDF is Φ(t) with t = round((edge − μ_q)
        / σ_q) at 2**ACT_BITS. The product by 1/σ_q is distributed over the per-latent terms
        (exact integers well inside int64: |μ| < 2**22, σ < 2**21, 1/σ < 2**17, |Φ⁻¹| < 2**14),
        so a bucket costs one product, one sum and one shift: this is a hot loop of coding."""
        offset = ((prior_loc - post_loc) << SIGMA_BITS) * post_inv_sigma + (1 << (2 * SIGMA_BITS - 1))
        slope = prior_sigma * post_inv_sigma
        t = (offset[..., None] + slope[..., None] * self.quantile) >> (2 * SIGMA_BITS)
        cdf = self.tables["phi"](t)
        masses = np.empty(cdf.shape[:-1] + (cdf.shape[-1] + 1,), np.int64)
        masses[..., 0] = cdf[..., 0]
        np.subtract(cdf[..., 1:], cdf[..., :-1], out=masses[..., 1:-1])
        np.subtract(1 << CDF_BITS, cdf[..., -1], out=masses[..., -1])
        return masses

    def bucket_value(self, prior_loc, prior_sigma, index: np.ndarray) -> np.ndarray:
        """ε̂ = μ_p + σ_p Φ⁻¹((i + ½)/K) at 2**ACT_BITS."""
        return clamp_act(prior_loc + round_shift(prior_sigma * self.representative[index], SIGMA_BITS))

    def decoder_output(self, zs: list) -> np.ndarray:
        """The decoder network's output (B, pixels) of logits, or (B, pixels·(1+F)) of logits and
        features for a pixel-regressive likelihood."""
        return self.decoder_net(np.concatenate(zs, axis=-1), self.engine)[0]

    def pixel_probabilities(self, zs: list, x: Optional[np.ndarray] = None) -> np.ndarray:
        """P(pixel = 1) as int / 2**PIXEL_BITS, in [1, 2**PIXEL_BITS − 1], shape (B, pixels); a
        pixel-regressive likelihood needs the images x (B, pixels) for the causal contexts."""
        decoded = self.decoder_output(zs)
        if self.pixel_net is None:
            return self.tables["sigmoid"](decoded)
        if x is None:
            raise ValueError("a pixel-regressive likelihood needs the images for their contexts")
        return self.tables["sigmoid"](self.pixel_net.teacher_logits(decoded, x))

    def decode_pixels(self, zs: list, pop, mask: Optional[np.ndarray] = None) -> np.ndarray:
        """(B, pixels) uint8 images popped in raster order under the pixel-regressive likelihood:
        ``pop(p1)`` returns the bits of a set of images at one raster position given their P(1) (floats)."""
        return self.pixel_net.raster_decode(self.decoder_output(zs), self.tables["sigmoid"], float(1 << PIXEL_BITS),
                                            pop, mask)

    # -- expected code length without running the coder ----------------------------------------
    def expected_rate(self, images: np.ndarray, seed: int = 0, particles: int = 1) -> dict:
        """One-sample estimate of the bits-back code length (nats/image) with the discrete posterior.

        Rate = −log p(x | ẑ) + Σ_l [log B + log q(bucket_l)] with buckets drawn from q: what the
        coder pays on average, up to the ANS overhead. This is the coding model's −ELBO; with K
        particles, −log of the mean importance weight (the IW-K bound, what BB-IS pays).
        """
        rng = np.random.default_rng(seed)
        x = np.repeat(np.asarray(images, dtype=np.int64).reshape(len(images), -1), particles, axis=0)
        evidence = self.evidence(x)
        zs, z_prev, kl = [], None, np.zeros(len(x))
        for layer in range(self.num_layers):
            p_loc, p_sigma = self.prior(layer, z_prev, len(x))
            q_loc, q_inv = self.posterior(layer, evidence[layer], z_prev)
            masses = self.bucket_masses(p_loc, p_sigma, q_loc, q_inv).astype(np.float64)
            probs = np.maximum(masses, 0.5) / np.maximum(masses, 0.5).sum(-1, keepdims=True)
            cum = probs.cumsum(-1)
            index = (rng.random(cum.shape[:-1] + (1,)) > cum).sum(-1).clip(0, self.buckets - 1)
            chosen = np.take_along_axis(probs, index[..., None], -1)[..., 0]
            kl += (np.log(chosen) + self.bucket_bits * np.log(2.0)).sum(-1)
            z_prev = self.transform(layer, self.bucket_value(p_loc, p_sigma, index), z_prev)
            zs.append(z_prev)
        p1 = self.pixel_probabilities(zs, x) / float(1 << PIXEL_BITS)
        recon = -np.where(x == 1, np.log(p1), np.log1p(-p1)).sum(-1)
        rate = (recon + kl).reshape(-1, particles)
        low = rate.min(-1)
        iw = low - np.log(np.exp(low[:, None] - rate).mean(-1))     # −log mean exp(−rate)
        return {"neg_elbo_nats": float(rate.mean()), "recon_nats": float(recon.mean()),
                "kl_nats": float(kl.mean()), "iw_nats": float(iw.mean()), "particles": particles}


# ---------------------------------------------------------------------------------------------
# export, hashing, files
# ---------------------------------------------------------------------------------------------
def content_hash(arrays: dict) -> str:
    """sha256 over names, dtypes, shapes and bytes of every array, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_coding_model(arrays: dict, path: Path) -> str:
    """Write atomically; returns the content hash."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return content_hash(arrays)


def load_coding_model(path: Path, engine: str = "numpy") -> CodingModel:
    path = Path(path)
    if not path.is_file():
        raise CodingModelError(f"{path}: no such coding model file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(bytes(arrays["meta_json"]).decode())
    except Exception as exc:
        raise CodingModelError(f"{path}: not a readable coding model ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != CODING_FORMAT:
        raise CodingModelError(f"{path}: unknown coding model format")
    try:
        model = CodingModel(arrays, engine)
        model.check()
    except CodingModelError:
        raise
    except Exception as exc:   # a crafted file can break any field; none of that is a crash
        raise CodingModelError(f"{path}: damaged coding model ({type(exc).__name__})") from None
    return model
