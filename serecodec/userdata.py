"""A user's training images, as tiles of Bernoulli probabilities for ``serecodec train``.

Accepts .npy arrays (N, H, W) or (H, W), directories of image files (searched recursively) and
IDX files. Values 0/1 are binary; grey levels (0..1 floats, or 0..255) are read as Bernoulli
probabilities and binarized afresh every epoch, as MNIST is. Images are cut into tiles of the
model's input size, padded with 0 at the edges, exactly as the coder cuts them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .data import DataError, read_idx
from .tiles import to_tiles
from .errors import InputError
from .images import IMAGE_SUFFIXES

IDX_MARKERS = ("idx3", "-ubyte")


def parse_tile(text: str) -> tuple:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--tile {text!r}: expected HxW, e.g. 28x28") from None
    if not (1 <= height <= 256 and 1 <= width <= 256):
        raise InputError(f"--tile {text!r}: sides must be 1..256")
    return height, width


def _grey(path: Path) -> np.ndarray:
    """One image file as float32 in [0, 1] (1 = white), colour averaged."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > (1 << 26):
                raise InputError(f"{path}: too large to train on ({img.width}x{img.height})")
            if img.mode == "1":
                return np.asarray(img, dtype=np.float32)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not an image file Pillow can read ({type(exc).__name__})") from None


def _npy(path: Path) -> list:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] == 0 or array.dtype.kind not in "biuf":
        raise InputError(f"{path}: expected numbers of shape (N, H, W), got {array.dtype} {array.shape}")
    scale = 255.0 if array.dtype.kind in "iu" and array.max() > 1 else 1.0
    return [np.asarray(a, dtype=np.float32) / scale for a in array]


def _idx(path: Path) -> list:
    try:
        array = read_idx(path)
    except (DataError, OSError) as exc:
        raise InputError(f"{path}: not a readable IDX file ({exc})") from None
    if array.ndim != 3:
        raise InputError(f"{path}: IDX images must be (N, H, W), got {array.shape}")
    return list(array.astype(np.float32) / 255.0)


def read_training_images(paths: list) -> list:
    """Grey-level images in [0, 1] (float32, (H, W)) from .npy, IDX, image files and directories."""
    out = []
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and
                           (p.suffix.lower() in IMAGE_SUFFIXES | {".npy"} or any(m in p.name for m in IDX_MARKERS)))
            if not files:
                raise InputError(f"{given}: directory holds no images")
        elif given.is_file():
            files = [given]
        else:
            raise InputError(f"{given}: no such file or directory")
        for path in files:
            name = path.name.lower()
            if name.endswith(".npy"):
                out += _npy(path)
            elif any(m in name for m in IDX_MARKERS):
                if "idx3" in name:
                    out += _idx(path)
            else:
                out.append(_grey(path))
    if not out:
        raise InputError("no training images found")
    return out


def to_tile_probabilities(images: list, tile: tuple) -> np.ndarray:
    """(T, th·tw) float32 probabilities: every image cut into tiles as the coder cuts them."""
    return to_tiles([np.asarray(image, np.float32) for image in images], tile)[0]


def split_valid(tiles: np.ndarray, fraction: float, seed: int) -> tuple:
    """(train, valid) by a seeded shuffle; at least one tile each."""
    if len(tiles) < 2:
        raise InputError(f"need at least 2 training tiles, got {len(tiles)}")
    order = np.random.default_rng(seed).permutation(len(tiles))
    count = min(len(tiles) - 1, max(1, int(round(fraction * len(tiles)))))
    return tiles[order[count:]], tiles[order[:count]]
