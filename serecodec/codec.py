"""The Python API: ``Codec().compress(images) -> bytes`` and ``Codec().decompress(bytes)``.

    >>> from serecodec import Codec
    >>> codec = Codec()                          # the shipped default coding model
    >>> data = codec.compress(images)            # (N, H, W) or (H, W) 0/1, or a list of 2-D images
    >>> assert (codec.decompress(data) == images).all()

The codec normalizes the input once (``inputs.as_images``), cuts it into chunks, and codes each
chunk with the payload methods ``method`` allows (``serecodec.methods``), keeping the smallest;
decoding looks each chunk's method up by its code. The archive is format 4 (``container``):
chunks are independent, so a damaged one loses only its images (``salvage``), and decoding can
stream chunk by chunk (``iter_decompress``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from .container import MAX_TOTAL_PIXELS, Archive, Chunk, iter_chunks, parse, pixel_crc
from .container.wire import size_runs
from .errors import ArchiveError, InputError, LimitError, ModelUnavailable, SerecodecError, VerificationError
from .fixedpoint import get_engine
from .inputs import (Images, as_images, background_is_one, check_arrays, check_formats, check_headers, check_names,
                     check_pages, shapes_of, with_polarity)
from .methods import METHOD_NAMES, auto_order, by_code, by_name
from .methods.bits_back import new_encoder
from .methods.models import Models
from .multiset import canonical_order
from .parallel import fork_available, imap_processes
from .registry import resolve_coding_model
from .stream import StreamWriter

METHOD_CHOICES = ("auto",) + METHOD_NAMES
# A chunk closes once it holds this many pixels (1,000 digits); a larger image is a chunk of its
# own. benchmarks/chunks.py measured on the 10k test set: +0.44% rate against one chunk, and a
# flipped byte loses 10% of the images (1,338 digits: +0.34%, 13.4%; 500: +0.70%, 5%).
CHUNK_PIXELS = 1000 * 28 * 28


@dataclass
class ChunkReport:
    """What ``compress`` did with one chunk: the method kept and what the others came to."""

    first: int
    count: int
    method: str
    bytes: int
    candidates: dict = field(default_factory=dict)     # method -> bytes, or the reason it was not tried


@dataclass
class Salvage:
    """What ``salvage`` could restore: ``images`` (None where lost) and the lost chunks."""

    images: list
    lost: list                       # [(chunk number from 1, range of image indices, reason)]

    @property
    def restored(self) -> int:
        return sum(image is not None for image in self.images)


class Codec:
    """Lossless compression of bilevel images: bits-back ANS over the SeRe-VAE hierarchy, with an
    adaptive context model and deflate for what the learned model does not suit.

    ``model``: a shipped name, a ``.coding.npz`` path or a ``CodingModel`` (loaded on first use,
    so archives that do not need it never load it). ``max_pixels`` caps what one archive may
    decode to (a hostile header cannot make it allocate more). ``warm_start``: start each
    bits-back stack with the first images coded by a context model instead of ~1000 random
    initial bits. ``particles``: K > 1 codes each tile at the importance-weighted (IW-K) bound
    instead of the ELBO, at K times the network work each way (the archive records K).
    ``chunk_pixels``: how many pixels a chunk gathers before the next one starts. ``workers``:
    chunks coded (and decoded) at once, in threads (chunks are independent, so the archive is the
    same for any count); ``threads``: BLAS threads of each worker's products.
    """

    def __init__(self, model=None, engine: str = "numpy", max_batch: int = 256, threads: int = 1,
                 max_pixels: int = MAX_TOTAL_PIXELS, warm_start: bool = True, particles: int = 1,
                 chunk_pixels: int = CHUNK_PIXELS, workers: int = 1) -> None:
        self.models = Models(model, engine, max_batch, threads, warm_start, particles)
        if workers < 1:
            raise InputError(f"workers must be at least 1, not {workers}")
        self.workers = self.models.verify_workers = workers
        self.max_pixels = max_pixels
        if chunk_pixels < 1:
            raise InputError(f"chunk_pixels must be positive, not {chunk_pixels}")
        self.chunk_pixels = chunk_pixels
        if engine.startswith("torch:cuda"):
            get_engine(engine)          # fail now, in one line, if CUDA is not there

    @property
    def model(self):
        """The integer coding model (bits-back)."""
        return self.models.coding

    @property
    def tile(self) -> tuple:
        return self.model.tile_shape

    @property
    def particles(self) -> int:
        return self.models.particles

    def encoder(self, warm: bool = True):
        """A bits-back encoder; ``warm``: start from an empty stack with the context models."""
        return new_encoder(self.models, warm)

    def stream(self, target=None):
        """An archive that grows one image (or batch) at a time; see ``stream.StreamWriter``.

        With a ``target`` (a path or a binary file object) use it as a context manager:
        ``with codec.stream("out.sere") as s: s.append(image)`` writes the complete archive on a
        clean exit (atomically, for a path) and nothing if the block raises.
        """
        return StreamWriter(self, target)

    # -- compress ------------------------------------------------------------------------------
    def compress(self, images: Images, names: Optional[Sequence[str]] = None,
                 progress: Optional[Callable[[int], None]] = None, method: str = "auto",
                 formats: Optional[Sequence[str]] = None, ordered: bool = True, verify: bool = True,
                 report: Optional[list] = None, arrays: Optional[Sequence[tuple]] = None,
                 headers: Optional[Sequence[bytes]] = None, pages: Optional[Sequence[tuple]] = None) -> bytes:
        """A complete archive of ``images`` (see ``inputs.as_images`` for what is accepted).

        ``names``: one file name per image, stored (compactly) and restored by ``read``.
        ``formats``: one original file format per image (``container.FORMATS``), so a command-line
        decoder can write each image back in kind. ``method``: "auto" keeps, chunk by chunk, the
        smallest of the methods that suit it (``methods.METHOD_NAMES``).
        ``ordered=False``: the order of the images does not matter (a data set); bits-back then
        codes the collection as a multiset, saving about log2 N! bits, and decompression returns
        the images in canonical order (``multiset.canonical_order``). Not with names.
        ``verify``: decode every chunk before returning and raise ``VerificationError`` if it
        does not give back the input (bits-back checks stretch by stretch in a second thread
        while it encodes, so the check costs little wall time on a multi-core machine).
        ``report``: a list that receives one ``ChunkReport`` per chunk. ``arrays``: the (dtype,
        shape, value of a 1) of each .npy file the images came from, and ``headers`` the file
        header of each image (PBM/PGM, comments included), stored so a decoder can write the
        files back as they were. ``pages``: the (first, end) image ranges that are the pages of
        one multi-page file (TIFF, GIF), so a decoder writes each back as one file.
        Images whose pixels are mostly 1 are coded inverted (background 0, ink 1, as the learned
        model saw in training); the archive records which, and decoding restores them as given.
        """
        if method not in METHOD_CHOICES:
            raise InputError(f"method must be one of {', '.join(METHOD_CHOICES)}, not {method!r}")
        images = as_images(images)
        shapes = shapes_of(images)
        pixels = sum(h * w for h, w in shapes)
        if pixels > self.max_pixels:
            raise LimitError(f"{pixels:,} pixels are above the limit of {self.max_pixels:,} for one archive")
        names = check_names(names, len(shapes))
        formats = check_formats(formats, len(shapes))
        pages = check_pages(pages, len(shapes))
        if not ordered and pages:
            raise InputError("an unordered archive keeps no multi-page files")
        if not ordered:
            if names is not None:
                raise InputError("an unordered archive restores images in canonical order, so it stores no names")
            if not isinstance(images, np.ndarray):
                raise InputError("an unordered archive holds images of one size")
            if formats is not None and len(set(formats)) > 1:
                raise InputError("an unordered archive records one format for all images")
        inverted = background_is_one(images)
        coded = with_polarity(images, inverted)
        if not ordered:                          # the decoder restores the canonical order of what was coded
            order = canonical_order(coded)
            if inverted is None:
                images = coded = images[order]
            else:
                images, coded, inverted = images[order], coded[order], [inverted[i] for i in order]
        archive = Archive(size_runs(shapes), names=names, formats=formats, unordered=not ordered, inverted=inverted,
                          arrays=check_arrays(arrays), headers=check_headers(headers, len(shapes)), pages=pages)
        spans = plan_chunks(shapes, self.chunk_pixels) if ordered else [(0, len(shapes))]

        def encode(span):
            chunk, chunk_report, check = self._encode_chunk(coded[span[0]:span[1]], span[0], method, verify,
                                                            not ordered)
            chunk.pixel_crc = pixel_crc(images[span[0]:span[1]])
            return chunk, chunk_report, check
        pending: list = []                      # checks still running while the next chunks encode
        with self.models.limited():
            for chunk, chunk_report, check in self._each(encode, spans, in_worker=_settled):
                archive.chunks.append(chunk)
                if report is not None:
                    report.append(chunk_report)
                if check is not None:
                    pending.append((chunk_report.method, check))
                while len(pending) > self.workers + 1:   # bounded: a chunk's snapshots wait at most
                    _settle(*pending.pop(0))
                if progress:
                    progress(chunk.count)
            for name, check in pending:
                _settle(name, check)
        return archive.to_bytes()

    def _each(self, work: Callable, items: list, in_worker: Callable = lambda result: result,
              preload: bool = True) -> Iterator:
        """``work(item)`` for every item, in order; ``workers`` at a time in forked processes
        (``parallel``), else in threads (with at most twice that many results waiting). In a
        process, ``in_worker`` finishes each result there (what cannot travel back, such as a
        check still running, must be settled before it is sent). ``preload``: load every model
        first, so workers inherit them; without it (decoding: reading the archive loaded what
        its chunks need) a process loads what it lacks itself."""
        if self.workers == 1 or len(items) < 2:
            yield from map(work, items)
            return
        processes = fork_available()
        if preload or not processes:
            self.models.load_all()                # loaded once, before workers share (or inherit) them
        if processes:
            # a worker has the items already (forked after they were made): only their numbers travel
            yield from imap_processes(lambda i: in_worker(work(items[i])), range(len(items)),
                                      min(self.workers, len(items)), setup=self.models.checks_inline)
            return
        with ThreadPoolExecutor(self.workers) as pool:
            pending = []
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.pop(0).result()
            for future in pending:
                yield future.result()

    def _encode_chunk(self, images, first: int, method: str, verify: bool, unordered: bool) -> tuple:
        """Code one chunk with every candidate ``method`` allows; keep the smallest, verified."""
        candidates = auto_order(images) if method == "auto" else (method,)
        best, tried = None, {}
        ahead = {name: self.models.estimator().submit(by_name(name).estimate, images, self.models)
                 for name in candidates[1:] if by_name(name).estimate_ahead(images)}
        for name in candidates:
            coder = by_name(name)
            refusal = coder.refuses(images, self.models)
            if refusal is not None:
                if method != "auto":
                    raise InputError(refusal)
                tried[name] = "does not apply"
                continue
            best_bytes = None if best is None else best[2]
            if method == "auto" and not coder.worth_trying(images, self.models, best_bytes, ahead.get(name)):
                tried[name] = "not tried: its estimate cannot win"
                continue
            encoded = coder.encode(images, self.models, verify=verify, unordered=unordered)
            params = coder.params_bytes(encoded.fields)
            tried[name] = size = len(encoded.payload) + len(params)
            if best is None or size < best[2]:
                chunk = Chunk(coder.code, len(images), coder.name, first, params=params, payload=encoded.payload,
                              fields=encoded.fields)
                # checked from now on, beside auto's remaining trials (a later winner makes it moot)
                check = self._verify_chunk(coder, encoded, chunk, images, unordered) if verify else None
                best = (coder, chunk, size, check)
        coder, chunk, size, check = best
        return chunk, ChunkReport(first, len(images), coder.name, size, tried), check

    def _verify_chunk(self, coder, encoded, chunk: Chunk, images, unordered: bool):
        """The chunk decodes to ``images``, its parameters read back as written (so fields a
        decoder derives, like scheduled batch sizes, are the encoder's), or VerificationError.
        Returns the check, still running (``compress`` settles it later): the method's own, else
        a decode of the chunk in a ``Models.verifier`` thread, beside what the encoder does next
        (auto's remaining trials, the next chunk; the page kernel releases the GIL)."""
        shapes = shapes_of(images)
        parsed = Chunk(chunk.code, chunk.count, chunk.method, params=chunk.params, payload=chunk.payload)
        try:
            parsed.fields = coder.read_params(chunk.params, len(chunk.payload))
            coder.validate(parsed, shapes, self.models, unordered)
        except SerecodecError as exc:
            raise VerificationError(f"verification failed: {coder.name} parameters do not read back ({exc})") from None
        if any(encoded.fields.get(key) != value for key, value in parsed.fields.items()):
            raise VerificationError(f"verification failed: {coder.name} parameters do not read back as written")
        if encoded.verified is not None:
            return encoded.verified
        return self.models.verifier().submit(self._decodes_back, coder, parsed, shapes, images).result

    def _decodes_back(self, coder, parsed: Chunk, shapes: list, images) -> bool:
        try:
            back = coder.decode(parsed, shapes, self.models)
        except SerecodecError as exc:
            raise VerificationError(f"verification failed: {coder.name} output does not decode ({exc})") from None
        return len(back) == len(images) and all(np.array_equal(a, b) for a, b in zip(back, images))

    # -- decompress ----------------------------------------------------------------------------
    def read(self, data: bytes) -> Archive:
        """Parse and check an archive's header and its chunks' parameters without decoding any
        payload. Raises ArchiveError for a damaged header, LimitError above ``max_pixels``; a
        chunk that cannot be decoded (damaged, another coding model, an unknown table) keeps the
        reason in ``chunk.damage`` (``decompress`` raises it, ``salvage`` skips the chunk)."""
        archive = parse(data, self.max_pixels)
        for chunk in archive.chunks:
            self._check_chunk(archive, chunk)
        return archive

    def _check_chunk(self, archive: Archive, chunk: Chunk) -> None:
        try:
            method = by_code(chunk.code)
        except ArchiveError as exc:
            chunk.damage = chunk.damage or f"{exc} (written by a newer serecodec?)"
            return
        chunk.method = method.name
        if chunk.damage:
            return
        try:
            if archive.version == 4:
                chunk.fields = method.read_params(chunk.params, len(chunk.payload))
            method.validate(chunk, archive.chunk_shapes(chunk), self.models, archive.unordered)
        except ModelUnavailable as exc:
            chunk.damage, chunk.unavailable = str(exc), True
        except ArchiveError as exc:
            chunk.damage = str(exc)

    def decompress(self, data: bytes, progress: Optional[Callable[[int], None]] = None) -> Union[np.ndarray, list]:
        """The images of an archive, verified against its checksums: an (N, H, W) uint8 array when
        all have one size, else a list of (H, W) arrays. Raises ArchiveError on any damage."""
        return self.decompress_archive(self.read(data), progress)

    def decompress_archive(self, archive: Archive, progress: Optional[Callable[[int], None]] = None):
        """Decode a parsed archive (from ``read``), every chunk verified against its checksum."""
        images: list = []
        with self.models.limited():               # one BLAS setting for every worker thread
            for chunk_images in self._each(lambda chunk: self.decode_chunk(archive, chunk), archive.chunks,
                                           preload=False):
                images += chunk_images
                if progress:
                    progress(len(chunk_images))
        return assemble(images, archive.uniform_shape)

    def decode_chunk(self, archive: Archive, chunk: Chunk) -> list:
        """One chunk's images, verified; ArchiveError naming the chunk when it cannot be."""
        if not chunk.damage:
            try:
                images = list(by_code(chunk.code).decode(chunk, archive.chunk_shapes(chunk), self.models))
                if len(images) != chunk.count:
                    raise ArchiveError("corrupted archive: a chunk decoded to the wrong number of images")
                if archive.inverted is not None:
                    images = with_polarity(images, archive.inverted[chunk.first:chunk.first + chunk.count])
                archive.verify_chunk(chunk, images)
                return images
            except ArchiveError as exc:
                chunk.damage = str(exc)
        if len(archive.chunks) == 1:
            raise ArchiveError(chunk.damage)
        reason = chunk.damage.removeprefix("corrupted archive: ")
        raise ArchiveError(f"corrupted archive: chunk {archive.chunks.index(chunk) + 1} of {len(archive.chunks)} "
                           f"({describe_range(chunk.images)}): {reason}")

    def salvage(self, data: Union[bytes, Archive], progress: Optional[Callable[[int], None]] = None) -> Salvage:
        """Every image of every intact chunk (``data``: bytes, or an Archive from ``read``); the
        lost chunks with their images and the reason. A damaged header loses everything
        (ArchiveError)."""
        archive = data if isinstance(data, Archive) else self.read(data)
        images: list = [None] * archive.count
        lost = []

        def attempt(chunk):          # (images or None, the damage): a worker's chunk is a copy
            try:
                return self.decode_chunk(archive, chunk), None
            except ArchiveError:
                return None, chunk.damage
        results = self._each(attempt, archive.chunks, preload=False)
        for number, (chunk, (decoded, damage)) in enumerate(zip(archive.chunks, results), 1):
            if decoded is None:
                chunk.damage = damage
                lost.append((number, chunk.images, damage.removeprefix("corrupted archive: ")))
            else:
                images[chunk.first:chunk.first + chunk.count] = decoded
            if progress:
                progress(chunk.count)
        return Salvage(images, lost)

    def iter_decompress(self, source: Union[bytes, BinaryIO, str]) -> Iterator:
        """Yield an archive's images chunk by chunk, each chunk verified before it is yielded
        (arrays, or lists for mixed sizes). ``source``: the archive's bytes, a path or a binary
        file; from a file a format-4 archive is read one chunk at a time, so memory stays
        bounded by one chunk. Older formats (one payload) yield all images at once."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            archive = self.read(source)
            for chunk in archive.chunks:
                yield assemble(self.decode_chunk(archive, chunk), _uniform(archive.chunk_shapes(chunk)))
            return
        if isinstance(source, str) or hasattr(source, "__fspath__"):
            try:
                handle = open(source, "rb")
            except OSError as exc:
                raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
            with handle:
                yield from self.iter_decompress(handle)
            return
        head = source.read(5)
        if head[4:5] != b"\x04":
            yield from self.iter_decompress(head + source.read())
            return
        pieces = iter_chunks(_Prefixed(head, source), self.max_pixels)
        archive = next(pieces)
        for chunk in pieces:
            self._check_chunk(archive, chunk)
            yield assemble(self.decode_chunk(archive, chunk), _uniform(archive.chunk_shapes(chunk)))


class _Prefixed:
    """A binary file whose first bytes were already read."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self.head:
            part, self.head = self.head[:size] if size >= 0 else self.head, self.head[size:] if size >= 0 else b""
            return part
        return self.rest.read(size)


def default_workers(cores: int, verify: bool) -> int:
    """Chunk workers for ``cores`` cores: one a core where they are processes (each checks its own
    chunks), else (threads) half of them to encode verified, since each worker's checks then run
    in a thread of their own (2 cores, 10k digits: one thread and its checker 512 images/s, two
    and two checkers 455)."""
    return max(1, cores // 2) if verify and not fork_available() else max(1, cores)


def _settle(method: str, check: Callable[[], bool]) -> None:
    if not check():
        raise VerificationError(f"verification failed: {method} did not decode back to its input")


def _settled(result: tuple) -> tuple:
    """An encoded chunk's (chunk, report, check) with its check run to the end (in a worker)."""
    chunk, chunk_report, check = result
    if check is not None:
        _settle(chunk_report.method, check)
    return chunk, chunk_report, None


def plan_chunks(shapes: list, chunk_pixels: int) -> list:
    """[(start, end), ...]: consecutive images gathered until a chunk holds ``chunk_pixels``."""
    spans, start, pixels = [], 0, 0
    for i, (height, width) in enumerate(shapes):
        pixels += height * width
        if pixels >= chunk_pixels:
            spans.append((start, i + 1))
            start, pixels = i + 1, 0
    if start < len(shapes):
        spans.append((start, len(shapes)))
    return spans


def describe_range(images: range) -> str:
    return f"image {images.start + 1}" if len(images) == 1 else f"images {images.start + 1}-{images.stop}"


def _uniform(shapes: list) -> Optional[tuple]:
    return shapes[0] if shapes and len(set(shapes)) == 1 else None


def assemble(images: list, uniform: Optional[tuple]):
    if uniform is not None:
        if isinstance(images, np.ndarray):
            return images.astype(np.uint8, copy=False)
        return np.stack(images).astype(np.uint8, copy=False) if images else np.zeros((0, *uniform), np.uint8)
    return [np.asarray(image, dtype=np.uint8) for image in images]


__all__ = ["Codec", "StreamWriter", "ChunkReport", "Salvage", "ArchiveError", "as_images", "resolve_coding_model"]
