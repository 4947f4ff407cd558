"""The input gate: every image that reaches a payload method passes through here first.

Whatever a caller hands in (a Pillow mode-"1" array, bools whose bytes are 0/255, big-endian
integers, floats, Fortran order, negative strides), what leaves is a C-contiguous uint8 array
holding only 0 and 1, or an ``InputError`` naming the problem. The compiled kernels index
tables with pixel values, so they must never see anything else; they still check the invariant
themselves (``require_bilevel``), so that a future caller that skips this gate gets an error,
not an out-of-bounds read.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from .container.archive import FORMATS, MAX_FILE_HEADER
from .container.limits import MAX_NAME_BYTES, check_image_shape
from .container.wire import name_bytes
from .errors import InputError

Images = Union[np.ndarray, Sequence[np.ndarray]]
_CHUNK = 1 << 22          # values checked at a time: no whole-array temporaries for big inputs


def as_images(images: Images, what: str = "images") -> Union[np.ndarray, list]:
    """Normalize input to an (N, H, W) uint8 array or a list of (H, W) uint8 arrays of 0/1.

    Accepts one (H, W) image, an (N, H, W) array or a list of 2-D arrays; pixels 0/1 of any
    integer, float or bool dtype (bools by truth, whatever their bytes), or 0/255 in 8-bit
    arrays (255 = 1, as the command line reads 8-bit files). Anything else is an InputError.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError(f"{what}: no images given")
        out = []
        for i, image in enumerate(images):
            image = _as_array(image, f"{what}[{i}]")
            if image.ndim != 2:
                raise InputError(f"{what}[{i}] must be a 2-D image, got shape {image.shape}")
            check_image_shape(*image.shape)
            out.append(bilevel(image, f"{what}[{i}]"))
        shapes = {image.shape for image in out}
        return np.stack(out) if len(shapes) == 1 else out
    array = _as_array(images, what)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(f"{what} must be one (H, W) image or an (N, H, W) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"{what}: no images given")
    check_image_shape(*array.shape[1:])
    return bilevel(array, what)


def _as_array(value, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:      # ragged nested lists and the like
        raise InputError(f"{what}: not an array of pixels ({exc})") from None
    return array


def bilevel(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as C-contiguous uint8 0/1, or InputError saying what is wrong with it."""
    binary = binary_or_none(array)
    if binary is None:
        if array.dtype.kind not in "biuf":
            raise InputError(f"{what}: pixels must be numbers, not {array.dtype}")
        raise InputError(f"{what}: pixels must be 0/1 (or 0/255 in 8-bit arrays); binarize grey images first")
    return binary


def binary_or_none(array: np.ndarray) -> Optional[np.ndarray]:
    """``array`` as C-contiguous uint8 0/1 if it holds only 0/1 (bools, or 0/255 in an 8-bit
    array), else None. Checked in chunks; C-contiguous uint8 0/1 input is returned as it is, so a
    100,000-image array costs no copy here."""
    kind = array.dtype.kind
    if kind == "b":
        # A bool's byte may be anything (Pillow's mode "1" and u8.view(bool) give 0/255): by truth.
        return np.ascontiguousarray(np.not_equal(array.view(np.uint8), 0)).view(np.uint8)
    if kind not in "iuf" or array.size == 0:
        return None
    flat = array.reshape(-1)

    def only(values) -> bool:
        if values == (0, 1) and kind == "u":             # a max is ~20x cheaper than isin
            return all(flat[i:i + _CHUNK].max() <= 1 for i in range(0, flat.size, _CHUNK))
        return all(np.isin(flat[i:i + _CHUNK], values).all() for i in range(0, flat.size, _CHUNK))
    if only((0, 1)):
        if array.dtype == np.uint8 and array.flags.c_contiguous:
            return array
        return np.ascontiguousarray(array, dtype=np.uint8)
    if array.dtype == np.uint8 and only((0, 255)):
        return np.ascontiguousarray(array != 0).view(np.uint8)
    return None


def require_bilevel(pixels: np.ndarray, what: str = "pixels") -> np.ndarray:
    """The invariant a compiled kernel relies on: C-contiguous uint8 holding only 0/1.

    Cheap (one pass, no copy when it holds); raises InputError otherwise, so no caller can make
    a kernel index its tables out of bounds."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or not pixels.flags.c_contiguous:
        raise InputError(f"{what}: a kernel needs a C-contiguous uint8 array (pass it through as_images)")
    if pixels.size and pixels.max() > 1:
        raise InputError(f"{what}: pixels must be 0/1 (pass them through as_images)")
    return pixels


def background_is_one(images) -> Optional[list]:
    """Per image, whether most of its pixels are 1 (a white page read as white = 1): such images
    are coded inverted, so every model sees ink = 1 on a background of 0. None when none is."""
    if isinstance(images, np.ndarray):
        n, height, width = images.shape
        ones = np.concatenate([images[i:i + 4096].reshape(-1, height * width).sum(1, dtype=np.int64)
                               for i in range(0, n, 4096)])
        flags = 2 * ones > height * width
    else:
        flags = np.array([2 * int(np.count_nonzero(image)) > image.size for image in images])
    return [bool(f) for f in flags] if flags.any() else None


def with_polarity(images, inverted: Optional[Sequence[bool]]):
    """``images`` with those flagged inverted as 1 - pixels (its own inverse)."""
    if inverted is None or not any(inverted):
        return images
    if isinstance(images, np.ndarray):
        out = images.copy()
        rows = np.flatnonzero(inverted)
        out[rows] ^= 1
        return out
    return [image ^ 1 if flip else image for image, flip in zip(images, inverted)]


def shapes_of(images) -> list:
    if isinstance(images, np.ndarray):
        return [tuple(images.shape[1:])] * len(images)
    return [tuple(image.shape) for image in images]


def check_names(names, count: int) -> Optional[list]:
    """One non-empty name per image, each storable as file-system bytes without NUL."""
    if names is None:
        return None
    names = list(names)
    if len(names) != count:
        raise InputError(f"{len(names)} names for {count} images: give one name per image")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InputError(f"names must be non-empty strings, got {name!r}")
        raw = name_bytes(name)
        if b"\0" in raw or len(raw) > MAX_NAME_BYTES:
            raise InputError(f"name {name!r} holds a NUL byte or is longer than {MAX_NAME_BYTES} bytes")
    return names


def check_pages(pages, count: int) -> Optional[list]:
    """[(first, end)] runs of at least two images, in order and apart: the pages of one file each."""
    if not pages:
        return None
    out, previous = [], 0
    for run in pages:
        try:
            first, end = (int(v) for v in run)
        except (TypeError, ValueError):
            raise InputError(f"pages must be (first, end) image ranges, got {run!r}") from None
        if first < previous or end - first < 2 or end > count:
            raise InputError(f"pages {run!r}: each multi-page file needs two or more images, in order, apart")
        out.append((first, end))
        previous = end
    return out


def check_formats(formats, count: int) -> Optional[list]:
    """One known format name (``archive.FORMATS``) per image."""
    if formats is None:
        return None
    formats = list(formats)
    if len(formats) != count or any(f not in FORMATS for f in formats):
        raise InputError(f"formats must be one of {', '.join(FORMATS)} per image")
    return formats


def check_arrays(arrays) -> Optional[list]:
    """[(dtype str, shape, value of a 1 (1 or 255))] of the source .npy arrays."""
    if arrays is None:
        return None
    out = []
    for dtype, shape, one in arrays:
        dtype = np.dtype(dtype)
        if dtype.kind not in "biuf" or len(shape) > 8 or any(int(d) < 0 for d in shape) or one not in (1, 255):
            raise InputError(f"arrays: {dtype} of shape {tuple(shape)} cannot be recorded")
        out.append((dtype.str, tuple(int(d) for d in shape), int(one)))
    return out


def check_headers(headers, count: int) -> Optional[list]:
    """One bytes object (the image file's own header, or b"") per image."""
    if headers is None or not any(headers):
        return None
    headers = [bytes(h) for h in headers]
    if len(headers) != count or any(len(h) > MAX_FILE_HEADER for h in headers):
        raise InputError(f"headers: give one (at most {MAX_FILE_HEADER} bytes) per image")
    return headers
