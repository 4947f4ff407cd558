"""Grey-level images for the flow models: 8-bit levels, dequantized as the MAF paper does
(x = (k + u) / 256, u ~ U[0, 1)), from MNIST's pickle (stored as k / 256), IDX directories
(Fashion-MNIST) and CIFAR-10's python batches (read with an unpickler that builds nothing but
numpy arrays, so a hostile batch file cannot run code)."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Optional

import numpy as np

from .data import DataError, load_mnist

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"


def grey_levels(data_dir: Optional[str] = None) -> tuple:
    """(train, valid, test) uint8 (N, 784) grey levels of MNIST (the pickle) or of an IDX
    directory (e.g. Debian's Fashion-MNIST), the same splits the VAEs use."""
    mnist = load_mnist(data_dir)
    idx = data_dir is not None and Path(data_dir).expanduser().is_dir() and \
        any(Path(data_dir).expanduser().glob("train-images*"))
    scale = 255.0 if idx else 256.0          # load_mnist gives IDX bytes / 255, the pickle's k / 256
    return tuple(np.round(split * scale).astype(np.uint8) for split in (mnist.train, mnist.valid, mnist.test))


def dequantize(levels, generator=None):
    """Uniform dequantization of uint8 levels (torch tensor) into [0, 1)."""
    import torch
    levels = torch.as_tensor(levels).float()
    return (levels + torch.rand(levels.shape, generator=generator)) / 256.0


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, strings, numbers and numpy arrays; refuses anything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            import importlib
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def read_cifar_batch(path: Path) -> np.ndarray:
    """(N, 3072) uint8 images of one CIFAR-10 python batch file (channel-major rows, as shipped)."""
    try:
        blob = _ArraysOnly(io.BytesIO(Path(path).read_bytes()), encoding="bytes").load()
        data = np.asarray(blob[b"data"] if b"data" in blob else blob["data"])
    except Exception as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected uint8 rows of 3072 values, found {data.dtype} {data.shape}")
    return data


def load_cifar(directory: str) -> tuple:
    """(train, test) uint8 (N, 3072) from a directory of the standard python batches; the train
    batches present are concatenated (at least one, and test_batch, are needed)."""
    directory = Path(directory).expanduser()
    train = [read_cifar_batch(directory / name) for name in CIFAR_TRAIN if (directory / name).is_file()]
    if not train or not (directory / CIFAR_TEST).is_file():
        raise DataError(f"{directory}: no CIFAR-10 python batches (data_batch_1..5 and test_batch)")
    return np.concatenate(train), read_cifar_batch(directory / CIFAR_TEST)
