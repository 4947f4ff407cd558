"""The Python API: ``Codec().compress(images) -> bytes`` and ``Codec().decompress(bytes)``.

    >>> from serecodec import Codec
    >>> codec = Codec()                          # the shipped default coding model
    >>> data = codec.compress(images)            # images: (N, 28, 28) array of 0/1
    >>> assert (codec.decompress(data) == images).all()
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from .archive import Archive, ArchiveError, deflate_pixels, inflate_pixels, pixel_crc
from .bitsback import BitsBackEncoder, StackIntegrityError, decode_images
from .coding_model import CodingModel, CodingModelError, load_coding_model
from .checkpoint import MODELS_DIR
from .context_model import CURRENT_TABLE, ContextModel, ContextModelError, load_context_model

DEFAULT_CODING_MODEL = MODELS_DIR / "default.coding.npz"


def resolve_coding_model(spec=None) -> Path:
    """``None`` → the shipped default; a shipped name → its ``NAME.coding.npz``; else a path."""
    if spec is None:
        return DEFAULT_CODING_MODEL
    spec = str(spec)
    shipped = MODELS_DIR / f"{spec}.coding.npz"
    if "/" not in spec and shipped.is_file():
        return shipped
    return Path(spec)


class Codec:
    """Lossless compression of binary images with bits-back ANS over the SeRe-VAE hierarchy."""

    def __init__(self, model=None, engine: str = "numpy", max_batch: int = 256, threads: int = 1) -> None:
        self.model: CodingModel = model if isinstance(model, CodingModel) else load_coding_model(
            resolve_coding_model(model), engine)
        self.max_batch = max_batch
        self.threads = threads
        self.shape = (28, 28)
        self._context: Optional[ContextModel] = None

    @property
    def context(self) -> ContextModel:
        """The static context model for small archives, loaded on first use."""
        if self._context is None:
            self._context = load_context_model()
        return self._context

    def _limited(self):
        """BLAS threads for the coder's products. One is the default: on a busy 2-core machine a
        second OpenBLAS thread made encoding 16x slower (benchmarks/codec.py measures both)."""
        return threadpool_limits(limits=self.threads, user_api="blas")

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 2 and images.shape[1] == self.model.pixels:
            images = images.reshape(len(images), *self.shape)
        if images.ndim != 3 or images.shape[1:] != self.shape:
            raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
        if not np.isin(images, (0, 1)).all():
            raise ValueError("pixels must be 0 or 1")
        return images.astype(np.uint8)

    def encoder(self) -> BitsBackEncoder:
        return BitsBackEncoder(self.model, self.max_batch)

    def stream(self) -> "StreamWriter":
        """An archive that grows one image (or batch) at a time; see ``StreamWriter``."""
        return StreamWriter(self)

    def compress(self, images, names: Optional[Sequence[str]] = None,
                 progress: Optional[Callable[[int], None]] = None, method: str = "auto") -> bytes:
        """An archive of ``images``; ``method`` "auto" keeps the smallest of bits-back, the static
        context model and deflate.

        Bits-back pays ~1000 initial bits once, so for a few dozen images or fewer the static
        context model is smaller (and deflate, for images unlike digits); the archive records
        which method it holds.
        """
        if method not in ("auto", "bits-back", "deflate", "context"):
            raise ValueError(f"method must be auto, bits-back, context or deflate, not {method!r}")
        images = self._check(images)
        if names is not None and len(names) != len(images):
            raise ValueError("one name per image")
        names = list(names) if names is not None else None
        crc = pixel_crc(images)
        candidates = []
        if method in ("auto", "deflate"):
            candidates.append(Archive("", len(images), *self.shape, crc, [], deflate_pixels(images), names,
                                      method="deflate").to_bytes())
        if method in ("auto", "context"):
            candidates.append(Archive("", len(images), *self.shape, crc, [], self.context.encode(images), names,
                                      method="context", context_table=CURRENT_TABLE).to_bytes())
        if method in ("deflate", "context"):
            return candidates[0]
        encoder = self.encoder()
        step = max(1, self.max_batch * 8)
        with self._limited():
            for start in range(0, len(images), step):
                encoder.push(images[start:start + step].reshape(-1, self.model.pixels))
                if progress:
                    progress(len(images[start:start + step]))
        candidates.append(Archive(self.model.hash, len(images), *self.shape, crc, encoder.batch_sizes,
                                  encoder.compressed(), names).to_bytes())
        return min(candidates, key=len)

    def read(self, data: bytes) -> Archive:
        archive = Archive.from_bytes(data)
        if archive.method == "bits-back" and not archive.made_with(self.model.hash):
            raise ArchiveError(f"archive was made with coding model {archive.model_hash[:16]}…, "
                               f"not this one ({self.model.hash[:16]}…); pass the matching --model")
        if (archive.height, archive.width) != self.shape:
            raise ArchiveError(f"archive holds {archive.height}x{archive.width} images; this model codes 28x28")
        if archive.method == "context" and archive.context_table != CURRENT_TABLE:
            raise ArchiveError(f"archive uses context table {archive.context_table}; this version of serecodec "
                               f"has table {CURRENT_TABLE}")
        return archive

    def decompress(self, data: bytes, progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        return self.decompress_archive(self.read(data), progress)

    def decompress_archive(self, archive: Archive, progress=None) -> np.ndarray:
        if archive.method in ("deflate", "context"):
            if archive.method == "deflate":
                images = inflate_pixels(archive.payload, archive.count, archive.height, archive.width)
            else:
                try:
                    images = self.context.decode(archive.payload, archive.count)
                except (ValueError, RuntimeError, AssertionError) as exc:   # the range decoder refuses impossible words
                    raise ArchiveError(f"corrupted archive ({exc})") from None
            if pixel_crc(images) != archive.pixel_crc:
                raise ArchiveError("corrupted archive: decoded pixels fail the CRC-32 check")
            if progress:
                progress(archive.count)
            return images
        try:
            with self._limited():
                flat = decode_images(self.model, archive.payload, archive.batch_sizes, progress)
        except StackIntegrityError:
            raise ArchiveError("corrupted archive: the bits-back stack did not return to its initial state") from None
        except (ValueError, RuntimeError) as exc:   # the coder refuses impossible states
            raise ArchiveError(f"corrupted archive ({exc})") from None
        images = flat.reshape(archive.count, *self.shape)
        if pixel_crc(images) != archive.pixel_crc:
            raise ArchiveError("corrupted archive: decoded pixels fail the CRC-32 check")
        return images


class StreamWriter:
    """Online compression: ``append`` images as they arrive, ``to_bytes`` any time for a complete archive.

    All appended images chain on one bits-back stack, so the initial bits are paid once and the
    rate per image falls towards the model's -ELBO as the stream grows.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.encoder = codec.encoder()
        self.count = 0
        self.crc = 0
        self.names: list = []

    def append(self, images, names: Optional[Sequence[str]] = None) -> None:
        """Append one image (28, 28) or a batch (N, 28, 28) of 0/1 pixels."""
        images = np.asarray(images)
        images = self.codec._check(images[None] if images.ndim == 2 and images.shape == self.codec.shape else images)
        with self.codec._limited():
            self.encoder.push(images.reshape(len(images), -1))
        self.crc = zlib.crc32(np.ascontiguousarray(images).tobytes(), self.crc)
        self.count += len(images)
        if names is not None:
            self.names += list(names)

    def payload_bits(self) -> int:
        return 32 * int(self.encoder.coder.num_words())

    def to_bytes(self) -> bytes:
        names = self.names if self.names and len(self.names) == self.count else None
        return Archive(self.codec.model.hash, self.count, *self.codec.shape, self.crc & 0xFFFFFFFF,
                       list(self.encoder.batch_sizes), self.encoder.compressed(), names).to_bytes()


__all__ = ["Codec", "StreamWriter", "ArchiveError", "CodingModelError", "resolve_coding_model"]
