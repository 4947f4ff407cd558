"""The Python API: ``Codec().compress(images) -> bytes`` and ``Codec().decompress(bytes)``.

    >>> from serecodec import Codec
    >>> codec = Codec()                          # the shipped default coding model
    >>> data = codec.compress(images)            # (N, H, W) or (H, W) 0/1, or a list of 2-D images
    >>> assert (codec.decompress(data) == images).all()

Four payload methods share one interface, ``encode(images) -> (payload, header fields)`` and
``decode(archive) -> images``: bits-back over the learned model's tiles, the adaptive context
model (any size, no model needed), the static digit context model (28x28 only) and deflate.
``method="auto"`` keeps the smallest, and only builds bits-back when an estimate says it can win.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

from .archive import (MAX_TOTAL_PIXELS, Archive, ContentChecksum, check_image_shape, check_limits, deflate_pixels,
                      inflate_pixels, name_bytes, size_runs, split_flat)
from .errors import ArchiveError, InputError, LimitError, VerificationError

VERIFY_STRETCH = 1024    # images encoded between two stack snapshots (the unit of overlapped verification)
from .registry import find_by_hash, resolve_coding_model

METHOD_CHOICES = ("auto", "bits-back", "adaptive", "context", "deflate")
Images = Union[np.ndarray, Sequence[np.ndarray]]


def as_images(images: Images, what: str = "images") -> Union[np.ndarray, list]:
    """Normalize input to an (N, H, W) uint8 array or a list of (H, W) uint8 arrays of 0/1.

    Accepts one (H, W) image, an (N, H, W) array or a list of 2-D arrays; pixels 0/1, bool, or
    0/255 (255 = 1, as the command line reads 8-bit files). Anything else is an InputError.
    """
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        array = np.asarray(images)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise InputError(f"{what} must be one (H, W) image or an (N, H, W) array, got shape {array.shape}")
        if array.shape[0] == 0:
            raise InputError(f"{what}: no images given")
        check_image_shape(*array.shape[1:])
        return _binary(array, what)
    if not images:
        raise InputError(f"{what}: no images given")
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 2:
            raise InputError(f"{what}[{i}] must be a 2-D image, got shape {image.shape}")
        check_image_shape(*image.shape)
        out.append(_binary(image, f"{what}[{i}]"))
    shapes = {image.shape for image in out}
    return np.stack(out) if len(shapes) == 1 else out


def binary_or_none(array: np.ndarray) -> Optional[np.ndarray]:
    """``array`` as uint8 0/1 if it holds only 0/1 (or only 0/255, or bools), else None.

    Checked in chunks, and uint8 0/1 input is returned as it is: a 100,000-image array costs no
    copies or whole-array temporaries here."""
    if array.dtype == bool:
        return array.view(np.uint8)
    if not np.issubdtype(array.dtype, np.number):
        return None
    flat = array.reshape(-1)
    chunk = 1 << 22

    def only(values) -> bool:
        return all(np.isin(flat[i:i + chunk], values).all() for i in range(0, flat.size, chunk))
    if only((0, 1)):
        return array if array.dtype == np.uint8 else array.astype(np.uint8)
    if only((0, 255)):
        return (array == 255).view(np.uint8)
    return None


def _binary(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{what}: pixels must be numbers, not {array.dtype}")
    binary = binary_or_none(array)
    if binary is None:
        raise InputError(f"{what}: pixels must be 0/1 (or 0/255); binarize grey images first")
    return binary


def shapes_of(images) -> list:
    if isinstance(images, np.ndarray):
        return [tuple(images.shape[1:])] * len(images)
    return [tuple(image.shape) for image in images]


class Codec:
    """Lossless compression of bilevel images: bits-back ANS over the SeRe-VAE hierarchy, with an
    adaptive context model and deflate for what the learned model does not suit.

    ``model``: a shipped name, a ``.coding.npz`` path or a ``CodingModel`` (loaded on first use,
    so archives that do not need it never load it). ``max_pixels`` caps what one archive may
    decode to (a hostile header cannot make it allocate more). ``warm_start``: start the bits-back
    stack with the first images coded by the adaptive model instead of ~1000 random initial bits.
    ``particles``: K > 1 codes each tile at the importance-weighted (IW-K) bound instead of the
    ELBO, at K times the network work each way (the archive records K).
    """

    def __init__(self, model=None, engine: str = "numpy", max_batch: int = 256, threads: int = 1,
                 max_pixels: int = MAX_TOTAL_PIXELS, warm_start: bool = True, particles: int = 1) -> None:
        from .bitsback import MAX_PARTICLES
        if not 1 <= max_batch <= 65535:
            raise InputError(f"max_batch must be in 1..65535, not {max_batch}")
        if not 1 <= particles <= MAX_PARTICLES:
            raise InputError(f"particles must be in 1..{MAX_PARTICLES}, not {particles}")
        self.particles = particles
        self._model_spec, self.engine = model, engine
        self._model = None
        self.max_batch, self.threads, self.max_pixels = max_batch, threads, max_pixels
        self.warm_start = warm_start
        self._context = None
        self._adaptive = None
        if engine.startswith("torch:cuda"):
            from .fixedpoint import get_engine
            get_engine(engine)          # fail now, in one line, if CUDA is not there

    # -- the models, each loaded on first use ---------------------------------------------------
    @property
    def model(self):
        """The integer coding model (bits-back)."""
        if self._model is None:
            from .coding_model import CodingModel, load_coding_model
            spec = self._model_spec
            self._model = spec if isinstance(spec, CodingModel) else load_coding_model(resolve_coding_model(spec),
                                                                                         self.engine)
        return self._model

    @property
    def tile(self) -> tuple:
        return self.model.tile_shape

    @property
    def context(self):
        """The static digit context model (28x28 only; format-2 archives and small digit sets)."""
        if self._context is None:
            from .context_model import load_context_model
            self._context = load_context_model()
        return self._context

    @property
    def adaptive(self):
        """The adaptive context model (any size)."""
        if self._adaptive is None:
            from .adaptive import load_adaptive_model
            self._adaptive = load_adaptive_model()
        return self._adaptive

    def _limited(self):
        """BLAS threads for the coder's products. One is the default: on a busy 2-core machine a
        second OpenBLAS thread made encoding 16x slower (benchmarks/codec.py measures both)."""
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=self.threads, user_api="blas")

    def encoder(self, warm: bool = True):
        """A bits-back encoder; ``warm``: start from an empty stack with the adaptive model."""
        from .bitsback import BitsBackEncoder
        return BitsBackEncoder(self.model, self.max_batch, self.warm if warm and self.warm_start else None,
                               self.particles)

    @property
    def warm(self):
        """The warm-start models (static digit model for 28x28 images, adaptive for the rest)."""
        from .bitsback import WarmStart
        return WarmStart(self.adaptive, self.context)

    def _encode_bits_back(self, images, progress, verify: bool = False) -> "object":
        """Bits-back over tiles, warm-started by the first images when they are small enough.

        ``verify``: check every stretch of VERIFY_STRETCH images by decoding it from the stack it left
        (``bitsback.verify_segment``) in a second thread while the next stretch encodes; the
        encoder's ``verified`` is then True only if every stretch came back exactly."""
        from concurrent.futures import ThreadPoolExecutor

        from .bitsback import WarmStartTooLarge, to_tiles, verify_segment, verify_warm
        for warm in (True, False):
            encoder = self.encoder(warm)
            start = 0
            try:
                while start < len(images) and encoder.needs_warmth():
                    encoder.push_warm(images[start])
                    start += 1
            except WarmStartTooLarge:
                continue
            if progress and start:
                progress(start)
            checks = []
            with self._limited(), ThreadPoolExecutor(max_workers=1) as pool:
                before = encoder.compressed().copy() if verify else None    # snapshots only to verify
                if verify and start:
                    checks.append(pool.submit(verify_warm, before, self.warm, [images[i] for i in range(start)]))
                for first in range(start, len(images), VERIFY_STRETCH):
                    chunk = images[first:first + VERIFY_STRETCH]
                    tiles, masks = to_tiles(chunk, self.tile)
                    batches = len(encoder.batch_sizes)
                    encoder.push(tiles, masks)
                    if verify:
                        after = encoder.compressed().copy()
                        if len(checks) > 1:          # at most one stretch waits: memory stays flat
                            checks[-2].result()
                        checks.append(pool.submit(verify_segment, self.model, after, encoder.batch_sizes[batches:],
                                                  tiles, masks, before, self.particles))
                        before = after
                    if progress:
                        progress(len(chunk))
                encoder.verified = all(check.result() for check in checks) if verify else None
            return encoder

    def stream(self, target=None) -> "StreamWriter":
        """An archive that grows one image (or batch) at a time; see ``StreamWriter``.

        With a ``target`` (a path or a binary file object) use it as a context manager:
        ``with codec.stream("out.sere") as s: s.append(image)`` writes the complete archive on a
        clean exit (atomically, for a path) and nothing if the block raises.
        """
        return StreamWriter(self, target)

    # -- compress ------------------------------------------------------------------------------
    def compress(self, images: Images, names: Optional[Sequence[str]] = None,
                 progress: Optional[Callable[[int], None]] = None, method: str = "auto",
                 formats: Optional[Sequence[str]] = None, ordered: bool = True, verify: bool = False) -> bytes:
        """A complete archive of ``images`` (see ``as_images`` for what is accepted).

        ``names``: one file name per image, stored (compactly) and restored by ``read``.
        ``formats``: one original file format per image (``archive.FORMATS``), so a command-line
        decoder can write each image back in kind. ``method``: "auto" keeps the smallest of
        bits-back, the adaptive context model, the static digit model (28x28 only) and deflate.
        ``ordered=False``: the order of the images does not matter (a data set); bits-back then
        codes the collection as a multiset, saving about log2 N! bits, and decompression returns
        the images in canonical order (``multiset.canonical_order``). Not with names.
        ``verify``: decode the chosen archive before returning it and raise ``VerificationError``
        if it does not give back the input (bits-back checks stretch by stretch in a second
        thread while it encodes, so the check costs little wall time on a multi-core machine).
        """
        if method not in METHOD_CHOICES:
            raise InputError(f"method must be one of {', '.join(METHOD_CHOICES)}, not {method!r}")
        images = as_images(images)
        shapes = shapes_of(images)
        pixels = sum(h * w for h, w in shapes)
        if pixels > self.max_pixels:
            raise LimitError(f"{pixels:,} pixels are above the limit of {self.max_pixels:,} for one archive")
        names = _check_names(names, len(shapes))
        formats = _check_formats(formats, len(shapes))
        if not ordered:
            if names is not None:
                raise InputError("an unordered archive restores images in canonical order, so it stores no names")
            data = self._compress_unordered(images, formats, method, progress)
            if verify:
                from .multiset import canonical_order
                self._verify(data, images[canonical_order(images)])
            return data
        checksum = ContentChecksum()
        for image in images:
            checksum.update(image)
        base = dict(sizes=size_runs(shapes), names=names, formats=formats)

        def sealed(method_name: str, payload: bytes, **fields) -> bytes:
            archive = Archive(method_name, payload=payload, **base, **fields)
            archive.content_crc = checksum.value(archive.meta_bytes())
            return archive.to_bytes()

        candidates = []
        if method in ("auto", "adaptive"):
            candidates.append(sealed("adaptive", self.adaptive.encode(images), context_table=self.adaptive.table_id))
        if method == "deflate" or (method == "auto" and pixels <= 1 << 16):
            candidates.append(sealed("deflate", deflate_pixels(images)))
        uniform = isinstance(images, np.ndarray)
        if method == "context" or (method == "auto" and uniform and shapes[0] == (28, 28) and len(shapes) <= 4096):
            if not (uniform and shapes[0] == (28, 28)):
                raise InputError("the static context model codes 28x28 images only; use adaptive")
            from .context_model import CURRENT_TABLE
            candidates.append(sealed("context", self.context.encode(images).astype("<u4").tobytes(),
                                     context_table=CURRENT_TABLE))
        bits_back = None
        if method == "bits-back" or (method == "auto" and self._bits_back_may_win(images, min(map(len, candidates)))):
            encoder = self._encode_bits_back(images, progress, verify)
            bits_back = sealed("bits-back", encoder.compressed().astype("<u4").tobytes(),
                               model_hash=self.model.hash, batch_sizes=list(encoder.batch_sizes),
                               warm_images=encoder.warm_images, particles=self.particles)
            candidates.append(bits_back)
        elif progress:
            progress(len(shapes))
        best = min(candidates, key=len)
        if verify:
            if best is bits_back:          # its stretches were decoded as it encoded; check the header
                if not encoder.verified:
                    raise VerificationError("verification failed: the archive does not decode to the input "
                                            "(please report)")
                self.read(best).verify(images)
            else:
                self._verify(best, images)
        return best

    def _verify(self, data: bytes, images) -> None:
        decoded = self.decompress(data)
        if isinstance(decoded, np.ndarray) and isinstance(images, np.ndarray):
            same = np.array_equal(decoded, images)
        else:
            same = len(decoded) == len(images) and all(np.array_equal(a, b) for a, b in zip(decoded, images))
        if not same:
            raise VerificationError("verification failed: the archive does not decode to the input (please report)")

    def _compress_unordered(self, images, formats, method: str, progress) -> bytes:
        """The collection as a multiset: bits-back over the order (and, for ``auto``, the adaptive
        model over the canonical order, whichever is smaller). One image size, no names."""
        from .multiset import canonical_order
        if not isinstance(images, np.ndarray):
            raise InputError("an unordered archive holds images of one size")
        if method not in ("auto", "bits-back", "adaptive"):
            raise InputError(f"an unordered archive is coded with bits-back or adaptive, not {method}")
        if formats is not None and len(set(formats)) > 1:
            raise InputError("an unordered archive records one format for all images")
        images = images[canonical_order(images)]
        checksum = ContentChecksum()
        for image in images:
            checksum.update(image)
        base = dict(sizes=size_runs(shapes_of(images)), formats=formats, unordered=True)
        candidates = []
        if method in ("auto", "adaptive"):
            archive = Archive("adaptive", payload=self.adaptive.encode(images), context_table=self.adaptive.table_id,
                              **base)
            archive.content_crc = checksum.value(archive.meta_bytes())
            candidates.append(archive.to_bytes())
        if method in ("auto", "bits-back"):
            encoder = self.encoder(warm=False)
            with self._limited():
                encoder.push_unordered(images, self.tile)
            archive = Archive("bits-back", payload=encoder.compressed().astype("<u4").tobytes(),
                              model_hash=self.model.hash, batch_sizes=list(encoder.batch_sizes),
                              particles=self.particles, **base)
            archive.content_crc = checksum.value(archive.meta_bytes())
            candidates.append(archive.to_bytes())
        if progress:
            progress(len(images))
        return min(candidates, key=len)

    def _bits_back_may_win(self, images, best_bytes: int) -> bool:
        """Estimate the bits-back size from the model's -ELBO on a sample of tiles (no coding)."""
        from .bitsback import initial_word_count, tile_count, to_tiles
        shapes = shapes_of(images)
        tiles = tile_count(shapes, self.tile)
        initial_bits = 32 * initial_word_count(self.model, self.particles)
        if initial_bits / 8 > best_bytes:
            return False
        picks = np.unique(np.linspace(0, len(shapes) - 1, num=min(len(shapes), 64)).astype(int))
        sample_tiles, _ = to_tiles([images[i] for i in picks], self.tile)
        if len(sample_tiles) > 256:
            sample_tiles = sample_tiles[np.linspace(0, len(sample_tiles) - 1, 256).astype(int)]
        with self._limited():
            nats = self.model.expected_rate(sample_tiles)["neg_elbo_nats"]
        estimate_bytes = (tiles * nats / np.log(2) + initial_bits) / 8
        return estimate_bytes < 1.1 * best_bytes

    # -- decompress ----------------------------------------------------------------------------
    def read(self, data: bytes) -> Archive:
        """Parse and check an archive's header without decoding its payload.

        Raises ArchiveError for anything that is not an intact archive this codec can decode
        (damage, another coding model, an unknown table) and LimitError above ``max_pixels``.
        """
        archive = Archive.from_bytes(bytes(data), self.max_pixels)
        check_limits(archive, self.max_pixels)
        if archive.method == "bits-back":
            if self._model_spec is None and not archive.made_with(self.model.hash):
                found = find_by_hash(archive.model_hash)      # shipped or installed models
                if found is None:
                    raise ArchiveError(f"archive needs coding model {archive.model_hash[:16]}…, which is neither "
                                       f"shipped nor installed; pass it with --model")
                from .coding_model import load_coding_model
                self._model = load_coding_model(found, self.engine)
            if not archive.made_with(self.model.hash):
                raise ArchiveError(f"archive was made with coding model {archive.model_hash[:16]}…, "
                                   f"not this one ({self.model.hash[:16]}…); pass the matching --model")
            from .bitsback import tile_count
            tiles = tile_count(archive.shapes, self.tile)
            from .bitsback import WARM_MAX_PIXELS, WARM_MAX_TOTAL
            warm = archive.shapes[:archive.warm_images]
            tiles = tile_count(archive.shapes[archive.warm_images:], self.tile)
            if tiles > 8 * len(archive.payload) + 64 or sum(archive.batch_sizes) != tiles or \
                    max(archive.batch_sizes, default=0) > 65535 or len(archive.payload) % 4 or \
                    archive.warm_images > archive.count or (archive.warm_images and archive.unordered):
                raise ArchiveError("corrupted archive: the bits-back batches do not match the image sizes")
            if any(h * w > WARM_MAX_PIXELS for h, w in warm) or sum(h * w for h, w in warm) > WARM_MAX_TOTAL:
                raise ArchiveError("corrupted archive: the warm start is larger than any encoder writes")
            from .bitsback import MAX_PARTICLES
            if archive.particles > MAX_PARTICLES:
                raise ArchiveError(f"corrupted archive: {archive.particles} importance particles (at most {MAX_PARTICLES})")
        if archive.method == "context":
            from .context_model import CURRENT_TABLE
            if archive.context_table != CURRENT_TABLE:
                raise ArchiveError(f"archive uses context table {archive.context_table}; this version of serecodec "
                                   f"has table {CURRENT_TABLE}")
            if archive.uniform_shape not in (None, (28, 28)) or (archive.count and archive.uniform_shape is None):
                raise ArchiveError("corrupted archive: the static context model codes 28x28 images only")
        if archive.method == "adaptive" and archive.context_table != self.adaptive.table_id:
            raise ArchiveError(f"archive uses adaptive table {archive.context_table}; this version of serecodec "
                               f"has table {self.adaptive.table_id}")
        if archive.unordered and (archive.names is not None or archive.uniform_shape is None):
            raise ArchiveError("corrupted archive: an unordered archive holds images of one size and no names")
        return archive

    def decompress(self, data: bytes, progress: Optional[Callable[[int], None]] = None) -> Union[np.ndarray, list]:
        """The images of an archive, verified against its checksum: an (N, H, W) uint8 array when
        all have one size, else a list of (H, W) arrays. Raises ArchiveError on any damage."""
        return self.decompress_archive(self.read(data), progress)

    def iter_decompress(self, data: bytes, batch: int = 1024) -> Iterator:
        """Yield the images of an archive in order, ``batch`` at a time (arrays, or lists for mixed
        sizes). Nothing is yielded before the whole archive has decoded and passed its checksum,
        so a consumer never sees an unverified image (a bits-back stack decodes last batch first)."""
        images = self.decompress(data)
        for start in range(0, len(images), batch):
            yield images[start:start + batch]

    def decompress_archive(self, archive: Archive, progress: Optional[Callable[[int], None]] = None):
        """Decode a parsed archive (from ``read``) and verify its content checksum."""
        shapes = archive.shapes
        if archive.method == "deflate":
            images = inflate_pixels(archive.payload, shapes)
        elif archive.method == "adaptive":
            images = split_flat(self.adaptive.decode(archive.payload, shapes), shapes)
        elif archive.method == "context":
            words = np.frombuffer(archive.payload, dtype="<u4").astype(np.uint32)
            try:
                images = list(self.context.decode(words, archive.count))
            except (ValueError, RuntimeError, AssertionError) as exc:   # the range decoder refuses impossible words
                raise ArchiveError(f"corrupted archive ({exc})") from None
        else:
            images = self._decode_bits_back(archive, shapes, progress)
            progress = None
        if progress:
            progress(archive.count)
        archive.verify(images)
        return _assemble(images, archive.uniform_shape)

    def _decode_bits_back(self, archive: Archive, shapes: list, progress) -> list:
        from .bitsback import decode_images, decode_unordered, from_tiles, tile_masks
        words = np.frombuffer(archive.payload, dtype="<u4").astype(np.uint32)
        tile = self.tile
        if archive.unordered:
            try:
                with self._limited():
                    return decode_unordered(self.model, words, archive.batch_sizes, archive.uniform_shape, tile,
                                            progress, archive.particles)
            except (ValueError, RuntimeError) as exc:
                raise ArchiveError(f"corrupted archive: {exc}") from None
        per_image = None
        if progress and len({s for s in shapes}) == 1:
            per_image = -(-shapes[0][0] // tile[0]) * -(-shapes[0][1] // tile[1])
        report = (lambda tiles: progress(max(1, tiles // per_image))) if per_image else None
        warm = archive.warm_images
        try:
            with self._limited():
                if warm:
                    flat, warm_images = decode_images(self.model, words, archive.batch_sizes, report,
                                                      masks=tile_masks(shapes[warm:], tile), warm=self.warm,
                                                      warm_shapes=shapes[:warm], particles=archive.particles)
                    return warm_images + from_tiles(flat, shapes[warm:], tile)
                flat = decode_images(self.model, words, archive.batch_sizes, report,
                                     masks=tile_masks(shapes, tile), particles=archive.particles)
        except (ValueError, RuntimeError) as exc:   # the coder refuses impossible states
            if isinstance(exc, ArchiveError):
                raise ArchiveError(f"corrupted archive: {exc}") from None
            raise ArchiveError(f"corrupted archive ({exc})") from None
        return from_tiles(flat, shapes, tile)


def _assemble(images: list, uniform: Optional[tuple]):
    if uniform is not None:
        if isinstance(images, np.ndarray):
            return images.astype(np.uint8, copy=False)
        return np.stack(images).astype(np.uint8, copy=False) if images else np.zeros((0, *uniform), np.uint8)
    return [np.asarray(image, dtype=np.uint8) for image in images]


def _check_names(names, count: int) -> Optional[list]:
    if names is None:
        return None
    names = list(names)
    if len(names) != count:
        raise InputError(f"{len(names)} names for {count} images: give one name per image")
    from .archive import MAX_NAME_BYTES
    for name in names:
        if not isinstance(name, str) or not name:
            raise InputError(f"names must be non-empty strings, got {name!r}")
        raw = name_bytes(name)
        if b"\0" in raw or len(raw) > MAX_NAME_BYTES:
            raise InputError(f"name {name!r} holds a NUL byte or is longer than {MAX_NAME_BYTES} bytes")
    return names


def _check_formats(formats, count: int) -> Optional[list]:
    if formats is None:
        return None
    from .archive import FORMATS
    formats = list(formats)
    if len(formats) != count or any(f not in FORMATS for f in formats):
        raise InputError(f"formats must be one of {', '.join(FORMATS)} per image")
    return formats


class StreamWriter:
    """Online compression: ``append`` images as they arrive, ``to_bytes`` any time for a complete
    archive (bits-back; all images chain on one stack, so the initial bits are paid once)."""

    def __init__(self, codec: Codec, target=None) -> None:
        self.codec, self.target = codec, target
        self.encoder = codec.encoder()
        self.shapes: list = []
        self.checksum = ContentChecksum()
        self.names: Optional[list] = None

    @property
    def count(self) -> int:
        return len(self.shapes)

    def append(self, images: Images, names: Optional[Sequence[str]] = None) -> None:
        """Append one image (H, W) or a batch (N, H, W) / list of 0/1 pixels, with names for all or none."""
        from .bitsback import to_tiles
        images = as_images(images)
        shapes = shapes_of(images)
        if (names is not None) != (self.names is not None) and self.count:
            raise InputError("give names with every append or with none (the archive stores one per image)")
        names = _check_names(names, len(shapes))
        from .bitsback import WARM_MAX_PIXELS
        if not self.count and shapes[0][0] * shapes[0][1] > WARM_MAX_PIXELS:
            self.encoder = self.codec.encoder(warm=False)      # a large first image: initial words instead
        start = 0
        try:
            while start < len(images) and self.encoder.needs_warmth():
                self.encoder.push_warm(images[start])
                start += 1
        except Exception as exc:
            from .bitsback import WarmStartTooLarge
            if isinstance(exc, WarmStartTooLarge):
                raise InputError("a stream starts warm from small images; start it with images of at most "
                                 "65536 pixels, or use Codec.compress") from None
            raise
        with self.codec._limited():
            tiles, masks = to_tiles(images[start:], self.codec.tile)
            if len(tiles):
                self.encoder.push(tiles, masks)
        for image in images:
            self.checksum.update(image)
        self.shapes += shapes
        if names is not None:
            self.names = (self.names or []) + names

    def payload_bits(self) -> int:
        return 32 * int(self.encoder.coder.num_words())

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None or self.target is None:
            return
        data = self.to_bytes()
        if hasattr(self.target, "write"):
            self.target.write(data)
        else:
            from .fileio import atomic_write_bytes
            atomic_write_bytes(self.target, data)

    def to_bytes(self) -> bytes:
        archive = Archive("bits-back", size_runs(self.shapes), self.encoder.compressed().astype("<u4").tobytes(),
                          model_hash=self.codec.model.hash, batch_sizes=list(self.encoder.batch_sizes),
                          names=self.names, warm_images=self.encoder.warm_images,
                          particles=self.encoder.particles)
        archive.content_crc = self.checksum.value(archive.meta_bytes())
        return archive.to_bytes()


__all__ = ["Codec", "StreamWriter", "ArchiveError", "as_images", "resolve_coding_model"]
