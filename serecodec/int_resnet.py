"""Integer twins of the ResNet model's parts (``resnet``), numpy only, exact like ``IntMLP``.

A convolution is an integer GEMM on unfolded patches (im2col): each output is a sum of
integer products bounded below 2**53 at export, so float64 (or float32, when the bound allows)
products are exact on any BLAS, engine and thread count, and a row never depends on the other
images of its batch. A transposed convolution is the same GEMM on the zero-dilated input with
the flipped kernel. Batch norm is an integer per-channel affine map. The patches are built a
few images at a time so memory stays bounded whatever the batch. A stride-2 transposed
convolution is computed as four small convolutions, one per output phase (which of the 3x3 taps
meet an input pixel depends only on the output's row and column parity): the same integer
products as a convolution of the zero-dilated input, without the three quarters that are zero.
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import clamp_act, round_shift
from .int_layers import IntLinear

PATCH_BUDGET = 1 << 22        # patch values unfolded at once (32 MB of int64)


class IntConv:
    """A (grouped) 2-D convolution; ``linear``: IntLinear with weight (G, Cg·kh·kw, out_g)."""

    def __init__(self, linear, kernel, stride: int = 1, padding=1) -> None:
        self.linear, self.stride = linear, stride
        self.kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        self.padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)   # top, bottom, left, right
        self.groups = linear.weight.shape[0]

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        top, bottom, left, right = self.padding
        x = np.pad(self.linear.operand(x), ((0, 0), (0, 0), (top, bottom), (left, right)))
        b, c, h, w = x.shape
        (kh, kw), s, g = self.kernel, self.stride, self.groups
        out_h, out_w = (h - kh) // s + 1, (w - kw) // s + 1
        chunk = max(1, PATCH_BUDGET // (out_h * out_w * c * kh * kw))
        outputs = []
        for start in range(0, b, chunk):
            part = x[start:start + chunk]
            n = len(part)
            windows = np.lib.stride_tricks.sliding_window_view(part, (kh, kw), axis=(2, 3))[:, :, ::s, ::s]
            # (n, c, oh, ow, kh, kw) -> (g, n, oh, ow, c/g, kh, kw): one copy makes the patch rows
            patches = windows.reshape(n, g, c // g, out_h, out_w, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
            result = self.linear(patches.reshape(g, n * out_h * out_w, -1), engine)     # (G, n·oh·ow, out_g)
            outputs.append(result.reshape(g, n, out_h, out_w, -1).transpose(1, 0, 4, 2, 3).reshape(n, -1, out_h, out_w))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=0)


class IntConvTranspose2:
    """ConvTranspose2d(3x3, stride 2, padding 1, output_padding 1) from the weight of its equivalent
    forward convolution (kernel flipped, (1, C·9, out)); output phase (a, b) meets the taps
    rows {1} (a = 0) or {0, 2} (a = 1), columns likewise, at input pixels (i, j) and (i + 1, j + 1)."""

    TAPS = ((1,), (0, 2))

    def __init__(self, linear) -> None:
        weight = linear.weight.reshape(1, -1, 3, 3, linear.weight.shape[-1])
        self.phases = {}
        for a in (0, 1):
            for b in (0, 1):
                rows, cols = self.TAPS[a], self.TAPS[b]
                part = weight[:, :, rows][:, :, :, cols].reshape(1, -1, weight.shape[-1])
                phase = IntLinear(np.ascontiguousarray(part), linear.bias, linear.shift)
                self.phases[a, b] = IntConv(phase, (len(rows), len(cols)), padding=(0, len(rows) - 1, 0, len(cols) - 1))

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        b, _, h, w = x.shape
        out = None
        for (a, c), conv in self.phases.items():
            y = conv(x, engine)
            if out is None:
                out = np.empty((b, y.shape[1], 2 * h, 2 * w), y.dtype)
            out[:, :, a::2, c::2] = y
        return out


class IntAffine:
    """Per-channel x·a + c (a frozen batch norm): a at 2**bits, c at 2**(ACT_BITS + bits)."""

    def __init__(self, scale: np.ndarray, offset: np.ndarray, bits: int) -> None:
        self.scale, self.offset, self.bits = scale.astype(np.int64), offset.astype(np.int64), int(bits)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return clamp_act(round_shift(x * self.scale.reshape(shape) + self.offset.reshape(shape), self.bits))


class IntDownBlock:
    def __init__(self, conv_a: IntConv, conv_b: IntConv, shortcut: IntConv) -> None:
        self.conv_a, self.conv_b, self.shortcut = conv_a, conv_b, shortcut

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        inner = self.conv_b(np.maximum(self.conv_a(x, engine), 0), engine)
        return np.maximum(clamp_act(inner + self.shortcut(x, engine)), 0)


class IntUpBlock:
    def __init__(self, conv_a: IntConv, conv_b: IntConv, shortcut: IntConv) -> None:
        self.conv_a, self.conv_b, self.shortcut = conv_a, conv_b, shortcut

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        inner = self.conv_b(np.maximum(self.conv_a(x, engine), 0), engine)
        doubled = x.repeat(2, axis=2).repeat(2, axis=3)
        return np.maximum(clamp_act(inner + self.shortcut(doubled, engine)), 0)


class IntResNetEvidence:
    """(L, B, F) evidence features of binary images (B, pixels)."""

    def __init__(self, block1: IntDownBlock, norm: IntAffine, block2: IntDownBlock, fc, tile: tuple,
                 layers: int) -> None:
        self.block1, self.norm, self.block2, self.fc, self.tile, self.layers = block1, norm, block2, fc, tile, layers

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        batch = len(x)
        image = np.broadcast_to(np.asarray(x, np.int64).reshape(batch, 1, *self.tile),
                                (batch, self.layers, *self.tile))
        h = self.block2(self.norm(self.block1(image, engine)), engine)
        return self.fc(h.reshape(batch, self.layers, -1).transpose(1, 0, 2), engine)


class IntResNetDecoder:
    """Logits (1, B, pixels) at 2**ACT_BITS from concat(ẑ) (B, L·n)."""

    def __init__(self, fc, block1: IntUpBlock, norm: IntAffine, block2: IntUpBlock, out: IntConv,
                 start: tuple) -> None:
        self.fc, self.block1, self.norm, self.block2, self.out, self.start = fc, block1, norm, block2, out, start

    def __call__(self, z: np.ndarray, engine) -> np.ndarray:
        batch = len(z)
        h = np.maximum(self.fc(z, engine), 0).reshape(batch, *self.start)
        h = self.block2(self.norm(self.block1(h, engine)), engine)
        return self.out(h, engine).reshape(1, batch, -1)


class IntResidualPosterior:
    """(loc, raw) = φ1(e) + r([D, h(e)]), the integer twin of ``resnet.ResidualPosterior``."""

    def __init__(self, first, hidden_map, residual) -> None:
        self.first, self.hidden_map, self.residual = first, hidden_map, residual

    def __call__(self, evidence: np.ndarray, latent: np.ndarray, engine) -> np.ndarray:
        rectified = self.residual(np.concatenate([evidence, self.hidden_map(latent, engine)[0]], axis=-1), engine)
        return clamp_act(self.first(latent, engine) + rectified)



def _linear(arrays: dict, name: str):
    return IntLinear(arrays[f"{name}/w"].astype(np.float64), arrays[f"{name}/b"], int(arrays[f"{name}/shift"]))


def _affine(arrays: dict, name: str) -> IntAffine:
    return IntAffine(arrays[f"{name}/scale"], arrays[f"{name}/offset"], int(arrays[f"{name}/bits"]))


def _down(arrays: dict, name: str) -> IntDownBlock:
    return IntDownBlock(IntConv(_linear(arrays, f"{name}/conv_a"), 3, stride=2, padding=1),
                        IntConv(_linear(arrays, f"{name}/conv_b"), 3, padding=1),
                        IntConv(_linear(arrays, f"{name}/shortcut"), 1, stride=2, padding=0))


def _up(arrays: dict, name: str) -> IntUpBlock:
    return IntUpBlock(IntConvTranspose2(_linear(arrays, f"{name}/conv_a")),
                      IntConv(_linear(arrays, f"{name}/conv_b"), 3, padding=1),
                      IntConv(_linear(arrays, f"{name}/shortcut"), 1, padding=0))


def evidence_from_arrays(arrays: dict, tile: tuple, layers: int) -> IntResNetEvidence:
    e = "resnet/evidence"
    return IntResNetEvidence(_down(arrays, f"{e}/block1"), _affine(arrays, f"{e}/norm"), _down(arrays, f"{e}/block2"),
                             _linear(arrays, f"{e}/fc"), tile, layers)


def decoder_from_arrays(arrays: dict, tile: tuple) -> IntResNetDecoder:
    d = "resnet/decoder"
    fc = _linear(arrays, f"{d}/fc")
    start = (fc.weight.shape[-1] // ((tile[0] // 4) * (tile[1] // 4)), tile[0] // 4, tile[1] // 4)
    return IntResNetDecoder(fc, _up(arrays, f"{d}/block1"), _affine(arrays, f"{d}/norm"), _up(arrays, f"{d}/block2"),
                            IntConv(_linear(arrays, f"{d}/out"), 3, padding=1), start)
