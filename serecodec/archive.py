"""The archive container. Format 3 is written; formats 1 and 2 are still read.

Format 3, little-endian; "varint" is an unsigned LEB128 integer (one byte below 128):

    field                         size
    magic b"SeRe"                 4
    format version (3)            1
    payload method                1   0 deflate, 1 static context (28x28 digits), 2 adaptive
                                      context, 3 bits-back
    flags                         1   bit 0 names, bit 1 formats, bit 2 unordered, bit 3 warm start;
                                      the other bits must be 0
    method parameters                 bits-back: 16-byte model hash prefix, varint particles K,
                                      varint warm-start images, varint R + R (size, repeat) varint
                                      pairs of batch sizes; context / adaptive: 1-byte table number;
                                      deflate: nothing
    image count N                 varint
    image sizes                   varint R, then R (height, width, repeat) varint triples
    formats (flag bit 1)          varint R, then R (format code, repeat) varint pairs
    names (flag bit 0)            varint n, then n bytes: raw deflate of the N names joined by NUL
                                  (file-system bytes, so any POSIX name round-trips)
    payload                       varint n, then n bytes (the method's own stream)
    content checksum              4   CRC-32 of everything decoding restores: the pixels of every
                                      image (uint8 0/1, row-major, in order), then the bytes from
                                      the image count through the names
    archive checksum              4   CRC-32 of every byte before it

Reading checks the archive checksum before any decoding (a damaged file is refused in time
linear in its size, whatever it claims), bounds every count by what the file can hold before
allocating anything, and after decoding checks the content checksum: a wrong pixel, size, name
or format is never returned. Versions 1 and 2 carried only a CRC of the pixels; they are read
with the same bounds.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np

from .errors import ArchiveError, LimitError

MAGIC = b"SeRe"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
METHOD_CODES = {"deflate": 0, "context": 1, "adaptive": 2, "bits-back": 3}
METHODS = tuple(METHOD_CODES)
FLAG_NAMES, FLAG_FORMATS, FLAG_UNORDERED, FLAG_WARM = 1, 2, 4, 8
KNOWN_FLAGS = FLAG_NAMES | FLAG_FORMATS | FLAG_UNORDERED | FLAG_WARM
HASH_BYTES = 16
# Original file formats, by code (a format-3 archive may record one per image so that a decoder
# writes each image back in kind). Append only: a code never changes its meaning.
FORMATS = ("npy", "png", "pbm", "pgm", "ppm", "tiff", "tiff-g4", "bmp", "gif", "webp")

# Limits a reader enforces before it allocates (a writer refuses the same).
MAX_SIDE = 1 << 20                  # pixels per row or column
MAX_IMAGE_PIXELS = 1 << 28          # one image: 268 Mpixel (a 16384 x 16384 page)
MAX_TOTAL_PIXELS = 1 << 31          # one archive's decoded output, bytes of uint8 pixels
MAX_NAME_BYTES = 4096               # one stored name, as file-system bytes
# The least a payload can spend per pixel bounds how many pixels its bytes can stand for:
# deflate expands at most 1032:1; the adaptive coder's probabilities are at most 1 - 2^-16.
PIXELS_PER_PAYLOAD_BYTE = {"deflate": 8 * 1032, "adaptive": 8 * 45426, "context": 8 * 45426}
PAYLOAD_SLACK_PIXELS = 1 << 16

_PREAMBLE = struct.Struct("<4sBB")
_U32 = struct.Struct("<I")
_V1_FIXED = struct.Struct("<4sBB32sIHHII")
_V2_FLAG_NAMES, _V2_FLAG_DEFLATE, _V2_FLAG_CONTEXT = 1, 2, 4


@dataclass
class Archive:
    """An archive's header and payload; ``payload`` is the method's byte stream."""

    method: str
    sizes: list                               # run-length image sizes: [(height, width, repeat), ...]
    payload: bytes
    content_crc: int = 0
    model_hash: str = ""                      # hex prefix of the coding model's sha256 (bits-back)
    context_table: int = 0                    # which fitted table (context / adaptive)
    batch_sizes: list = field(default_factory=list)   # bits-back batches, in encoding order
    particles: int = 1                        # bits-back importance particles K
    warm_images: int = 0                      # images coded before bits-back starts (warm start)
    unordered: bool = False                   # images restored in canonical order, not as given
    names: Optional[list] = None              # one str per image (file-system encoding)
    formats: Optional[list] = None            # one format code per image
    version: int = VERSION

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

    # compatibility with the single-shape formats 1-2
    @property
    def height(self) -> int:
        return self.sizes[0][0] if self.sizes else 0

    @property
    def width(self) -> int:
        return self.sizes[0][1] if self.sizes else 0

    @property
    def names_verified(self) -> bool:
        """Whether a checksum covers the stored names: format 3 (content checksum) and format 1
        (zlib's Adler-32) do; format 2 stored them in raw deflate with none."""
        return self.version != 2

    @property
    def payload_bits(self) -> int:
        return 8 * len(self.payload)

    def made_with(self, full_hash: str) -> bool:
        """Whether this archive's (possibly shortened) model hash is that of ``full_hash``."""
        return bool(self.model_hash) and full_hash.startswith(self.model_hash)

    def meta_bytes(self) -> bytes:
        """The header fields that describe what is restored (count, sizes, formats, names)."""
        parts = [varints(self.count), varints(len(self.sizes), *(v for run in self.sizes for v in run))]
        if self.formats is not None:
            runs = run_lengths(FORMATS.index(f) for f in self.formats)
            parts.append(varints(len(runs), *(v for run in runs for v in run)))
        if self.names is not None:
            parts.append(with_length(raw_deflate(join_names(self.names))))
        return b"".join(parts)

    def to_bytes(self) -> bytes:
        if self.method not in METHOD_CODES:
            raise ValueError(f"unknown payload method {self.method!r}")
        flags = ((FLAG_NAMES if self.names is not None else 0) | (FLAG_FORMATS if self.formats is not None else 0)
                 | (FLAG_UNORDERED if self.unordered else 0) | (FLAG_WARM if self.warm_images else 0))
        parts = [_PREAMBLE.pack(MAGIC, VERSION, METHOD_CODES[self.method]), bytes([flags])]
        if self.method == "bits-back":
            runs = run_lengths(self.batch_sizes)
            parts += [bytes.fromhex(self.model_hash)[:HASH_BYTES], varints(self.particles, self.warm_images),
                      varints(len(runs), *(v for run in runs for v in run))]
        elif self.method in ("context", "adaptive"):
            parts.append(bytes([self.context_table]))
        parts += [self.meta_bytes(), with_length(bytes(self.payload)), _U32.pack(self.content_crc)]
        body = b"".join(parts)
        return body + _U32.pack(zlib.crc32(body) & 0xFFFFFFFF)

    @classmethod
    def from_bytes(cls, data: bytes, max_pixels: int = MAX_TOTAL_PIXELS) -> "Archive":
        """Parse and bounds-check; the payload is not decoded here (see ``Codec``)."""
        reader = _Reader(data)
        magic, version, code = reader.unpack(_PREAMBLE, "header")
        if magic != MAGIC:
            raise ArchiveError("not a serecodec archive (bad magic bytes)")
        if version not in READABLE_VERSIONS:
            raise ArchiveError(f"archive format version {version} is not supported "
                               f"(this reader knows {', '.join(map(str, READABLE_VERSIONS))})")
        if version == 3:
            archive = cls._from_v3(reader, code, data)
        elif version == 2:
            archive = cls._from_v2(reader, code)
        else:
            archive = cls._from_v1(reader, code)
        archive.version = version
        check_limits(archive, max_pixels)
        return archive

    @classmethod
    def _from_v3(cls, reader: "_Reader", code: int, data: bytes) -> "Archive":
        if len(data) < 15:
            raise ArchiveError("truncated archive (ends inside the header)")
        (stored,) = _U32.unpack(data[-4:])
        if zlib.crc32(data[:-4]) & 0xFFFFFFFF != stored:
            raise ArchiveError("corrupted archive: the archive checksum does not match (damaged or truncated)")
        reader.data = reader.data[:-4]
        methods = {v: k for k, v in METHOD_CODES.items()}
        if code not in methods:
            raise ArchiveError(f"unknown payload method {code}")
        method = methods[code]
        (flags,) = reader.take(1, "header")
        if flags & ~KNOWN_FLAGS:
            raise ArchiveError(f"unknown header flags {flags:#04x}")
        archive = cls(method, [], b"", unordered=bool(flags & FLAG_UNORDERED))
        if method == "bits-back":
            archive.model_hash = reader.take(HASH_BYTES, "header").hex()
            archive.particles, archive.warm_images = reader.varint("header"), reader.varint("header")
            if archive.particles < 1 or bool(archive.warm_images) != bool(flags & FLAG_WARM):
                raise ArchiveError("corrupted archive: bad bits-back parameters")
            archive.batch_sizes = reader.batch_runs()
        elif method in ("context", "adaptive"):
            archive.context_table = reader.take(1, "header")[0]
        count = reader.varint("header")
        archive.sizes = [tuple(run) for run in reader.runs("image sizes", 3, positive=True)]
        if archive.count != count:
            raise ArchiveError(f"corrupted archive: sizes given for {archive.count} images, count says {count}")
        for height, width, _ in archive.sizes:
            _check_shape(height, width, ArchiveError)
        if flags & FLAG_FORMATS:
            codes = _expand(reader.runs("formats", 2, positive=False), count, "formats")
            if any(code >= len(FORMATS) for code in codes):
                raise ArchiveError("corrupted archive: unknown image format code")
            archive.formats = [FORMATS[code] for code in codes]
        if flags & FLAG_NAMES:
            blob = reader.take(reader.varint("names length"), "names")
            archive.names = split_names(bounded_inflate(blob, count * (MAX_NAME_BYTES + 1), "names"), count)
        archive.payload = reader.take(reader.varint("payload length"), "payload")
        (archive.content_crc,) = reader.unpack(_U32, "checksum")
        if reader.remaining():
            raise ArchiveError(f"corrupted archive: {reader.remaining()} unexpected bytes before the checksum")
        return archive

    @classmethod
    def _from_v2(cls, reader: "_Reader", flags: int) -> "Archive":
        if flags & ~(_V2_FLAG_NAMES | _V2_FLAG_DEFLATE | _V2_FLAG_CONTEXT) or (
                flags & _V2_FLAG_DEFLATE and flags & _V2_FLAG_CONTEXT):
            raise ArchiveError(f"unknown header flags {flags:#04x}")
        method = "deflate" if flags & _V2_FLAG_DEFLATE else "context" if flags & _V2_FLAG_CONTEXT else "bits-back"
        archive = cls(method, [], b"")
        if method == "bits-back":
            archive.model_hash = reader.take(HASH_BYTES, "header").hex()
        if method == "context":
            archive.context_table = reader.take(1, "header")[0]
        count, height, width = reader.varint("header"), reader.varint("header"), reader.varint("header")
        _check_shape(height, width, ArchiveError)
        archive.sizes = [(height, width, count)] if count else []
        (archive.content_crc,) = reader.unpack(_U32, "header")
        if method == "bits-back":
            archive.batch_sizes = reader.batch_runs()
            if sum(archive.batch_sizes) != count:
                raise ArchiveError(f"header is inconsistent: batches hold {sum(archive.batch_sizes)} images, "
                                   f"count says {count}")
        if flags & _V2_FLAG_NAMES:
            blob = reader.take(reader.varint("names length"), "names")
            archive.names = _parse_json_names(bounded_inflate(blob, count * (MAX_NAME_BYTES + 8) + 2, "names"), count)
        length = reader.varint("payload length")
        archive.payload = reader.take(length if method == "deflate" else 4 * length, "payload")
        if reader.remaining():
            raise ArchiveError(f"{reader.remaining()} unexpected bytes after the payload")
        return archive

    @classmethod
    def _from_v1(cls, reader: "_Reader", flags: int) -> "Archive":
        reader.pos = 0
        _, _, _, digest, count, height, width, crc, nbatch = reader.unpack(_V1_FIXED, "header")
        (length,) = reader.unpack(_U32, "batch sizes length")
        raw = bounded_inflate(reader.take(length, "batch sizes"), 2 * nbatch, "batch sizes", zlib_container=True)
        if len(raw) != 2 * nbatch:
            raise ArchiveError("batch sizes are corrupted")
        sizes = np.frombuffer(raw, dtype="<u2").astype(int).tolist()
        deflate = bool(flags & _V2_FLAG_DEFLATE)
        if sum(sizes) != (0 if deflate else count):     # a deflate payload has no batches
            raise ArchiveError(f"header is inconsistent: batches hold {sum(sizes)} images, count says {count}")
        _check_shape(height, width, ArchiveError)
        names = None
        if flags & _V2_FLAG_NAMES:
            (length,) = reader.unpack(_U32, "names length")
            blob = reader.take(length, "names")
            names = _parse_json_names(bounded_inflate(blob, count * (MAX_NAME_BYTES + 8) + 2, "names",
                                                      zlib_container=True), count)
        (length,) = reader.unpack(_U32, "payload length")
        payload = reader.take(length if deflate else 4 * length, "payload")
        if reader.remaining():
            raise ArchiveError(f"{reader.remaining()} unexpected bytes after the payload")
        return cls("deflate" if deflate else "bits-back", [(height, width, count)] if count else [], payload,
                   content_crc=crc, model_hash="" if deflate else digest.hex(), batch_sizes=sizes, names=names)

    def content_checksum(self, images: Iterable[np.ndarray]) -> int:
        """The checksum of what decoding restores: pixels, then (format 3) sizes, formats and names."""
        checksum = ContentChecksum()
        for image in images:
            checksum.update(image)
        return checksum.value(self.meta_bytes() if self.version >= 3 else b"")

    def verify(self, images: Iterable[np.ndarray]) -> None:
        if self.content_checksum(images) != self.content_crc:
            raise ArchiveError("corrupted archive: the decoded images fail the content checksum")


class ContentChecksum:
    """CRC-32 over images as they are coded (streams and batches), closed by the header's meta bytes."""

    def __init__(self) -> None:
        self.crc = 0

    def update(self, image: np.ndarray) -> None:
        self.crc = zlib.crc32(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), self.crc)

    def value(self, meta: bytes = b"") -> int:
        return zlib.crc32(meta, self.crc) & 0xFFFFFFFF


def check_limits(archive: Archive, max_pixels: int = MAX_TOTAL_PIXELS) -> None:
    """Refuse, before allocating, an archive whose output exceeds the limit or its payload's capacity."""
    pixels = archive.pixels
    if pixels > max_pixels:
        raise LimitError(f"archive would decode to {pixels:,} pixels, above the limit of {max_pixels:,}")
    per_byte = PIXELS_PER_PAYLOAD_BYTE.get(archive.method)
    if per_byte and pixels > per_byte * len(archive.payload) + PAYLOAD_SLACK_PIXELS:
        raise ArchiveError(f"corrupted archive: {len(archive.payload)} payload bytes cannot hold {pixels:,} pixels")
    if archive.method == "bits-back" and archive.count - archive.warm_images > 8 * len(archive.payload) + 64:
        raise ArchiveError(f"corrupted archive: {len(archive.payload)} payload bytes cannot hold {archive.count} images")


def _check_shape(height: int, width: int, error=ArchiveError) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE) or height * width > MAX_IMAGE_PIXELS:
        raise error(f"image size {width}x{height} is outside the supported range "
                    f"(1..{MAX_SIDE} a side, at most {MAX_IMAGE_PIXELS:,} pixels)")


def check_image_shape(height: int, width: int) -> None:
    """What a writer accepts: the same range a reader does."""
    _check_shape(height, width, LimitError)


def _expand(runs: list, count: int, what: str) -> list:
    total = sum(repeat for _, repeat in runs)
    if total != count:
        raise ArchiveError(f"corrupted archive: {what} given for {total} images, count says {count}")
    return [value for value, repeat in runs for _ in range(repeat)]


def size_runs(shapes: Iterable) -> list:
    """[(height, width, repeat), ...] for consecutive equal sizes."""
    runs: list = []
    for height, width in shapes:
        if runs and runs[-1][0] == height and runs[-1][1] == width:
            runs[-1][2] += 1
        else:
            runs.append([int(height), int(width), 1])
    return [tuple(run) for run in runs]


def run_lengths(values) -> list:
    """[(value, repeat), ...] for consecutive equal values."""
    runs: list = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([int(value), 1])
    return runs


def varints(*values: int) -> bytes:
    """Unsigned LEB128: seven bits a byte, high bit set on all but the last."""
    out = bytearray()
    for value in values:
        value = int(value)
        if value < 0:
            raise ValueError("varints are unsigned")
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                break
    return bytes(out)


def with_length(blob: bytes) -> bytes:
    return varints(len(blob)) + blob


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return packer.compress(data) + packer.flush()


def bounded_inflate(blob: bytes, limit: int, what: str, zlib_container: bool = False) -> bytes:
    """Inflate at most ``limit`` bytes: a deflate bomb is refused, not expanded."""
    limit = min(limit, 1 << 30)          # nothing an archive holds inflates beyond this
    inflater = zlib.decompressobj(15 if zlib_container else -15)
    try:
        out = inflater.decompress(blob, limit + 1)
    except zlib.error:
        raise ArchiveError(f"corrupted archive: the {what} do not inflate") from None
    if len(out) > limit:
        raise ArchiveError(f"corrupted archive: the {what} inflate beyond what the header allows")
    if not inflater.eof or inflater.unused_data:
        raise ArchiveError(f"corrupted archive: the {what} are truncated or followed by junk")
    return out


def name_bytes(name: str) -> bytes:
    """A stored name as file-system bytes (surrogate escapes restore undecodable POSIX names)."""
    try:
        return os.fsencode(name)
    except UnicodeError:
        raise ArchiveError(f"name {name!r} cannot be stored") from None


def join_names(names: Sequence[str]) -> bytes:
    return b"\0".join(name_bytes(name) for name in names)


def split_names(raw: bytes, count: int) -> list:
    parts = raw.split(b"\0") if count else ([] if not raw else [raw, b""])
    if len(parts) != count or any(not part or len(part) > MAX_NAME_BYTES for part in parts):
        raise ArchiveError("corrupted archive: the file names do not match the image count")
    return [os.fsdecode(part) for part in parts]


def _parse_json_names(raw: bytes, count: int) -> list:
    """Formats 1-2 stored names as a JSON list of strings."""
    try:
        names = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ArchiveError("file names are corrupted") from None
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, str) and n for n in names):
        raise ArchiveError("file names are corrupted")
    return names


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise ArchiveError(f"truncated archive (ends inside the {what})")
        chunk = bytes(self.data[self.pos:self.pos + size])
        self.pos += size
        return chunk

    def unpack(self, fmt: struct.Struct, what: str):
        return fmt.unpack(self.take(fmt.size, what))

    def varint(self, what: str) -> int:
        value, shift = 0, 0
        while True:
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ArchiveError(f"corrupted archive (overlong number in the {what})")

    def runs(self, what: str, width: int, positive: bool) -> list:
        """varint R, then R tuples of ``width`` varints; the last of each is a repeat count >= 1."""
        count = self.varint(what)
        if count * width > self.remaining():      # each varint takes at least one byte
            raise ArchiveError(f"truncated archive (ends inside the {what})")
        runs = []
        for _ in range(count):
            run = [self.varint(what) for _ in range(width)]
            if run[-1] == 0 or (positive and min(run) == 0):
                raise ArchiveError(f"corrupted archive: bad {what}")
            runs.append(run)
        return runs

    def batch_runs(self) -> list:
        """Run-length batch sizes, expanded only if the rest of the file can pay for that many
        batches (each holds at least one image of at least one bit)."""
        runs = self.runs("batch sizes", 2, positive=True)
        if sum(repeat for _, repeat in runs) > 8 * self.remaining():
            raise ArchiveError("corrupted archive: more batches than the payload can hold")
        return [size for size, repeat in runs for _ in range(repeat)]

    def remaining(self) -> int:
        return len(self.data) - self.pos


def deflate_pixels(images: Iterable[np.ndarray]) -> bytes:
    """Raw deflate (no zlib/gzip container) of all images' packed 0/1 pixels, row-major, in order."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    bits = np.concatenate([np.ascontiguousarray(image, dtype=np.uint8).reshape(-1) for image in images])
    return packer.compress(np.packbits(bits).tobytes()) + packer.flush()


def inflate_pixels(payload: bytes, shapes: Sequence) -> list:
    """The inverse of ``deflate_pixels`` for images of the given (height, width) shapes."""
    total = sum(h * w for h, w in shapes)
    packed = bounded_inflate(payload, (total + 7) // 8, "pixels")
    if len(packed) != (total + 7) // 8:
        raise ArchiveError("corrupted archive: the deflate payload has the wrong length")
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:total]
    return split_flat(bits, shapes)


def split_flat(flat: np.ndarray, shapes: Sequence) -> list:
    """Cut a flat pixel run into images of the given shapes."""
    out, start = [], 0
    for height, width in shapes:
        out.append(flat[start:start + height * width].reshape(height, width))
        start += height * width
    return out
