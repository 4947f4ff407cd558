"""The archive container: a compact header, optional names, batch sizes, payload.

Version 2 (written), little-endian; "varint" is an unsigned LEB128 integer (1 byte below 128):

    field                         size
    magic b"SeRe"                 4
    format version (2)            1
    flags                         1   bit 0 = names present; bit 1 = deflate payload;
                                      bit 2 = context-model payload
    coding-model hash             16  first 16 bytes of its sha256 (bits-back payload only)
    context table number          1   (context payload only)
    image count N, height, width  3 varints
    CRC-32 of the decoded pixels  4   (N·H·W bytes of 0/1, row-major)
    batch sizes                   varint R, then R (size, repeat) varint pairs: the run-length
                                  coded sizes, in encoding order (bits-back payload only)
    names                         varint n, then n bytes of raw-deflated UTF-8 JSON (flag bit 0)
    payload                       varint w, then w 32-bit ANS words; or, with flag bit 1,
                                  w bytes of raw deflate of the packed pixel bits
                                  (np.packbits of the N·H·W 0/1 pixels); or, with flag bit 2,
                                  w 32-bit range-coder words of the static context model
                                  (context_model.py)

A one-image context or deflate archive thus spends 15 or 14 bytes on its header where version 1
spent 62 (a gzip file spends 18); small archives are where those methods win over the ~1000
initial bits of bits-back coding. Version 1 (fixed 32-bit fields, full 32-byte hash, no context
payload) is still read.

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
VERSION = 2
READABLE_VERSIONS = (1, 2)
FLAG_NAMES = 1
FLAG_DEFLATE = 2
FLAG_CONTEXT = 4
METHODS = ("bits-back", "deflate", "context")
HASH_BYTES = 16
_V1_FIXED = struct.Struct("<4sBB32sIHHII")
_PREAMBLE = struct.Struct("<4sBB")
_U32 = struct.Struct("<I")


class ArchiveError(ValueError):
    """The bytes are not a readable archive; the message says why."""


@dataclass
class Archive:
    model_hash: str                          # hex; a prefix of the sha256 ("" for deflate)
    count: int
    height: int
    width: int
    pixel_crc: int
    batch_sizes: list
    payload: np.ndarray                      # uint32 ANS words, or uint8 deflate bytes
    names: Optional[list] = field(default=None)
    method: str = "bits-back"                # or "deflate" or "context"
    context_table: int = 0                   # which fitted context table (context payload only)
    version: int = VERSION                   # the format version it was read from

    @property
    def payload_bits(self) -> int:
        return 8 * self.payload.nbytes

    def to_bytes(self) -> bytes:
        if self.method not in METHODS:
            raise ValueError(f"unknown payload method {self.method!r}")
        bits_back = self.method == "bits-back"
        flags = ((FLAG_NAMES if self.names is not None else 0) | (FLAG_DEFLATE if self.method == "deflate" else 0)
                 | (FLAG_CONTEXT if self.method == "context" else 0))
        parts = [_PREAMBLE.pack(MAGIC, VERSION, flags)]
        if bits_back:
            parts.append(bytes.fromhex(self.model_hash)[:HASH_BYTES])
        if self.method == "context":
            parts.append(bytes([self.context_table]))
        parts += [varints(self.count, self.height, self.width), _U32.pack(self.pixel_crc)]
        if bits_back:
            runs = run_lengths(self.batch_sizes)
            parts.append(varints(len(runs), *(v for run in runs for v in run)))
        if self.names is not None:
            parts.append(_with_varint_length(raw_deflate(json.dumps(self.names, ensure_ascii=False).encode("utf-8"))))
        dtype = "u1" if self.method == "deflate" else "<u4"
        parts += [varints(len(self.payload)), np.asarray(self.payload, dtype=dtype).tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Archive":
        reader = _Reader(data)
        magic, version, flags = reader.unpack(_PREAMBLE, "header")
        if magic != MAGIC:
            raise ArchiveError("not a serecodec archive (bad magic bytes)")
        if version not in READABLE_VERSIONS:
            raise ArchiveError(f"archive format version {version} is not supported "
                               f"(this reader knows {', '.join(map(str, READABLE_VERSIONS))})")
        if version == 1:
            return cls._from_v1(reader, flags)
        if flags & ~(FLAG_NAMES | FLAG_DEFLATE | FLAG_CONTEXT) or (flags & FLAG_DEFLATE and flags & FLAG_CONTEXT):
            raise ArchiveError(f"unknown header flags {flags:#04x}")
        method = "deflate" if flags & FLAG_DEFLATE else "context" if flags & FLAG_CONTEXT else "bits-back"
        deflate = method != "bits-back"          # no model hash, no batches
        digest = "" if deflate else reader.take(HASH_BYTES, "header").hex()
        table = reader.take(1, "header")[0] if method == "context" else 0
        count, height, width = reader.varint("header"), reader.varint("header"), reader.varint("header")
        (crc,) = reader.unpack(_U32, "header")
        sizes: list = []
        if not deflate:
            for _ in range(reader.varint("batch sizes")):
                size, repeat = reader.varint("batch sizes"), reader.varint("batch sizes")
                if size == 0 or repeat == 0 or len(sizes) + repeat > max(count, 1):
                    raise ArchiveError("batch sizes are corrupted")
                sizes += [size] * repeat
            if sum(sizes) != count:
                raise ArchiveError(f"header is inconsistent: batches hold {sum(sizes)} images, count says {count}")
        names = None
        if flags & FLAG_NAMES:
            names = _parse_names(reader.take(reader.varint("names length"), "names"), count, raw_inflate)
        length = reader.varint("payload length")
        archive = cls._finish(reader, digest, count, height, width, crc, sizes, names, method, length)
        archive.context_table = table
        return archive

    @classmethod
    def _from_v1(cls, reader: "_Reader", flags: int) -> "Archive":
        reader.pos = 0
        _, _, _, digest, count, height, width, crc, nbatch = reader.unpack(_V1_FIXED, "header")
        (length,) = reader.unpack(_U32, "batch sizes length")
        try:
            raw = zlib.decompress(reader.take(length, "batch sizes"))
        except zlib.error:
            raise ArchiveError("batch sizes are corrupted") from None
        if len(raw) != 2 * nbatch:
            raise ArchiveError("batch sizes are corrupted")
        sizes = np.frombuffer(raw, dtype="<u2").astype(int).tolist()
        deflate = bool(flags & FLAG_DEFLATE)
        if sum(sizes) != (0 if deflate else count):     # a deflate payload has no batches
            raise ArchiveError(f"header is inconsistent: batches hold {sum(sizes)} images, count says {count}")
        names = None
        if flags & FLAG_NAMES:
            (length,) = reader.unpack(_U32, "names length")
            names = _parse_names(reader.take(length, "names"), count, zlib.decompress)
        (length,) = reader.unpack(_U32, "payload length")
        archive = cls._finish(reader, "" if deflate else digest.hex(), count, height, width, crc, sizes, names,
                              "deflate" if deflate else "bits-back", length)
        archive.version = 1
        return archive

    @classmethod
    def _finish(cls, reader, digest, count, height, width, crc, sizes, names, method, length) -> "Archive":
        if method == "deflate":
            payload = np.frombuffer(reader.take(length, "payload"), dtype=np.uint8).copy()
        else:
            payload = np.frombuffer(reader.take(4 * length, "payload"), dtype="<u4").astype(np.uint32)
        if reader.remaining():
            raise ArchiveError(f"{reader.remaining()} unexpected bytes after the payload")
        return cls(digest, count, height, width, crc, sizes, payload, names, method)

    def made_with(self, full_hash: str) -> bool:
        """Whether this archive's (possibly shortened) model hash is that of ``full_hash``."""
        return bool(self.model_hash) and full_hash.startswith(self.model_hash)


def _parse_names(blob: bytes, count: int, inflate) -> list:
    try:
        names = json.loads(inflate(blob).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError):
        raise ArchiveError("file names are corrupted") from None
    if not isinstance(names, list) or len(names) != count:
        raise ArchiveError("file names are corrupted")
    return names


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


def run_lengths(values) -> list:
    """[(value, repeat), ...] for consecutive equal values."""
    runs: list = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([int(value), 1])
    return runs


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return packer.compress(data) + packer.flush()


def raw_inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -15)


def _with_varint_length(blob: bytes) -> bytes:
    return varints(len(blob)) + blob


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

    def remaining(self) -> int:
        return len(self.data) - self.pos


def deflate_pixels(images: np.ndarray) -> np.ndarray:
    """Raw deflate (no zlib/gzip container) of the packed 0/1 pixels, as uint8."""
    packed = np.packbits(np.ascontiguousarray(images, dtype=np.uint8).reshape(-1)).tobytes()
    return np.frombuffer(raw_deflate(packed), dtype=np.uint8).copy()


def inflate_pixels(payload: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    total = count * height * width
    try:
        packed = raw_inflate(payload.tobytes())
    except zlib.error:
        raise ArchiveError("corrupted archive: the deflate payload does not inflate") from None
    if len(packed) != (total + 7) // 8:
        raise ArchiveError("corrupted archive: the deflate payload has the wrong length")
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:total].reshape(count, height, width)
