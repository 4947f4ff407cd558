"""Reading formats 1-3 (one payload, one checksum over everything) into format 4's ``Archive``
of one ``Chunk``, with the method's fields already parsed (these layouts fixed them).

Format 3: magic, version 3, method code (0 deflate, 1 static context, 2 adaptive, 3 bits-back),
flags (bit 0 names, 1 formats, 2 unordered, 3 warm start), the method's parameters (bits-back:
16-byte model hash prefix, varint particles, varint warm-start images, batch-size runs; context
and adaptive: a 1-byte table number), the image count, sizes, formats and names as format 4
has them, varint-length payload, a CRC-32 of the pixels then the meta bytes, and a CRC-32 of
every byte before it. Formats 1 and 2 held one image size and a CRC of the pixels only.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import ArchiveError
from .archive import Archive, Chunk, read_meta
from .limits import MAX_NAME_BYTES, check_shape
from .wire import U32, Reader, bounded_inflate, parse_json_names

# format 3's method codes, which format 4's registry keeps
CODES = {"deflate": 0, "context": 1, "adaptive": 2, "bits-back": 3}
_V3_NAMES, _V3_FORMATS, _V3_UNORDERED, _V3_WARM = 1, 2, 4, 8
_V1_FIXED = struct.Struct("<4sBB32sIHHII")
_V2_NAMES, _V2_DEFLATE, _V2_CONTEXT = 1, 2, 4
HASH_BYTES = 16


def parse_legacy(reader: Reader, version: int, flags: int, data: bytes) -> Archive:
    if version == 3:
        return _v3(reader, flags, data)
    return _v2(reader, flags) if version == 2 else _v1(reader, flags)


def _one_chunk(archive: Archive, method: str, payload: bytes, **fields) -> Archive:
    archive.chunks = [Chunk(CODES[method], archive.count, method=method, payload=payload, fields=fields)]
    return archive


def _v3(reader: Reader, code: int, data: bytes) -> Archive:
    if len(data) < 15:
        raise ArchiveError("truncated archive (ends inside the header)")
    (stored,) = U32.unpack(data[-4:])
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != stored:
        raise ArchiveError("corrupted archive: the archive checksum does not match (damaged or truncated)")
    reader.data = reader.data[:-4]
    methods = {v: k for k, v in CODES.items()}
    if code not in methods:
        raise ArchiveError(f"unknown payload method {code}")
    method = methods[code]
    flags = reader.byte("header")
    if flags & ~(_V3_NAMES | _V3_FORMATS | _V3_UNORDERED | _V3_WARM):
        raise ArchiveError(f"unknown header flags {flags:#04x}")
    archive = Archive([], unordered=bool(flags & _V3_UNORDERED), version=3)
    fields: dict = {}
    if method == "bits-back":
        fields["model_hash"] = reader.take(HASH_BYTES, "header").hex()
        fields["particles"], fields["warm_images"] = reader.varint("header"), reader.varint("header")
        if fields["particles"] < 1 or bool(fields["warm_images"]) != bool(flags & _V3_WARM):
            raise ArchiveError("corrupted archive: bad bits-back parameters")
        fields["batch_sizes"] = reader.batch_runs()
        fields["multiset"], fields["divisor"] = archive.unordered, 0
    elif method in ("context", "adaptive"):
        fields["table"] = reader.byte("header")
    read_meta(archive, reader, flags & _V3_FORMATS, flags & _V3_NAMES)
    payload = reader.take(reader.varint("payload length"), "payload")
    (archive.content_crc,) = reader.unpack(U32, "checksum")
    if reader.remaining():
        raise ArchiveError(f"corrupted archive: {reader.remaining()} unexpected bytes before the checksum")
    return _one_chunk(archive, method, payload, **fields)


def _v2(reader: Reader, flags: int) -> Archive:
    if flags & ~(_V2_NAMES | _V2_DEFLATE | _V2_CONTEXT) or (flags & _V2_DEFLATE and flags & _V2_CONTEXT):
        raise ArchiveError(f"unknown header flags {flags:#04x}")
    method = "deflate" if flags & _V2_DEFLATE else "context" if flags & _V2_CONTEXT else "bits-back"
    fields: dict = {}
    if method == "bits-back":
        fields.update(model_hash=reader.take(HASH_BYTES, "header").hex(), particles=1, warm_images=0, multiset=False,
                      divisor=0)
    if method == "context":
        fields["table"] = reader.byte("header")
    count, height, width = reader.varint("header"), reader.varint("header"), reader.varint("header")
    check_shape(height, width, ArchiveError)
    archive = Archive([(height, width, count)] if count else [], version=2)
    (archive.content_crc,) = reader.unpack(U32, "header")
    if method == "bits-back":
        fields["batch_sizes"] = reader.batch_runs()
        if sum(fields["batch_sizes"]) != count:
            raise ArchiveError(f"header is inconsistent: batches hold {sum(fields['batch_sizes'])} images, "
                               f"count says {count}")
    if flags & _V2_NAMES:
        blob = reader.take(reader.varint("names length"), "names")
        archive.names = parse_json_names(bounded_inflate(blob, count * (MAX_NAME_BYTES + 8) + 2, "names"), count)
    length = reader.varint("payload length")
    payload = reader.take(length if method == "deflate" else 4 * length, "payload")
    if reader.remaining():
        raise ArchiveError(f"{reader.remaining()} unexpected bytes after the payload")
    return _one_chunk(archive, method, payload, **fields)


def _v1(reader: Reader, flags: int) -> Archive:
    reader.pos = 0
    _, _, _, digest, count, height, width, crc, nbatch = reader.unpack(_V1_FIXED, "header")
    (length,) = reader.unpack(U32, "batch sizes length")
    raw = bounded_inflate(reader.take(length, "batch sizes"), 2 * nbatch, "batch sizes", zlib_container=True)
    if len(raw) != 2 * nbatch:
        raise ArchiveError("batch sizes are corrupted")
    sizes = np.frombuffer(raw, dtype="<u2").astype(int).tolist()
    deflate = bool(flags & _V2_DEFLATE)
    if sum(sizes) != (0 if deflate else count):     # a deflate payload has no batches
        raise ArchiveError(f"header is inconsistent: batches hold {sum(sizes)} images, count says {count}")
    check_shape(height, width, ArchiveError)
    archive = Archive([(height, width, count)] if count else [], version=1, content_crc=crc)
    if flags & _V2_NAMES:
        (length,) = reader.unpack(U32, "names length")
        blob = reader.take(length, "names")
        archive.names = parse_json_names(bounded_inflate(blob, count * (MAX_NAME_BYTES + 8) + 2, "names",
                                                         zlib_container=True), count)
    (length,) = reader.unpack(U32, "payload length")
    payload = reader.take(length if deflate else 4 * length, "payload")
    if reader.remaining():
        raise ArchiveError(f"{reader.remaining()} unexpected bytes after the payload")
    if deflate:
        return _one_chunk(archive, "deflate", payload)
    return _one_chunk(archive, "bits-back", payload, model_hash=digest.hex(), particles=1, warm_images=0,
                      batch_sizes=sizes, multiset=False, divisor=0)
