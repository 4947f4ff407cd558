"""One entry point that reads an archive of any format into an ``Archive``."""
from __future__ import annotations

from ..errors import ArchiveError
from .archive import MAGIC, PREAMBLE, READABLE_VERSIONS, Archive, check_pixels, fill_chunk, parse_header
from .legacy import parse_legacy
from .limits import MAX_TOTAL_PIXELS
from .wire import Reader


def parse(data: bytes, max_pixels: int = MAX_TOTAL_PIXELS) -> Archive:
    """Parse and bounds-check an archive of any readable format; payloads are not decoded here.

    In format 4 a chunk whose bytes fail their checksum is kept with ``damage`` set (the others
    stay decodable); a damaged header is an ArchiveError."""
    data = bytes(data)
    reader = Reader(data)
    magic, version, flags = reader.unpack(PREAMBLE, "header")
    if magic != MAGIC:
        raise ArchiveError("not a serecodec archive (bad magic bytes)")
    if version not in READABLE_VERSIONS:
        raise ArchiveError(f"archive format version {version} is not supported "
                           f"(this reader knows {', '.join(map(str, READABLE_VERSIONS))})")
    if version < 4:
        archive = parse_legacy(reader, version, flags, data)
    else:
        archive, spans = parse_header(data)
        for chunk, (start, end) in zip(archive.chunks, spans):
            if end > len(data):
                chunk.damage = "truncated archive (ends inside this chunk)"
            else:
                fill_chunk(chunk, data[start:end])
        if spans and spans[-1][1] < len(data):
            raise ArchiveError(f"corrupted archive: {len(data) - spans[-1][1]} bytes after the last chunk")
    archive.total_bytes = len(data)
    check_pixels(archive, max_pixels)
    return archive
