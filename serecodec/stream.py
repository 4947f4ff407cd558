"""Online compression: a bits-back archive that grows as images arrive and is complete at any
moment (``Codec.stream``)."""
from __future__ import annotations

from typing import Optional, Sequence

from .container import Archive, Chunk, pixel_crc
from .container.wire import size_runs
from .errors import InputError
from .fileio import atomic_write_bytes
from .inputs import Images, as_images, background_is_one, check_names, shapes_of, with_polarity
from .methods import by_name
from .methods.bits_back import BitsBack, encoder_fields
from .tiles import to_tiles
from .warm_start import WARM_MAX_PIXELS, WarmStartTooLarge


class StreamWriter:
    """Online compression: ``append`` images as they arrive, ``to_bytes`` any time for a complete
    archive. Bits-back: images chain on one stack per chunk, so the warm start is paid once a
    chunk; a chunk closes once it holds the codec's ``chunk_pixels``."""

    def __init__(self, codec, target=None) -> None:
        self.codec, self.target = codec, target
        self.shapes: list = []
        self.names: Optional[list] = None
        self.inverted: list = []
        self.sealed: list = []                 # finished chunks
        self._open_chunk()

    def _open_chunk(self) -> None:
        self.encoder = self.codec.encoder()
        self.first, self.pixels, self.crc = len(self.shapes), 0, 0

    @property
    def count(self) -> int:
        return len(self.shapes)

    def append(self, images: Images, names: Optional[Sequence[str]] = None) -> None:
        """Append one image (H, W) or a batch (N, H, W) / list of 0/1 pixels, with names for all or none."""
        images = as_images(images)
        shapes = shapes_of(images)
        inverted = background_is_one(images) or [False] * len(shapes)
        originals, images = images, with_polarity(images, inverted)
        if (names is not None) != (self.names is not None) and self.count:
            raise InputError("give names with every append or with none (the archive stores one per image)")
        names = check_names(names, len(shapes))
        start = 0
        while start < len(images):
            end = self._push(images, start)
            self.crc = pixel_crc(originals[start:end], self.crc)
            self.inverted += inverted[start:end]
            if self.pixels >= self.codec.chunk_pixels:
                self.sealed.append(self._chunk())
                self._open_chunk()
            start = end
        if names is not None:
            self.names = (self.names or []) + names

    def _push(self, images, start: int) -> int:
        """Push images from ``start`` on into the open chunk, as one bits-back push where the
        warm start is over, up to the chunk's pixel budget; returns where it stopped."""
        if self.count == self.first and images[start].size > WARM_MAX_PIXELS:
            self.encoder = self.codec.encoder(warm=False)      # a large first image: initial words instead
        if self.encoder.needs_warmth():
            try:
                self.encoder.push_warm(images[start])
            except WarmStartTooLarge:
                raise InputError("a stream starts warm from small images; start it with images of at most "
                                 "65536 pixels, or use Codec.compress") from None
            end = start + 1
        else:
            end, pixels = start, self.pixels
            while end < len(images) and pixels < self.codec.chunk_pixels:
                pixels += images[end].size
                end += 1
            with self.codec.models.limited():
                self.encoder.push(*to_tiles(images[start:end], self.codec.tile))
        for image in images[start:end]:
            self.shapes.append(image.shape)
            self.pixels += image.size
        return end

    def _chunk(self) -> Chunk:
        method = by_name(BitsBack.name)
        fields = encoder_fields(self.encoder)
        return Chunk(method.code, self.count - self.first, method.name, self.first, params=method.params_bytes(fields),
                     payload=self.encoder.compressed().astype("<u4").tobytes(), pixel_crc=self.crc, fields=fields)

    def payload_bits(self) -> int:
        return sum(8 * len(c.payload) for c in self.sealed) + 32 * int(self.encoder.coder.num_words())

    def __enter__(self) -> "StreamWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None or self.target is None:
            return
        data = self.to_bytes()
        if hasattr(self.target, "write"):
            self.target.write(data)
        else:
            atomic_write_bytes(self.target, data)

    def to_bytes(self) -> bytes:
        chunks = self.sealed + ([self._chunk()] if self.count > self.first else [])
        return Archive(size_runs(self.shapes), chunks, names=self.names,
                       inverted=self.inverted if any(self.inverted) else None).to_bytes()
