"""Export: freeze a trained float SeRe-VAE into the arrays of an integer coding model.

Kept apart from ``coding_model`` so that decoding needs numpy only; this module needs torch.
Batch norm is folded into the next linear layer, weights are rounded to integers with a
per-layer power-of-two scale (every partial sum checked below 2**53 here, once), and every
nonlinearity becomes an integer table.
"""
from __future__ import annotations

import json
from typing import Optional

import numpy as np
import torch
from scipy.special import expit, ndtr, ndtri

from .coding_model import CDF_BITS, CODING_FORMAT, PIXEL_BITS, SIGMA_BITS, IntLinear, IntMLP, _table
from .fixedpoint import ACT_BITS, ACT_LIMIT, EXACT_LIMIT, Table
from .gaussian import variance_from_output
from .layers import GroupedMLP
from .model import FreeAffine, FreeGaussian, SeReVAE

ACT_RANGE = float(1 << (ACT_BITS + 10))     # |activation| bound every exported layer is checked against

MAX_WEIGHT_BITS = 24
WEIGHT_PEAK_BITS = 14  # the largest weight of a layer maps to < 2**15 (int16 storage)


def _softplus_elu(x: np.ndarray) -> np.ndarray:
    return variance_from_output(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def _quantize_linear(weight: np.ndarray, bias: np.ndarray, in_bits: int, in_limit: float) -> IntLinear:
    peak = float(np.abs(weight).max()) or 1.0
    weight_bits = min(MAX_WEIGHT_BITS, WEIGHT_PEAK_BITS - int(np.ceil(np.log2(peak))))
    w_int = np.round(weight * 2.0 ** weight_bits)
    b_int = np.round(bias * 2.0 ** (in_bits + weight_bits)).astype(np.int64)
    bound = np.abs(w_int).sum(axis=-2).max() * in_limit + np.abs(b_int).max()
    if not bound < EXACT_LIMIT:
        raise ValueError(f"integer layer could overflow exact float64 sums ({bound:.3g})")
    return IntLinear(w_int, b_int, in_bits + weight_bits - ACT_BITS)



def export_mlp(mlp: GroupedMLP, in_bits: int, tanh: Optional[Table],
           norm: Optional[torch.nn.Module] = None) -> IntMLP:
    w = mlp.first_weight.detach().double().numpy()
    b = mlp.first_bias.detach().double().numpy()
    if isinstance(norm, torch.nn.BatchNorm1d):          # fold x·a + c into the first layer
        a = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach().double().numpy()
        c = norm.bias.detach().double().numpy() - norm.running_mean.detach().double().numpy() * a
        w, b = a[:, None] * w, b + c @ w
    in_limit = 1.0 if in_bits == 0 else float(1 << (ACT_BITS + 10))
    layers = [_quantize_linear(w, b, in_bits, in_limit)]
    for weight, bias in zip(mlp.weights, mlp.biases):
        layers.append(_quantize_linear(weight.detach().double().numpy(), bias.detach().double().numpy(),
                                       ACT_BITS, float(1 << (ACT_BITS + 10))))
    return IntMLP(layers, mlp.groups, mlp.hidden, tanh)


def _tables(bucket_bits: int) -> dict:
    one = 1 << ACT_BITS
    tables = {
        "tanh": Table.build(np.tanh, -8 * one, 8 * one, 2, ACT_BITS, ACT_BITS),
        # the whole activation range: trained priors reach σ² of several hundred (raw ≈ σ² there)
        "sigma": Table.build(lambda r: np.sqrt(_softplus_elu(r)), -8 * one, ACT_LIMIT, 6, ACT_BITS, SIGMA_BITS),
        "inv_sigma": Table.build(lambda r: 1 / np.sqrt(_softplus_elu(r)), -8 * one, ACT_LIMIT, 6, ACT_BITS, SIGMA_BITS),
        "diag": Table.build(_softplus_elu, -one, one, 0, ACT_BITS, ACT_BITS),
        # direct lookup (no interpolation) at 2**-12: Φ is 0 or 1 at 2**-30 precision beyond ±6.2
        "phi": Table.build(ndtr, -7 * one, 7 * one, 0, ACT_BITS, CDF_BITS),
        "sigmoid": Table.build(lambda v: np.clip(expit(v), 2.0 ** -PIXEL_BITS, 1 - 2.0 ** -PIXEL_BITS),
                               -24 * one, 24 * one, 4, ACT_BITS, PIXEL_BITS),
    }
    return {f"table/{name}/{k}": v for name, t in tables.items() for k, v in t.state().items()}


def export_coding_model(model: SeReVAE, bucket_bits: int = 8, source: str = "") -> dict:
    """Freeze a trained float model into the arrays of an integer coding model."""
    model = model.eval()
    cfg = model.config
    arrays = _tables(bucket_bits)
    tanh, sigma = _table(arrays, "tanh"), _table(arrays, "sigma")
    K = 1 << bucket_bits
    arrays["quantile"] = np.round(ndtri(np.arange(1, K) / K) * (1 << ACT_BITS)).astype(np.int64)
    arrays["representative"] = np.round(ndtri((np.arange(K) + 0.5) / K) * (1 << ACT_BITS)).astype(np.int64)
    nets: dict = {}

    def add(name: str, mlp: GroupedMLP, in_bits: int, use_tanh: bool = False, norm=None) -> None:
        net = export_mlp(mlp, in_bits, tanh if use_tanh else None, norm)
        nets[name] = {"depth": len(net.layers), "groups": net.groups, "hidden": net.hidden, "tanh": use_tanh}
        for i, layer in enumerate(net.layers):
            storage = np.int16 if np.abs(layer.weight).max() < 2 ** 15 else np.int32
            arrays[f"net/{name}/{i}/w"] = layer.weight.astype(storage)
            arrays[f"net/{name}/{i}/b"] = layer.bias
            arrays[f"net/{name}/{i}/shift"] = np.int64(layer.shift)

    def to_fixed(t: torch.Tensor, bits: int = ACT_BITS) -> np.ndarray:
        return np.round(t.detach().double().numpy() * (1 << bits)).astype(np.int64)

    if isinstance(model.evidence, GroupedMLP):
        add("evidence", model.evidence, in_bits=0)
    for layer in range(cfg.num_layers):
        norm = model.norms[layer]
        if isinstance(model.latent_encoders[layer], GroupedMLP):
            add(f"latent{layer}", model.latent_encoders[layer], ACT_BITS, norm=norm)
        posterior = model.posteriors[layer]
        if isinstance(posterior, GroupedMLP):
            add(f"posterior{layer}", posterior, ACT_BITS)
        else:                       # the ResNet model's residual variational layer
            add(f"posterior{layer}_first", posterior.first, ACT_BITS)
            add(f"posterior{layer}_hidden", posterior.hidden_map, ACT_BITS)
            add(f"posterior{layer}_residual", posterior.residual, ACT_BITS)
        prior = model.priors[layer]
        if isinstance(prior, GroupedMLP):
            add(f"prior{layer}", prior, ACT_BITS, norm=norm)
        else:
            loc = to_fixed(prior.loc) if isinstance(prior, FreeGaussian) else np.zeros(cfg.latent_dim, np.int64)
            raw = to_fixed(prior.raw_var) if isinstance(prior, FreeGaussian) else np.full(
                cfg.latent_dim, round(float(np.log(np.e - 1)) * (1 << ACT_BITS)), np.int64)
            arrays[f"const/prior{layer}_loc"], arrays[f"const/prior{layer}_sigma"] = loc, sigma(raw)
        bij = model.bijectors[layer]
        if isinstance(bij, FreeAffine):
            arrays["const/bijector0_shift"] = to_fixed(bij.shift)
            arrays["const/bijector0_diag"] = to_fixed(variance_from_output(bij.raw_diag))
            arrays["const/bijector0_factor"] = to_fixed(bij.factor)
        else:
            add(f"bijector{layer}", bij, ACT_BITS, use_tanh=True, norm=norm)
    if cfg.variant == "resnet":
        _export_resnet(model, arrays)
    else:
        add("decoder", model.decoder, ACT_BITS, norm=model.decoder_norm)
    meta = {"format": CODING_FORMAT, "num_layers": cfg.num_layers, "latent_dim": cfg.latent_dim,
            "image_pixels": cfg.image_pixels, "tile_shape": list(cfg.tile_shape), "bucket_bits": bucket_bits, "variant": cfg.variant,
            "nets": nets, "source": source}
    if model.pixel_context is not None:
        meta["pixel_context"] = _export_pixel_context(model.pixel_context, arrays)
    arrays["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    return arrays


def _export_pixel_context(pixel, arrays: dict) -> dict:
    """g of the pixel-regressive likelihood as two integer layers (``int_pixel`` reads them):
    the hidden layer over [a_i, h_i(z), context bits], the bits entering at activation scale."""
    weight = torch.cat([pixel.logit_weight[None], pixel.feature_weight, pixel.context_weight]).detach().double().numpy()
    hidden = _quantize_linear(weight, pixel.hidden_bias.detach().double().numpy(), ACT_BITS, ACT_RANGE)
    out = _quantize_linear(pixel.out_weight.detach().double().numpy()[:, None],
                           pixel.out_bias.detach().double().numpy().reshape(1), ACT_BITS, ACT_RANGE)
    _store_linear(arrays, "pixel/hidden", hidden)
    _store_linear(arrays, "pixel/out", out)
    return {"template": [list(offset) for offset in pixel.template], "features": pixel.features,
            "hidden": int(weight.shape[1])}


# -- the ResNet model's convolutional parts (``int_resnet`` reads them back) ----------------------
def _store_linear(arrays: dict, name: str, layer: IntLinear) -> None:
    storage = np.int16 if np.abs(layer.weight).max() < 2 ** 15 else np.int32
    arrays[f"{name}/w"] = layer.weight.astype(storage)
    arrays[f"{name}/b"] = layer.bias
    arrays[f"{name}/shift"] = np.int64(layer.shift)


def _conv_matrix(conv: torch.nn.Module, groups: int) -> tuple:
    """(weight (G, Cg·k·k, out_g), bias (G, 1, out_g)) of a convolution, or of the forward
    convolution equivalent to a transposed one (kernel flipped, in and out swapped)."""
    w = conv.weight.detach().double().numpy()
    if isinstance(conv, torch.nn.ConvTranspose2d):
        w = np.flip(w, (2, 3)).transpose(1, 0, 2, 3)
    out = w.shape[0]
    w = w.reshape(groups, out // groups, -1).transpose(0, 2, 1)
    return np.ascontiguousarray(w), conv.bias.detach().double().numpy().reshape(groups, 1, out // groups)


def _export_block(arrays: dict, name: str, block, groups: int, in_bits: int) -> None:
    in_limit = 1.0 if in_bits == 0 else ACT_RANGE
    for part in ("conv_a", "shortcut"):
        _store_linear(arrays, f"{name}/{part}", _quantize_linear(*_conv_matrix(getattr(block, part), groups),
                                                                    in_bits, in_limit))
    _store_linear(arrays, f"{name}/conv_b", _quantize_linear(*_conv_matrix(block.conv_b, groups), ACT_BITS, ACT_RANGE))


def _export_norm(arrays: dict, name: str, norm: torch.nn.Module) -> None:
    a = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach().double().numpy()
    c = norm.bias.detach().double().numpy() - norm.running_mean.detach().double().numpy() * a
    bits = WEIGHT_PEAK_BITS - int(np.ceil(np.log2(float(np.abs(a).max()) or 1.0)))
    arrays[f"{name}/scale"] = np.round(a * 2.0 ** bits).astype(np.int64)
    arrays[f"{name}/offset"] = np.round(c * 2.0 ** (ACT_BITS + bits)).astype(np.int64)
    arrays[f"{name}/bits"] = np.int64(bits)


def _export_resnet(model: SeReVAE, arrays: dict) -> None:
    layers = model.config.num_layers
    evidence, decoder = model.evidence, model.decoder
    _export_block(arrays, "resnet/evidence/block1", evidence.block1, layers, in_bits=0)
    _export_norm(arrays, "resnet/evidence/norm", evidence.norm)
    _export_block(arrays, "resnet/evidence/block2", evidence.block2, layers, in_bits=ACT_BITS)
    _store_linear(arrays, "resnet/evidence/fc", _quantize_linear(
        evidence.fc_weight.detach().double().numpy(), evidence.fc_bias.detach().double().numpy(), ACT_BITS, ACT_RANGE))
    w = decoder.fc.weight.detach().double().numpy().T
    b = decoder.fc.bias.detach().double().numpy()
    norm = model.decoder_norm
    if isinstance(norm, torch.nn.BatchNorm1d):          # fold x·a + c into the first layer
        a = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).detach().double().numpy()
        c = norm.bias.detach().double().numpy() - norm.running_mean.detach().double().numpy() * a
        w, b = a[:, None] * w, b + c @ w
    _store_linear(arrays, "resnet/decoder/fc", _quantize_linear(w, b, ACT_BITS, ACT_RANGE))
    _export_block(arrays, "resnet/decoder/block1", decoder.block1, 1, ACT_BITS)
    _export_norm(arrays, "resnet/decoder/norm", decoder.norm)
    _export_block(arrays, "resnet/decoder/block2", decoder.block2, 1, ACT_BITS)
    _store_linear(arrays, "resnet/decoder/out", _quantize_linear(*_conv_matrix(decoder.out, 1), ACT_BITS, ACT_RANGE))
