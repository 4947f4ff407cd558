"""Reading user images into 0/1 arrays and writing decoded ones, with errors that name the file.

Pixel convention (MNIST's): 1 = ink = white (255), 0 = black. Lossless coding needs pixels
that are already 0/1; grey or colour input is refused unless the user asks for a threshold,
which is lossy.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

SHAPE = (28, 28)
IMAGE_SUFFIXES = {".png", ".pbm", ".pgm", ".ppm", ".pnm", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jpg", ".jpeg"}


class InputError(RuntimeError):
    """Bad user input; the message names the file and the problem."""


def _to_binary(array: np.ndarray, path: Path, threshold: Optional[float]) -> np.ndarray:
    if threshold is not None:
        scale = 255.0 if array.max(initial=0) > 1 else 1.0
        return (array.astype(np.float64) / scale >= threshold).astype(np.uint8)
    values = np.unique(array)
    if set(values.tolist()) <= {0, 1}:
        return array.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (array == 255).astype(np.uint8)
    raise InputError(f"{path}: grey levels present ({len(values)} distinct values); lossless coding needs "
                     f"0/1 pixels (use --threshold T to binarize, which is lossy)")


def read_image(path: Path, threshold: Optional[float] = None) -> np.ndarray:
    """One image file as a (28, 28) uint8 array of 0/1."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "1":
                array = np.array(img, dtype=np.uint8)
            else:
                if mode in ("P", "PA"):
                    img = img.convert("RGBA")
                array = np.array(img)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file Pillow can read") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from None
    if array.ndim == 3:
        colour = array[..., :3]
        if array.shape[2] == 4 and (array[..., 3] != 255).any():
            raise InputError(f"{path}: has transparency; lossless coding needs opaque 0/1 pixels")
        if not ((colour == colour[..., :1]).all()):
            if threshold is None:
                raise InputError(f"{path}: colour image; lossless coding needs 0/1 pixels "
                                 f"(use --threshold T to binarize, which is lossy)")
            colour = colour.mean(-1)
            array = colour
        else:
            array = colour[..., 0]
    if array.shape != SHAPE:
        raise InputError(f"{path}: size {array.shape[1]}x{array.shape[0]}, this model codes 28x28 images")
    return _to_binary(array, path, threshold)


def read_npy(path: Path, threshold: Optional[float] = None) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    if array.ndim == 2 and array.shape[1] == SHAPE[0] * SHAPE[1]:
        array = array.reshape(len(array), *SHAPE)
    if array.ndim != 3 or array.shape[1:] != SHAPE:
        raise InputError(f"{path}: expected shape (N, 28, 28) or (N, 784), got {array.shape}")
    if len(array) == 0:
        raise InputError(f"{path}: contains no images")
    return _to_binary(array, path, threshold)


def collect_inputs(paths: list, threshold: Optional[float] = None) -> tuple[np.ndarray, list]:
    """Images and their names from files, directories (their image files) and .npy arrays."""
    if not paths:
        raise InputError("no input files given")
    images, names = [], []
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | {".npy"})
            if not files:
                raise InputError(f"{given}: directory holds no image files")
            entries = [(f, PurePosixPath(f.relative_to(given).as_posix())) for f in files]
        elif given.is_file():
            entries = [(given, PurePosixPath(given.name))]
        else:
            raise InputError(f"{given}: no such file or directory")
        for path, name in entries:
            if path.suffix.lower() == ".npy":
                block = read_npy(path, threshold)
                images.append(block)
                names += [str(name.with_name(f"{name.stem}_{i:05d}")) for i in range(len(block))]
            else:
                images.append(read_image(path, threshold)[None])
                names.append(str(name.with_suffix("")))
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"two inputs would both be restored as {name!r}; rename one")
        seen.add(name)
    return np.concatenate(images, axis=0), names


def safe_relative(name: str) -> PurePosixPath:
    """A stored name as a path that stays inside the output directory."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name:
        raise InputError(f"archive holds an unsafe file name {name!r}")
    return path


def png_bytes(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image.astype(bool)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
