"""The integer layers of the coding model: a linear layer at a power-of-two scale, exact on any
BLAS (``fixedpoint`` engines), and the grouped MLP built from them (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .fixedpoint import ACT_LIMIT, EXACT_LIMIT_32, Table, clamp_act, round_shift


@dataclass
class IntLinear:
    weight: np.ndarray       # integer-valued float64, (in, out) or (G, in, out)
    bias: np.ndarray         # int64 at scale 2**(in_bits + weight_bits)
    shift: int               # in_bits + weight_bits − ACT_BITS

    def __post_init__(self) -> None:
        self.column_bound = float(np.abs(self.weight).sum(axis=-2).max())
        self.weight32 = self.weight.astype(np.float32) if self.column_bound < EXACT_LIMIT_32 else None
        # round_shift's half step folded into the bias, so the product is finished in place
        self.rounded_bias = self.bias + (1 << (self.shift - 1)) if self.shift > 0 else None

    def operand(self, x: np.ndarray) -> np.ndarray:
        """``x`` (integers) as the float operand the product will use: float32 where this input's
        largest |x| times the largest column sum of |w| stays below 2**24, else float64 (both
        exact). A convolution converts its input once, before unfolding it into patches that
        repeat every value kh·kw times (same bound: the patches hold the input's values and 0);
        an operand already converted passes through."""
        if x.dtype.kind == "f":
            return x
        if self.weight32 is not None and self.column_bound * float(np.abs(x).max(initial=0)) < EXACT_LIMIT_32:
            return x.astype(np.float32)
        return x.astype(np.float64)

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        product = engine.matmul(self.operand(x), self.weight, self.weight32)   # a fresh int64 array
        if self.rounded_bias is None:
            return clamp_act(round_shift(product + self.bias, self.shift))
        product += self.rounded_bias
        product >>= self.shift                  # = round_shift(product + bias, shift)
        return np.minimum(np.maximum(product, -ACT_LIMIT, out=product), ACT_LIMIT, out=product)


class IntMLP:
    """Integer twin of ``GroupedMLP``: output (G, batch, out) at scale 2**ACT_BITS."""

    def __init__(self, layers: list, groups: int, hidden: int, tanh: Optional[Table]) -> None:
        self.layers, self.groups, self.hidden, self.tanh = layers, groups, hidden, tanh

    def _act(self, h: np.ndarray) -> np.ndarray:
        return self.tanh(h) if self.tanh is not None else np.maximum(h, 0, out=h)   # h: a layer's fresh output

    def __call__(self, x: np.ndarray, engine) -> np.ndarray:
        h = self._act(self.layers[0](x, engine))
        h = h.reshape(len(x), self.groups, self.hidden).transpose(1, 0, 2)
        for i, layer in enumerate(self.layers[1:], start=1):
            h = layer(h, engine)
            if i < len(self.layers) - 1 or self.tanh is not None:   # tanh nets have tanh outputs
                h = self._act(h)
        return h
