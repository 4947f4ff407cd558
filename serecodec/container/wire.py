"""The byte-level pieces every archive format is built from: LEB128 varints, run lengths, a
bounds-checked reader, bounded inflation and stored names. Nothing here knows a format version."""
from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Iterable, Optional, Sequence

from ..errors import ArchiveError
from .limits import MAX_NAME_BYTES

U32 = struct.Struct("<I")


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


def encode_runs(runs: Sequence[Sequence[int]]) -> bytes:
    """varint R, then each run's varints (the layout ``Reader.runs`` reads)."""
    return varints(len(runs), *(v for run in runs for v in run))


def expand_runs(runs: list, count: int, what: str) -> list:
    total = sum(repeat for _, repeat in runs)
    if total != count:
        raise ArchiveError(f"corrupted archive: {what} given for {total} images, count says {count}")
    return [value for value, repeat in runs for _ in range(repeat)]


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


def parse_json_names(raw: bytes, count: int) -> list:
    """Formats 1-2 stored names as a JSON list of strings."""
    try:
        names = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ArchiveError("file names are corrupted") from None
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, str) and n for n in names):
        raise ArchiveError("file names are corrupted")
    return names


class Reader:
    """Reads fields off a byte string; running past its end is an ArchiveError naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ArchiveError(f"truncated archive (ends inside the {what})")
        chunk = bytes(self.data[self.pos:self.pos + size])
        self.pos += size
        return chunk

    def unpack(self, fmt: struct.Struct, what: str):
        return fmt.unpack(self.take(fmt.size, what))

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

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

    def batch_runs(self, payload_bytes: Optional[int] = None) -> list:
        """Run-length batch sizes, expanded only if the payload (by default the rest of the file)
        can pay for that many batches (each holds at least one image of at least one bit)."""
        runs = self.runs("batch sizes", 2, positive=True)
        if sum(repeat for _, repeat in runs) > 8 * (self.remaining() if payload_bytes is None else payload_bytes):
            raise ArchiveError("corrupted archive: more batches than the payload can hold")
        return [size for size, repeat in runs for _ in range(repeat)]

    def rest(self) -> bytes:
        return self.take(self.remaining(), "payload")

    def remaining(self) -> int:
        return len(self.data) - self.pos
