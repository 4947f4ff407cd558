"""The archive container: a small fixed header, optional names, batch sizes, ANS payload.

Layout (little-endian):

    offset  size  field
    0       4     magic b"SeRe"
    4       1     format version (1)
    5       1     flags: bit 0 = names present; bit 1 = deflate payload (see below)
    6       32    sha256 content hash of the coding model
    38      4     image count N
    42      2     image height, 2 width
    46      4     CRC-32 of the decoded pixels (N·H·W bytes of 0/1, row-major)
    50      4     number of batches B
    54      4+m   byte length m, then the zlib-compressed uint16 batch sizes, in encoding order
                  (compressed because a stream appended image by image has one batch per image)
    ...     4+n   if names: byte length n, then the zlib-compressed UTF-8 JSON list of N names
    ...     4+4w  payload length w in 32-bit words, then the ANS words; or, with flag bit 1,
                  byte length w, then raw deflate of the packed pixel bits (np.packbits of the
                  N·H·W 0/1 pixels) — chosen for tiny archives, where the initial bits of
                  bits-back coding cost more than a classical coder

Every read is bounds-checked, so a truncated or corrupted archive gives a clear error rather
than garbage; the CRC and the bits-back stack check catch the rest.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

MAGIC = b"SeRe"
VERSION = 1
FLAG_NAMES = 1
FLAG_DEFLATE = 2
_FIXED = struct.Struct("<4sBB32sIHHII")


class ArchiveError(ValueError):
    """The bytes are not a readable archive; the message says why."""


@dataclass
class Archive:
    model_hash: str
    count: int
    height: int
    width: int
    pixel_crc: int
    batch_sizes: list
    payload: np.ndarray                      # uint32 ANS words, or uint8 deflate bytes
    names: Optional[list] = field(default=None)
    method: str = "bits-back"                # or "deflate"

    @property
    def payload_bits(self) -> int:
        return 8 * self.payload.nbytes

    def to_bytes(self) -> bytes:
        flags = (FLAG_NAMES if self.names is not None else 0) | (FLAG_DEFLATE if self.method == "deflate" else 0)
        parts = [_FIXED.pack(MAGIC, VERSION, flags, bytes.fromhex(self.model_hash), self.count, self.height,
                             self.width, self.pixel_crc, len(self.batch_sizes)),
                 _with_length(zlib.compress(np.asarray(self.batch_sizes, dtype="<u2").tobytes(), 9))]
        if self.names is not None:
            encoded = zlib.compress(json.dumps(self.names, ensure_ascii=False).encode("utf-8"), 9)
            parts += [struct.pack("<I", len(encoded)), encoded]
        dtype = "u1" if self.method == "deflate" else "<u4"
        parts += [struct.pack("<I", len(self.payload)), np.asarray(self.payload, dtype=dtype).tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Archive":
        reader = _Reader(data)
        magic, version, flags, digest, count, height, width, crc, nbatch = reader.unpack(_FIXED, "header")
        if magic != MAGIC:
            raise ArchiveError("not a serecodec archive (bad magic bytes)")
        if version != VERSION:
            raise ArchiveError(f"archive format version {version} is not supported (this reader knows {VERSION})")
        (length,) = reader.unpack(struct.Struct("<I"), "batch sizes length")
        try:
            raw = zlib.decompress(reader.take(length, "batch sizes"))
        except zlib.error:
            raise ArchiveError("batch sizes are corrupted") from None
        if len(raw) != 2 * nbatch:
            raise ArchiveError("batch sizes are corrupted")
        sizes = np.frombuffer(raw, dtype="<u2").astype(int).tolist()
        expected = 0 if flags & FLAG_DEFLATE else count     # a deflate payload has no batches
        if sum(sizes) != expected:
            raise ArchiveError(f"header is inconsistent: batches hold {sum(sizes)} images, count says {count}")
        names = None
        if flags & FLAG_NAMES:
            (length,) = reader.unpack(struct.Struct("<I"), "names length")
            try:
                names = json.loads(zlib.decompress(reader.take(length, "names")).decode("utf-8"))
            except (zlib.error, UnicodeDecodeError, json.JSONDecodeError):
                raise ArchiveError("file names are corrupted") from None
            if not isinstance(names, list) or len(names) != count:
                raise ArchiveError("file names are corrupted")
        (words,) = reader.unpack(struct.Struct("<I"), "payload length")
        if flags & FLAG_DEFLATE:
            method, payload = "deflate", np.frombuffer(reader.take(words, "payload"), dtype=np.uint8).copy()
        else:
            method = "bits-back"
            payload = np.frombuffer(reader.take(4 * words, "payload"), dtype="<u4").astype(np.uint32)
        if reader.remaining():
            raise ArchiveError(f"{reader.remaining()} unexpected bytes after the payload")
        return cls(digest.hex(), count, height, width, crc, sizes, payload, names, method)


def _with_length(blob: bytes) -> bytes:
    return struct.pack("<I", len(blob)) + blob


def pixel_crc(images: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(images, dtype=np.uint8).tobytes()) & 0xFFFFFFFF


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

    def remaining(self) -> int:
        return len(self.data) - self.pos


def deflate_pixels(images: np.ndarray) -> np.ndarray:
    """Raw deflate (no zlib/gzip container) of the packed 0/1 pixels, as uint8."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    packed = np.packbits(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1)).tobytes()
    return np.frombuffer(packer.compress(packed) + packer.flush(), dtype=np.uint8).copy()


def inflate_pixels(payload: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    total = count * height * width
    try:
        packed = zlib.decompress(payload.tobytes(), -15)
    except zlib.error:
        raise ArchiveError("corrupted archive: the deflate payload does not inflate") from None
    if len(packed) != (total + 7) // 8:
        raise ArchiveError("corrupted archive: the deflate payload has the wrong length")
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:total].reshape(count, height, width)
