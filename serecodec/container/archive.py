"""The archive container, format 4: a header, then independent chunks. Formats 1-3 are read by
``legacy``; both give the same ``Archive`` of ``Chunk``s, so everything above decodes one way.

Format 4, little-endian; "varint" is an unsigned LEB128 integer (one byte below 128):

    field                         size
    magic b"SeRe"                 4
    format version (4)            1
    flags                         1   bit 0 names, bit 1 formats, bit 2 unordered, bit 3 polarity,
                                      bit 4 arrays, bit 5 file headers, bit 6 pages; others 0
    header length H               varint, the bytes of the header body that follows
    header body                   H   image count N (varint); image sizes: varint R, then R
                                      (height, width, repeat) varint triples; formats (flag bit 1):
                                      varint R, then R (format code, repeat) pairs; names (flag
                                      bit 0): varint n, then n bytes of raw deflate of the N names
                                      joined by NUL; polarity (bit 3): varint R, then R (inverted
                                      0/1, repeat) pairs; arrays (bit 4): varint A, then per .npy
                                      source its dtype (varint length + ASCII), varints value of a
                                      1, ndim and dims; file headers (bit 5): varint n, then n bytes
                                      of raw deflate of N length-prefixed headers; pages (bit 6):
                                      varint G, then per multi-page file varints (images skipped
                                      since the previous file's last page, page count >= 2);
                                      chunk count C
                                      (varint), then per chunk: image count, method code, body
                                      length (varints)
    header checksum               4   CRC-32 of every byte before it
    C chunk bodies                    each: varint m, then m bytes of the method's parameters;
                                      the method's payload (the rest of the body but 8 bytes);
                                      content checksum: CRC-32 of the chunk's decoded pixels (uint8
                                      0/1, row-major, images in order) continued over the header
                                      body's stored bytes before the chunk index; CRC-32 of the
                                      body's bytes before it

Chunks follow each other in image order, each coding its run of images on its own (its own
bits-back stack and warm start), so one damaged chunk loses only its images, chunks decode one
at a time (streaming, memory bounded by a chunk) or in parallel, and the header indexes them
by image range and byte range. Each chunk's content checksum covers everything decoding restores
of it: its pixels and everything the header restores (as stored, so a re-sealed header with
other names fails every chunk).
Reading checks a checksum before it uses the bytes under it, and bounds every count by what the
file can hold before allocating anything.

The container knows nothing of methods: a chunk carries a method code, the method's parameter
bytes and its payload; ``serecodec.methods`` gives them meaning.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, Optional

import numpy as np

from ..errors import ArchiveError, LimitError
from .limits import MAX_CHUNKS, MAX_NAME_BYTES, MAX_TOTAL_PIXELS, check_shape
from .wire import (U32, Reader, bounded_inflate, encode_runs, expand_runs, join_names, raw_deflate, run_lengths,
                   split_names, varints, with_length)

MAGIC = b"SeRe"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
FLAG_NAMES, FLAG_FORMATS, FLAG_UNORDERED, FLAG_INVERTED, FLAG_ARRAYS, FLAG_HEADERS, FLAG_PAGES = 1, 2, 4, 8, 16, 32, 64
KNOWN_FLAGS = FLAG_NAMES | FLAG_FORMATS | FLAG_UNORDERED | FLAG_INVERTED | FLAG_ARRAYS | FLAG_HEADERS | FLAG_PAGES
MAX_FILE_HEADER = 1 << 16         # bytes of one image file's own header kept (a PBM's, with its comments)
MAX_ARRAY_DIMS = 8
MAX_DTYPE_BYTES = 32
# Original file formats, by code (an archive may record one per image so that a decoder writes
# each image back in kind). Append only: a code never changes its meaning.
FORMATS = ("npy", "png", "pbm", "pgm", "ppm", "tiff", "tiff-g4", "bmp", "gif", "webp", "tiff-g3")

PREAMBLE = struct.Struct("<4sBB")
MAX_HEADER_BYTES = 1 << 30


@dataclass
class Chunk:
    """A run of images coded on its own: ``code`` names the payload method (``serecodec.methods``),
    ``params`` are that method's header bytes, parsed by it into ``fields``."""

    code: int
    count: int                               # images in the chunk
    method: str = ""                         # the method's name (set by whoever knows the code)
    first: int = 0                           # index of its first image in the archive
    params: bytes = b""
    payload: bytes = b""
    pixel_crc: Optional[int] = None          # writing: CRC-32 of its pixels (content_crc follows from it)
    content_crc: Optional[int] = None        # as stored (format 4; None: formats 1-3, the archive's checksum)
    fields: dict = field(default_factory=dict)
    damage: str = ""                         # why the chunk cannot be decoded ("" when intact)
    unavailable: bool = False                # ... because a model it needs is not here (not damage)

    @property
    def images(self) -> range:
        return range(self.first, self.first + self.count)


@dataclass
class Archive:
    """What an archive restores (sizes, names, formats) and its chunks."""

    sizes: list                               # run-length image sizes: [(height, width, repeat), ...]
    chunks: list = field(default_factory=list)
    names: Optional[list] = None              # one str per image (file-system encoding)
    formats: Optional[list] = None            # one format name per image
    unordered: bool = False                   # images restored in canonical order, not as given
    version: int = VERSION
    inverted: Optional[list] = None           # per image: coded as 1 - pixels (its background was 1)
    arrays: Optional[list] = None             # [(dtype str, shape, value of a 1)] of the .npy files the images came from
    headers: Optional[list] = None            # per image: its file's own header bytes (PBM/PGM), b"" for none
    pages: Optional[list] = None              # [(first, end)] image runs that are the pages of one file (TIFF, GIF)
    content_crc: int = 0                      # formats 1-3: the one checksum of what is restored
    total_bytes: int = 0
    meta_raw: bytes = b""                     # reading format 4: the stored bytes from the count through the names

    @property
    def count(self) -> int:
        return sum(repeat for _, _, repeat in self.sizes)

    @property
    def shapes(self) -> list:
        """One (height, width) per image."""
        return [(h, w) for h, w, repeat in self.sizes for _ in range(repeat)]

    @property
    def pixels(self) -> int:
        return sum(h * w * repeat for h, w, repeat in self.sizes)

    @property
    def uniform_shape(self) -> Optional[tuple]:
        """(height, width) when every image has it, else None."""
        shapes = {(h, w) for h, w, _ in self.sizes}
        return shapes.pop() if len(shapes) == 1 else None

    @property
    def method(self) -> str:
        """The chunks' payload method, or "mixed: a, b" when they differ."""
        names = sorted({chunk.method for chunk in self.chunks})
        return names[0] if len(names) == 1 else "mixed: " + ", ".join(names) if names else "none"

    @property
    def names_verified(self) -> bool:
        """Whether a checksum covers the stored names: formats 1, 3 and 4 do; format 2 stored
        them in raw deflate with none."""
        return self.version != 2

    @property
    def payload_bits(self) -> int:
        return sum(8 * len(chunk.payload) for chunk in self.chunks)

    def fields_of(self, key: str) -> list:
        """One chunk field (a method's, e.g. "batch_sizes") from every chunk that has it."""
        return [chunk.fields[key] for chunk in self.chunks if key in chunk.fields]

    def chunk_shapes(self, chunk: Chunk) -> list:
        return self.shapes[chunk.first:chunk.first + chunk.count]

    def meta_bytes(self) -> bytes:
        """The header fields that describe what is restored (count, sizes, formats, names)."""
        parts = [varints(self.count), encode_runs(self.sizes)]
        if self.formats is not None:
            parts.append(encode_runs(run_lengths(FORMATS.index(f) for f in self.formats)))
        if self.names is not None:
            parts.append(with_length(raw_deflate(join_names(self.names))))
        if self.inverted is not None:
            parts.append(encode_runs(run_lengths(int(bool(v)) for v in self.inverted)))
        if self.arrays is not None:
            parts.append(varints(len(self.arrays)))
            for dtype, shape, one in self.arrays:
                parts += [with_length(dtype.encode("ascii")), varints(one, len(shape), *shape)]
        if self.headers is not None:
            parts.append(with_length(raw_deflate(b"".join(with_length(h) for h in self.headers))))
        if self.pages is not None:
            parts.append(varints(len(self.pages)))
            previous = 0
            for first, end in self.pages:
                parts.append(varints(first - previous, end - first))
                previous = end
        return b"".join(parts)

    # -- format 4 ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The archive in format 4; each chunk needs ``params``, ``payload`` and ``content_crc``."""
        flags = ((FLAG_NAMES if self.names is not None else 0) | (FLAG_FORMATS if self.formats is not None else 0)
                 | (FLAG_UNORDERED if self.unordered else 0) | (FLAG_INVERTED if self.inverted is not None else 0)
                 | (FLAG_ARRAYS if self.arrays is not None else 0) | (FLAG_HEADERS if self.headers is not None else 0)
                 | (FLAG_PAGES if self.pages is not None else 0))
        meta = self.meta_bytes()
        for chunk in self.chunks:
            if chunk.pixel_crc is not None:
                chunk.content_crc = zlib.crc32(meta, chunk.pixel_crc) & 0xFFFFFFFF
        bodies = [chunk_body(chunk) for chunk in self.chunks]
        index = [varints(len(self.chunks))] + [varints(c.count, c.code, len(b)) for c, b in zip(self.chunks, bodies)]
        header = meta + b"".join(index)
        start = PREAMBLE.pack(MAGIC, VERSION, flags) + varints(len(header)) + header
        return b"".join([start, U32.pack(zlib.crc32(start) & 0xFFFFFFFF)] + bodies)

    def verify_chunk(self, chunk: Chunk, images: Iterable[np.ndarray]) -> None:
        """Raise ArchiveError unless ``images`` are what ``chunk`` was made from."""
        if chunk.content_crc is None:                 # formats 1-3: one checksum over everything
            checksum = pixel_crc(images)
            meta = self.meta_bytes() if self.version == 3 else b""
            if zlib.crc32(meta, checksum) & 0xFFFFFFFF != self.content_crc:
                raise ArchiveError("corrupted archive: the decoded images fail the content checksum")
        elif zlib.crc32(self.meta_raw, pixel_crc(images)) & 0xFFFFFFFF != chunk.content_crc:
            raise ArchiveError(f"corrupted archive: chunk {self.chunks.index(chunk) + 1} of {len(self.chunks)} "
                               f"fails its pixel checksum")


def chunk_body(chunk: Chunk) -> bytes:
    body = with_length(chunk.params) + bytes(chunk.payload) + U32.pack(chunk.content_crc)
    return body + U32.pack(zlib.crc32(body) & 0xFFFFFFFF)


def pixel_crc(images: Iterable[np.ndarray], crc: int = 0) -> int:
    """CRC-32 of images' uint8 0/1 pixels, row-major, in order."""
    for image in images:
        crc = zlib.crc32(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), crc)
    return crc & 0xFFFFFFFF


def _read_pages(reader: Reader, count: int) -> list:
    groups = reader.varint("pages")
    if 2 * groups > count:
        raise ArchiveError("corrupted archive: more multi-page files than the images can fill")
    pages, previous = [], 0
    for _ in range(groups):
        first = previous + reader.varint("pages")
        end = first + reader.varint("pages")
        if end - first < 2 or end > count:
            raise ArchiveError("corrupted archive: a multi-page file's pages do not fit the images")
        pages.append((first, end))
        previous = end
    return pages


def check_pixels(archive: Archive, max_pixels: int) -> None:
    pixels = archive.pixels
    if pixels > max_pixels:
        raise LimitError(f"archive would decode to {pixels:,} pixels, above the limit of {max_pixels:,}")


def parse_header(head: bytes) -> tuple:
    """The format-4 header of ``head`` (which holds at least the header): (Archive, chunk byte spans)."""
    reader = Reader(head)
    _, _, flags = reader.unpack(PREAMBLE, "header")
    size = reader.varint("header")
    start = reader.pos
    end = start + size
    if size > MAX_HEADER_BYTES or end + 4 > len(head):
        raise ArchiveError("truncated archive (ends inside the header)")
    (stored,) = U32.unpack_from(head, end)
    if zlib.crc32(head[:end]) & 0xFFFFFFFF != stored:
        raise ArchiveError("corrupted archive: the header checksum does not match (damaged or truncated)")
    if flags & ~KNOWN_FLAGS:
        raise ArchiveError(f"unknown header flags {flags:#04x}")
    reader = Reader(head[start:end])
    archive = Archive([], unordered=bool(flags & FLAG_UNORDERED))
    count = read_meta(archive, reader, flags & FLAG_FORMATS, flags & FLAG_NAMES)
    if flags & FLAG_INVERTED:
        codes = expand_runs(reader.runs("polarity", 2, positive=False), count, "polarity")
        if any(code > 1 for code in codes):
            raise ArchiveError("corrupted archive: bad polarity")
        archive.inverted = [bool(code) for code in codes]
    if flags & FLAG_ARRAYS:
        archive.arrays = _read_arrays(reader)
    if flags & FLAG_HEADERS:
        blob = reader.take(reader.varint("file headers"), "file headers")
        raw = Reader(bounded_inflate(blob, count * (MAX_FILE_HEADER + 3), "file headers"))
        archive.headers = []
        for _ in range(count):
            size = raw.varint("file headers")
            if size > MAX_FILE_HEADER:
                raise ArchiveError("corrupted archive: a file header is too long")
            archive.headers.append(raw.take(size, "file headers"))
        if raw.remaining():
            raise ArchiveError("corrupted archive: unexpected bytes in the file headers")
    if flags & FLAG_PAGES:
        archive.pages = _read_pages(reader, count)
    archive.meta_raw = bytes(reader.data[:reader.pos])
    chunks = reader.varint("chunk index")
    if chunks > MAX_CHUNKS or 3 * chunks > reader.remaining():
        raise ArchiveError("corrupted archive: more chunks than the header can index")
    spans, first, offset = [], 0, end + 4
    for _ in range(chunks):
        images, code, length = (reader.varint("chunk index") for _ in range(3))
        if images == 0 or first + images > count or length < 9:
            raise ArchiveError("corrupted archive: the chunk index does not match the image count")
        archive.chunks.append(Chunk(code, images, first=first))
        spans.append((offset, offset + length))
        first, offset = first + images, offset + length
    if first != count:
        raise ArchiveError(f"corrupted archive: the chunks hold {first} images, the header says {count}")
    if reader.remaining():
        raise ArchiveError("corrupted archive: unexpected bytes in the header")
    return archive, spans


def read_meta(archive: Archive, reader: Reader, has_formats: int, has_names: int) -> int:
    """Count, sizes, formats and names (format 3's and 4's layout) into ``archive``; returns the count."""
    count = reader.varint("header")
    archive.sizes = [tuple(run) for run in reader.runs("image sizes", 3, positive=True)]
    if archive.count != count:
        raise ArchiveError(f"corrupted archive: sizes given for {archive.count} images, count says {count}")
    for height, width, _ in archive.sizes:
        check_shape(height, width, ArchiveError)
    if has_formats:
        codes = expand_runs(reader.runs("formats", 2, positive=False), count, "formats")
        if any(code >= len(FORMATS) for code in codes):
            raise ArchiveError("corrupted archive: unknown image format code")
        archive.formats = [FORMATS[code] for code in codes]
    if has_names:
        blob = reader.take(reader.varint("names length"), "names")
        archive.names = split_names(bounded_inflate(blob, count * (MAX_NAME_BYTES + 1), "names"), count)
    return count


def _read_arrays(reader: Reader) -> list:
    count = reader.varint("arrays")
    if count > reader.remaining():
        raise ArchiveError("truncated archive (ends inside the arrays)")
    arrays = []
    for _ in range(count):
        size = reader.varint("arrays")
        if size > MAX_DTYPE_BYTES:
            raise ArchiveError("corrupted archive: bad array type")
        try:
            dtype = reader.take(size, "arrays").decode("ascii")
        except UnicodeDecodeError:
            raise ArchiveError("corrupted archive: bad array type") from None
        one, ndim = reader.varint("arrays"), reader.varint("arrays")
        if ndim > MAX_ARRAY_DIMS or one not in (1, 255):
            raise ArchiveError("corrupted archive: bad array shape")
        arrays.append((dtype, tuple(reader.varint("arrays") for _ in range(ndim)), one))
    return arrays


def fill_chunk(chunk: Chunk, body: bytes) -> None:
    """The chunk's parameters, payload and pixel checksum from its body, or ``damage`` set."""
    (stored,) = U32.unpack_from(body, len(body) - 4)
    if zlib.crc32(body[:-4]) & 0xFFFFFFFF != stored:
        chunk.damage = "corrupted archive: the chunk checksum does not match (damaged)"
        return
    reader = Reader(body[:-8])
    try:
        chunk.params = reader.take(reader.varint("chunk parameters"), "chunk parameters")
    except ArchiveError as exc:
        chunk.damage = str(exc)
        return
    chunk.payload = reader.rest()
    (chunk.content_crc,) = U32.unpack_from(body, len(body) - 8)


def iter_chunks(stream: BinaryIO, max_pixels: int = MAX_TOTAL_PIXELS) -> Iterator:
    """Read a format-4 archive from a binary file one chunk at a time: yields the Archive (its
    header, chunks not yet filled) first, then each Chunk as its bytes arrive. Memory: the header
    and one chunk."""
    start = _read_exact(stream, PREAMBLE.size, "header")
    magic, version, _ = PREAMBLE.unpack(start)
    length = b""
    while len(length) < 10 and (not length or length[-1] & 0x80):
        length += _read_exact(stream, 1, "header")
    start += length
    size = Reader(length).varint("header")
    if magic != MAGIC:
        raise ArchiveError("not a serecodec archive (bad magic bytes)")
    if version != 4:
        raise ArchiveError(f"format {version}: only format-4 archives stream chunk by chunk")
    if size > MAX_HEADER_BYTES:
        raise ArchiveError("corrupted archive: the header length is impossible")
    head = start + _read_exact(stream, size + 4, "header")
    archive, spans = parse_header(head)
    check_pixels(archive, max_pixels)
    yield archive
    for chunk, (begin, end) in zip(archive.chunks, spans):
        fill_chunk(chunk, _read_exact(stream, end - begin, "chunk"))
        yield chunk
    if stream.read(1):
        raise ArchiveError("corrupted archive: bytes after the last chunk")


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    parts, left = [], size
    while left:
        part = stream.read(min(left, 1 << 24))        # never one allocation of a hostile size
        if not part:
            raise ArchiveError(f"truncated archive (ends inside the {what})")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
