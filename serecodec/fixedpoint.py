"""Exact fixed-point arithmetic shared by the encoder and the decoder.

Entropy coding breaks if the two sides compute one probability differently, and float
networks differ between batch sizes, thread counts, BLAS builds and devices. So the coding
path computes only with integers:

* matrix products on integer-valued float64 operands: every partial sum is an integer below
  2**53, hence exact in any summation order, on any BLAS or GPU (bounds checked at export);
* rescaling by powers of two with round-half-up, done on int64;
* nonlinearities and Gaussian quantities looked up in integer tables that the export step
  computes once and ships inside the coding model.

The matrix engine is pluggable (``numpy`` or ``torch``) to show the result does not depend on it.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

ACT_BITS = 12                       # activations are int / 2**12
ACT_LIMIT = 1 << (ACT_BITS + 10)    # |activation| ≤ 1024.0, keeps every GEMM sum below 2**53
EXACT_LIMIT = float(1 << 53)
EXACT_LIMIT_32 = float(1 << 24)     # float32 sums of integers are exact below this


def round_shift(values: np.ndarray, shift: int) -> np.ndarray:
    """round(values / 2**shift), halves rounded up, exact on int64."""
    if shift <= 0:
        return values << (-shift)
    return (values + (1 << (shift - 1))) >> shift


def clamp_act(values: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(values, -ACT_LIMIT), ACT_LIMIT)     # (np.clip's overhead is 5x on small arrays)


class NumpyEngine:
    name = "numpy"

    @staticmethod
    def matmul(x: np.ndarray, w: np.ndarray, w32: np.ndarray | None = None) -> np.ndarray:
        """Integer-valued float product, exact because the export step bounds every sum: float32
        (with ``w32``) when the caller converted ``x`` to float32, which it does where this input's
        largest |x| times the largest column sum of |w| stays below 2**24 (``IntLinear.operand``;
        twice as fast: the 0/1 image into the evidence encoders), else float64. The choice may
        differ between encoder and decoder: both give the same exact integers."""
        return np.matmul(x, w32 if x.dtype == np.float32 else w).astype(np.int64)


class TorchEngine:
    """The same products through torch (MKL/oneDNN on CPU, cuBLAS on a GPU)."""

    name = "torch"

    def __init__(self, device: str = "cpu") -> None:
        import torch       # (the torch engine only; the numpy engine never loads it)

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"engine torch:{device}: CUDA is not available on this machine (use numpy or torch)")
        self.torch, self.device, self._cache = torch, device, {}

    def matmul(self, x: np.ndarray, w: np.ndarray, w32=None) -> np.ndarray:
        """Always float64 (a float32 ``x`` converts exactly): float32 products on a GPU may
        silently use TF32, which is not exact."""
        torch = self.torch
        key = id(w)
        if key not in self._cache:
            self._cache[key] = (w, torch.from_numpy(w).to(self.device))
        tw = self._cache[key][1]
        out = torch.matmul(torch.from_numpy(x.astype(np.float64)).to(self.device), tw)
        return out.cpu().numpy().astype(np.int64)


def get_engine(name: str = "numpy"):
    if name == "numpy":
        return NumpyEngine()
    if name.startswith("torch"):
        device = name.split(":", 1)[1] if ":" in name else "cpu"
        return TorchEngine(device)
    raise InputError(f"unknown compute engine {name!r} (numpy, torch, torch:cuda)")


class Table:
    """f(v) for integer v in [lo, hi] sampled every 2**step_bits, linearly interpolated in integers.

    ``values`` are the integers the export step computed once; lookups never call f.
    """

    def __init__(self, values: np.ndarray, lo: int, step_bits: int) -> None:
        self.values = np.ascontiguousarray(values, dtype=np.int64)
        self.lo, self.step_bits = int(lo), int(step_bits)
        self.hi = self.lo + ((len(self.values) - 1) << self.step_bits)
        # the rise to the next sample (0 after the last, where the fraction is always 0)
        self.slopes = np.append(np.diff(self.values), np.int64(0))

    @classmethod
    def build(cls, func, lo: int, hi: int, step_bits: int, in_bits: int, out_bits: int) -> "Table":
        """Tabulate func(x) for x = v / 2**in_bits, v = lo, lo + 2**step_bits, ..., hi."""
        grid = np.arange(lo, hi + 1, 1 << step_bits, dtype=np.float64) / float(1 << in_bits)
        return cls(np.round(func(grid) * float(1 << out_bits)).astype(np.int64), lo, step_bits)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        v = np.subtract(v, self.lo, dtype=np.int64)             # a new array: the steps below work in place
        np.minimum(np.maximum(v, 0, out=v), self.hi - self.lo, out=v)
        if self.step_bits == 0:
            return self.values[v]
        index = v >> self.step_bits
        v &= (1 << self.step_bits) - 1                          # the fraction of a step
        v *= self.slopes[index]
        v += 1 << (self.step_bits - 1)                          # round half up, as round_shift
        v >>= self.step_bits
        v += self.values[index]
        return v

    def state(self) -> dict:
        return {"values": self.values, "lo": np.int64(self.lo), "step_bits": np.int64(self.step_bits)}

    @classmethod
    def from_state(cls, state: dict) -> "Table":
        return cls(state["values"], int(state["lo"]), int(state["step_bits"]))
