"""Reading user images into 0/1 arrays and writing decoded ones back in kind, with errors that
name the file.

Pixel convention (MNIST's): 1 = ink = white (255) for grey files, 0 = black; a 1-bit file's
set bits are 1. Lossless coding needs pixels that are already bilevel; grey or colour input is
refused unless the user asks for a threshold, which is lossy. Every failure of a reader, for
any bytes, is an ``InputError`` naming the file; sizes are checked before pixels are allocated.
"""
from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
from PIL import Image

from .container.limits import MAX_IMAGE_PIXELS, check_image_shape
from .errors import ArchiveError, InputError, LimitError
from .inputs import binary_or_none

IMAGE_SUFFIXES = {".png", ".pbm", ".pgm", ".ppm", ".pnm", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Pillow format name -> the archive's format name (what the image is written back as)
MAX_PAGES = 10_000             # pages read from one multi-page file
_PIL_FORMATS = {"PNG": "png", "BMP": "bmp", "GIF": "gif", "WEBP": "webp", "TIFF": "tiff"}
SUFFIX_OF_FORMAT = {"png": ".png", "pbm": ".pbm", "pgm": ".pgm", "ppm": ".ppm", "tiff": ".tif", "tiff-g4": ".tif", "tiff-g3": ".tif",
                    "bmp": ".bmp", "gif": ".gif", "webp": ".webp", "npy": ".png"}


def _to_binary(array: np.ndarray, path, threshold: Optional[float]) -> np.ndarray:
    if threshold is not None:
        scale = 255.0 if array.max(initial=0) > 1 else 1.0
        return (array.astype(np.float64) / scale >= threshold).astype(np.uint8)
    binary = binary_or_none(array)
    if binary is not None:
        return binary
    distinct = len(np.unique(array.ravel()[:1 << 20]))
    raise InputError(f"{path}: grey levels present ({distinct}{'+' if array.size > 1 << 20 else ''} distinct "
                     f"values); lossless coding needs 0/1 pixels (use --threshold T to binarize, which is lossy)")


def _format_of(img: Image.Image, raw: bytes) -> str:
    if img.format == "PPM":
        return {b"P1": "pbm", b"P4": "pbm", b"P2": "pgm", b"P5": "pgm"}.get(raw[:2], "ppm")
    if img.format == "TIFF" and img.info.get("compression") in ("group4", "group3"):
        return "tiff-g4" if img.info["compression"] == "group4" else "tiff-g3"
    return _PIL_FORMATS.get(img.format, "png")


def read_image(path, threshold: Optional[float] = None, data: Optional[bytes] = None) -> tuple:
    """One image file (or its bytes) as ((H, W) uint8 array of 0/1, format name)."""
    return read_image_file(path, threshold, data)[:2]


def read_image_file(path, threshold: Optional[float] = None, data: Optional[bytes] = None) -> tuple:
    """One single-page image file (or its bytes) as ((H, W) uint8 array of 0/1, format name, the
    file's own header bytes when ``encode_image`` can write the file back byte for byte from them)."""
    frames = read_image_frames(path, threshold, data)
    if len(frames) > 1:
        raise InputError(f"{path}: has {len(frames)} pages; read it with read_image_frames")
    return frames[0]


def read_image_frames(path, threshold: Optional[float] = None, data: Optional[bytes] = None) -> list:
    """Every page of an image file (a multi-page TIFF, an animated GIF; one for other files) as
    ``read_image_file``'s triples, page by page."""
    try:
        raw = data if data is not None else Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    frames = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as img:
                count = getattr(img, "n_frames", 1)
                if count > MAX_PAGES:
                    raise LimitError(f"{path}: {count} pages, above the limit of {MAX_PAGES:,} per file")
                for page in range(count):
                    img.seek(page)
                    width, height = img.size
                    if width * height > MAX_IMAGE_PIXELS:
                        raise LimitError(f"{path}: {width}x{height} pixels, above the limit of "
                                         f"{MAX_IMAGE_PIXELS:,} per image")
                    fmt = _format_of(img, raw)
                    img.load()
                    frames.append((_pixels(img, path, threshold), fmt))
    except (InputError, LimitError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LimitError(f"{path}: too many pixels for one image (limit {MAX_IMAGE_PIXELS:,})") from None
    except MemoryError:
        raise LimitError(f"{path}: not enough memory to read this image") from None
    except Exception as exc:   # Pillow raises many kinds (SyntaxError, ValueError, OSError...) for bad files
        raise InputError(f"{path}: not an image file Pillow can read ({type(exc).__name__})") from None
    out = []
    for array, fmt in frames:
        check_image_shape(*array.shape)
        pixels = _to_binary(array, path, threshold)
        header = pnm_header(raw, pixels.shape) if fmt in ("pbm", "pgm") and threshold is None else b""
        if header and encode_image(pixels, fmt, header) != raw:
            header = b""                    # padding bits, a plain (ASCII) body, trailing bytes: pixels only
        out.append((pixels, fmt, header))
    return out


def encode_pages(images: list, formats: list) -> bytes:
    """One multi-page file (TIFF or GIF, in the first page's kind) of ``images``."""
    fmt = formats[0]
    pictures = [Image.fromarray(np.asarray(image, np.uint8).astype(bool)) for image in images]
    buffer = io.BytesIO()
    if fmt == "gif":
        pictures = [p.convert("L") for p in pictures]
        pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], optimize=False)
    else:
        options = {"tiff-g4": {"compression": "group4"}, "tiff-g3": {"compression": "group3"}}.get(fmt, {})
        pictures[0].save(buffer, format="TIFF", save_all=True, append_images=pictures[1:], **options)
    return buffer.getvalue()


def pnm_header(raw: bytes, shape: tuple) -> bytes:
    """The header of a binary PBM (P4) or PGM (P5) file, comments and whitespace as written, up to
    and including the one whitespace byte before the pixels; b"" for anything else."""
    if raw[:2] not in (b"P4", b"P5"):
        return b""
    fields, pos = [], 2
    while len(fields) < (2 if raw[:2] == b"P4" else 3):
        while pos < len(raw) and raw[pos:pos + 1] in b" \t\r\n#":
            if raw[pos:pos + 1] == b"#":
                end = raw.find(b"\n", pos)
                pos = len(raw) if end < 0 else end
            pos += 1
        start = pos
        while pos < len(raw) and raw[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            return b""
        fields.append(int(raw[start:pos]))
    if tuple(fields[:2]) != (shape[1], shape[0]) or pos >= len(raw) or raw[pos:pos + 1] not in b" \t\r\n":
        return b""
    return raw[:pos + 1]


def _pixels(img: Image.Image, path, threshold) -> np.ndarray:
    """The image's visible pixels as a 2-D array: refuse transparency and colour unless thresholding."""
    mode = img.mode
    if mode == "1":
        return np.array(img, dtype=np.uint8)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    elif mode == "CMYK":
        img = img.convert("RGB")
    elif mode == "LA":
        img = img.convert("RGBA")
    elif mode.startswith("I") or mode == "F":
        array = np.array(img)
        if threshold is None and not np.isin(array, (0, 1, 255)).all():
            raise InputError(f"{path}: {mode} image with grey levels; lossless coding needs 0/1 pixels")
        return np.where(array > 1, 255, array).astype(np.uint8) if threshold is None else array
    array = np.array(img)
    if array.ndim == 3:
        colour = array[..., :3] if array.shape[2] >= 3 else array[..., :1]
        if array.shape[2] in (2, 4) and (array[..., -1] != 255).any():
            raise InputError(f"{path}: has transparency; lossless coding needs opaque 0/1 pixels")
        if not (colour == colour[..., :1]).all():
            if threshold is None:
                raise InputError(f"{path}: colour image; lossless coding needs 0/1 pixels "
                                 f"(use --threshold T to binarize, which is lossy)")
            return colour.mean(-1)
        return colour[..., 0]
    return array


def read_npy(path, threshold: Optional[float] = None, data: Optional[bytes] = None) -> np.ndarray:
    """An .npy of shape (N, H, W), (H, W) or (N, 784), checked before its data is read."""
    return read_npy_source(path, threshold, data)[0]


def read_npy_source(path, threshold: Optional[float] = None, data: Optional[bytes] = None) -> tuple:
    """(images (N, H, W) of 0/1, (dtype str, shape, value of a 1) of the array as stored)."""
    try:
        handle = io.BytesIO(data) if data is not None else open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(handle, max_header_size=10000)
        except Exception as exc:
            raise InputError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise InputError(f"{path}: .npy holds {dtype}, not numbers")
        stored_shape = tuple(shape)
        if len(shape) == 2 and shape[1] == 784:
            shape = (shape[0], 28, 28)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise InputError(f"{path}: expected shape (N, H, W), (H, W) or (N, 784), got {shape}")
        if shape[0] == 0:
            raise InputError(f"{path}: contains no images")
        check_image_shape(shape[1], shape[2])
        total = int(np.prod(shape, dtype=object))
        if total > (1 << 31):
            raise LimitError(f"{path}: {total:,} pixels, above the limit of {1 << 31:,}")
        body = handle.read(total * dtype.itemsize + 1)
    if len(body) != total * dtype.itemsize:
        raise InputError(f"{path}: truncated .npy ({len(body)} of {total * dtype.itemsize} data bytes)")
    array = np.frombuffer(body, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    pixels = _to_binary(array, path, threshold)
    one = 255 if threshold is None and dtype == np.uint8 and array.max(initial=0) == 255 else 1
    return pixels, (dtype.str, stored_shape, one)


@dataclass
class Inputs:
    """What ``collect_inputs`` found: images with their names (None: not stored), formats, file
    headers (PBM/PGM) and source arrays (.npy: (dtype, shape, value of a 1) each), and the files
    of input directories that are not images (``others``)."""

    images: list
    names: Optional[list]
    formats: list
    headers: list
    arrays: list = field(default_factory=list)
    others: list = field(default_factory=list)
    pages: list = field(default_factory=list)          # [(first, end)]: the pages of one multi-page file


def collect_inputs(paths: list, threshold: Optional[float] = None, stdin: Optional[bytes] = None) -> Inputs:
    """Images, their names and formats, from files, directories (recursively), .npy arrays and
    '-' (stdin). A .npy file's images all carry its name, and its dtype and shape are kept so
    that decompress writes the same array back. Files in a directory that are neither images nor
    .npy are listed in ``others``, never silently dropped."""
    if not paths:
        raise InputError("no input files given")
    found = Inputs([], [], [], [])
    for given in paths:
        given = str(given)
        if given == "-":
            entries = [("-", PurePosixPath("stdin"))]
        else:
            path = Path(given)
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
                found.others += [f for f in files if f.suffix.lower() not in IMAGE_SUFFIXES | {".npy"}]
                files = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES | {".npy"}]
                if not files:
                    raise InputError(f"{path}: directory holds no image files")
                entries = [(f, PurePosixPath(f.relative_to(path).as_posix())) for f in files]
            elif path.is_file():
                entries = [(path, PurePosixPath(path.name))]
            else:
                raise InputError(f"{path}: no such file or directory")
        for source, name in entries:
            data = stdin if source == "-" else None
            is_npy = (str(source).lower().endswith(".npy") if source != "-" else data[:6] == b"\x93NUMPY")
            stored = str(name.with_suffix("")) if source != "-" else None
            if is_npy:
                block, info = read_npy_source(source, threshold, data)
                if len(paths) == 1 and entries == [(source, name)]:          # one array: no per-image copies
                    return Inputs(block, None if stored is None else [stored] * len(block), ["npy"] * len(block),
                                  [b""] * len(block), [info] if stored is not None else [])
                found.images += list(block)
                found.names += [stored] * len(block)
                found.formats += ["npy"] * len(block)
                found.headers += [b""] * len(block)
                if stored is not None:
                    found.arrays.append(info)
            else:
                frames = read_image_frames(source, threshold, data)
                if len(frames) > 1:
                    found.pages.append((len(found.images), len(found.images) + len(frames)))
                for image, fmt, header in frames:
                    found.images.append(image)
                    found.names.append(stored)
                    found.formats.append(fmt)
                    found.headers.append(header)
    _name_everything(found)
    return found


def _name_everything(found: Inputs) -> None:
    """Generated names where none was given (stdin); no two inputs restored under one name."""
    if all(n is None for n in found.names):
        found.names, found.arrays = None, []
        return
    found.names = [n if n is not None else f"image_{i:05d}" for i, n in enumerate(found.names)]
    later_page = {i for first, end in found.pages for i in range(first + 1, end)}
    seen, previous = set(), None
    for i, (name, fmt) in enumerate(zip(found.names, found.formats)):
        group = (name, fmt == "npy")
        if name in seen and not (fmt == "npy" and previous == group) and i not in later_page:
            raise InputError(f"two inputs would both be restored as {name!r}; rename one")
        seen.add(name)
        previous = group


def npy_groups(names: Optional[list], formats: Optional[list], count: int) -> list:
    """[(start, end)] of the runs of images that came from one .npy file (format npy, one name)."""
    if names is None or formats is None:
        return []
    groups, start = [], None
    for i in range(count + 1):
        same = i < count and formats[i] == "npy" and start is not None and names[i] == names[start]
        if start is not None and not same:
            groups.append((start, i))
            start = None
        if i < count and formats[i] == "npy" and start is None:
            start = i
    return groups


def npy_array(images, dtype: str, shape: tuple, one: int) -> np.ndarray:
    """The .npy file's array again from its images (0/1), or ArchiveError if they do not fit."""
    block = np.asarray(images, dtype=np.uint8)
    if int(np.prod(shape, dtype=object)) != block.size:
        raise ArchiveError(f"corrupted archive: an array of shape {shape} cannot hold {block.size} pixels")
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise ArchiveError(f"corrupted archive: unknown array type {dtype!r}") from None
    if kind.kind not in "biuf":
        raise ArchiveError(f"corrupted archive: unknown array type {dtype!r}")
    return (block * np.uint8(one)).astype(kind).reshape(shape)


def encode_image(image: np.ndarray, fmt: str, header: bytes = b"") -> bytes:
    """The bytes of a bilevel image in a file format (1 = white in grey formats, as read); with
    the file's own PBM/PGM ``header`` (``pnm_header``), that header and the binary body."""
    if header[:2] == b"P4" and fmt == "pbm":
        return header + np.packbits(1 - np.asarray(image, np.uint8), axis=1).tobytes()
    if header[:2] == b"P5" and fmt == "pgm":
        maxval = int(re.sub(rb"#[^\n]*", b"", header).split()[3])
        if maxval < 256:
            return header + (np.asarray(image, np.uint8) * np.uint8(maxval)).tobytes()
    buffer = io.BytesIO()
    img = Image.fromarray(image.astype(bool))
    if fmt == "pbm":
        img.save(buffer, format="PPM")
    elif fmt in ("pgm", "ppm"):
        img.convert("L" if fmt == "pgm" else "RGB").save(buffer, format="PPM")
    elif fmt in ("tiff-g4", "tiff-g3"):
        img.save(buffer, format="TIFF", compression="group4" if fmt == "tiff-g4" else "group3")
    elif fmt == "tiff":
        img.save(buffer, format="TIFF")
    elif fmt in ("bmp", "gif"):
        img.save(buffer, format=fmt.upper())
    elif fmt == "webp":
        img.convert("L").save(buffer, format="WEBP", lossless=True)
    else:
        img.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    return encode_image(image, "png")
