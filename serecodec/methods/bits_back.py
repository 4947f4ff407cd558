"""Bits-back ANS over the learned SeRe-VAE hierarchy (``serecodec.bitsback``), on tiles of the
coding model's input size. It owns its header fields: the coding model's hash, the importance
particles K, the warm-start image count, whether the chunk is a multiset (unordered), and the
batch sizes: stored as runs, or (mostly) not at all, when the encoder followed a batch schedule
(``bitsback.scheduled_batch``) the decoder can replay from the image sizes.

Parameters: 16-byte model hash prefix, varints K, warm-start images, multiset (0/1), schedule
divisor D (0: none); with D, varints max batch and stretch (images a push covers); without,
the batch-size runs (varint R, then R (size, repeat) pairs)."""
from __future__ import annotations

import numpy as np

from ..bitsback import (MAX_PARTICLES, BitsBackEncoder, ScheduleUnaffordable, decode_images, decode_unordered,
                        initial_word_count, schedule_sizes, verify_segment, verify_warm)
from ..container.wire import Reader, encode_runs, run_lengths, varints
from ..errors import ArchiveError
from ..tiles import from_tiles, tile_count, tile_masks, to_tiles
from ..warm_start import WARM_MAX_PIXELS, WARM_MAX_TOTAL, WarmStartTooLarge
from .base import SMALL_IMAGE_PIXELS, Encoded, PayloadMethod

HASH_BYTES = 16
VERIFY_STRETCH = 1024    # images encoded between two stack snapshots (the unit of overlapped verification)
# Schedules tried before explicit sizes: batch = tiles so far / D. A tile pops at most
# bits_per_image_bound bits (800 for the default model) and leaves its net rate (~126 bits for a
# digit) behind, so the stack affords about tiles / 6.3: D = 8 fits digit-like data; D = 24
# rates down to ~40 bits a tile; below that the sizes are stored.
SCHEDULE_DIVISORS = (8, 24)


def new_encoder(models, warm: bool = True, divisor=None) -> BitsBackEncoder:
    """A bits-back encoder with the coding settings of ``models``; ``warm``: start from an empty
    stack with the context models (when the settings allow a warm start)."""
    return BitsBackEncoder(models.coding, models.max_batch, models.warm() if warm and models.warm_start else None,
                           models.particles, divisor)


def encoder_fields(encoder: BitsBackEncoder, multiset: bool = False) -> dict:
    """The header fields of a chunk that ``encoder`` coded (what ``params_bytes`` writes)."""
    return dict(model_hash=encoder.model.hash[:2 * HASH_BYTES], particles=encoder.particles,
                warm_images=encoder.warm_images, multiset=multiset, batch_sizes=list(encoder.batch_sizes),
                divisor=encoder.divisor or 0, max_batch=encoder.max_batch, stretch=VERIFY_STRETCH)


SAMPLE_TILES = 96                 # tiles auto's estimate runs the model on (~0.1 s on one core)


class BitsBack(PayloadMethod):
    name, code = "bits-back", 3
    unordered_saves = True

    def params_bytes(self, fields: dict) -> bytes:
        head = (bytes.fromhex(fields["model_hash"])[:HASH_BYTES]
                + varints(fields["particles"], fields["warm_images"], int(fields["multiset"]), fields.get("divisor", 0)))
        if fields.get("divisor"):
            return head + varints(fields["max_batch"], fields["stretch"])
        return head + encode_runs(run_lengths(fields["batch_sizes"]))

    def read_params(self, raw: bytes, payload_bytes: int) -> dict:
        reader = Reader(raw)
        fields = {"model_hash": reader.take(HASH_BYTES, "bits-back parameters").hex()}
        fields["particles"], fields["warm_images"], multiset, fields["divisor"] = (
            reader.varint("bits-back parameters") for _ in range(4))
        if fields["particles"] < 1 or multiset > 1:
            raise ArchiveError("corrupted archive: bad bits-back parameters")
        fields["multiset"] = bool(multiset)
        if fields["divisor"]:
            fields["max_batch"], fields["stretch"] = reader.varint("bits-back parameters"), \
                reader.varint("bits-back parameters")
            if not (1 <= fields["max_batch"] <= 65535 and fields["stretch"] >= 1) or multiset:
                raise ArchiveError("corrupted archive: bad bits-back batch schedule")
        else:
            fields["batch_sizes"] = reader.batch_runs(payload_bytes)
        if reader.remaining():
            raise ArchiveError("corrupted archive: bad bits-back parameters")
        return fields

    # -- encoding ----------------------------------------------------------------------------------
    def worth_trying(self, images, models, best_bytes, ahead=None) -> bool:
        """Whether the estimate (``estimate``: no coding) can beat ``best_bytes``."""
        if best_bytes is None:
            return True
        floor, guess = ahead.result() if ahead is not None else self.estimate(images, models, best_bytes)
        return floor <= best_bytes and guess < 1.1 * best_bytes

    def estimate_ahead(self, images) -> bool:
        """On pages, where it follows the page model's coding (``auto_order``): its networks and
        its model's loading (~0.45 s in a fresh process) then run on the core that coding
        leaves free."""
        return max(image.size for image in images) > SMALL_IMAGE_PIXELS

    def estimate(self, images, models, best_bytes=None) -> tuple:
        """(floor, estimate) in bytes: what a start and blank tiles cost at least, and the size
        from the model's -ELBO on a sample of tiles. With ``best_bytes``, stops (estimate
        infinite) as soon as the floor passes it, before any network runs."""
        model = models.coding
        shapes = [image.shape for image in images]
        initial_bits = 32 * initial_word_count(model, models.particles)     # what a cold start pays; a warm
        if best_bytes is not None and initial_bits / 8 > best_bytes:       # start pays about as much in kind
            return initial_bits / 8, np.inf
        tiles = tile_count(shapes, model.tile_shape)
        floor = (tiles * models.blank_tile_nats() / np.log(2) + initial_bits) / 8
        if best_bytes is not None and floor > best_bytes:
            return floor, np.inf           # even blank tiles would cost more: no network pass needed
        picks = np.unique(np.linspace(0, len(shapes) - 1, num=min(len(shapes), 64)).astype(int))
        sample_tiles, _ = to_tiles([images[i] for i in picks], model.tile_shape)
        if len(sample_tiles) > SAMPLE_TILES:
            sample_tiles = sample_tiles[np.linspace(0, len(sample_tiles) - 1, SAMPLE_TILES).astype(int)]
        with models.limited():
            nats = model.expected_rate(sample_tiles)["neg_elbo_nats"]
        return floor, (tiles * nats / np.log(2) + initial_bits) / 8

    def encode(self, images, models, progress=None, verify=False, unordered=False) -> Encoded:
        model = models.coding
        if unordered:
            encoder = new_encoder(models, warm=False)
            with models.limited():
                encoder.push_unordered(images, model.tile_shape)
            if progress:
                progress(len(images))
        else:
            encoder = self._encode_ordered(images, models, progress, verify)
        checks = encoder.verified if not unordered and verify else None
        return Encoded(encoder.compressed().astype("<u4").tobytes(), encoder_fields(encoder, unordered),
                       verified=None if checks is None else (lambda: all(check.result() for check in checks)))

    def _encode_ordered(self, images, models, progress, verify: bool):
        """Bits-back over tiles, warm-started by the first images when they are small enough.

        ``verify``: check every stretch of VERIFY_STRETCH images by decoding it from the stack it left
        (``bitsback.verify_segment``) in a second thread while the next stretch encodes; the
        encoder's ``verified`` is then the list of those checks (futures of booleans), still running
        while the next chunk encodes."""
        for divisor in SCHEDULE_DIVISORS + (None,):
            try:
                return self._encode_once(images, models, progress, verify, divisor)
            except ScheduleUnaffordable:
                continue
        raise AssertionError("unreachable: explicit batch sizes are always affordable")

    def _encode_once(self, images, models, progress, verify: bool, divisor):
        model = models.coding
        for warm in (True, False):
            encoder = new_encoder(models, warm, divisor)
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
            pool = models.verifier()
            with models.limited():
                before = encoder.compressed().copy() if verify else None    # snapshots only to verify
                if verify and start:
                    checks.append(pool.submit(verify_warm, before, models.warm(), [images[i] for i in range(start)]))
                for first in range(start, len(images), VERIFY_STRETCH):
                    stretch = images[first:first + VERIFY_STRETCH]
                    tiles, masks = to_tiles(stretch, model.tile_shape)
                    batches = len(encoder.batch_sizes)
                    encoder.push(tiles, masks)
                    if verify:
                        after = encoder.compressed().copy()
                        if len(checks) > 1:          # at most one stretch waits: memory stays flat
                            checks[-2].result()
                        checks.append(pool.submit(verify_segment, model, after, encoder.batch_sizes[batches:],
                                                  tiles, masks, before, models.particles))
                        before = after
                    if progress:
                        progress(len(stretch))
                encoder.verified = checks if verify else None
            return encoder
        raise AssertionError("unreachable: a cold start has no size limit")

    # -- decoding ----------------------------------------------------------------------------------
    def validate(self, chunk, shapes, models, unordered) -> None:
        f = chunk.fields
        if f["particles"] > MAX_PARTICLES:
            raise ArchiveError(f"corrupted archive: {f['particles']} importance particles (at most {MAX_PARTICLES})")
        if len(shapes) - f["warm_images"] > 8 * len(chunk.payload) + 64:
            raise ArchiveError(f"corrupted archive: {len(chunk.payload)} payload bytes cannot hold "
                               f"{len(shapes)} images")
        if f["multiset"] and (f["warm_images"] or len(set(shapes)) > 1 or not unordered):
            raise ArchiveError("corrupted archive: a multiset chunk holds images of one size, no warm start")
        tile = models.coding_for(f["model_hash"]).tile_shape
        warm = shapes[:f["warm_images"]]
        tiles = tile_count(shapes[f["warm_images"]:], tile)
        if tiles > 8 * len(chunk.payload) + 64:
            raise ArchiveError("corrupted archive: the bits-back payload cannot hold its tiles")
        if f["divisor"]:
            coded, stretch = shapes[f["warm_images"]:], f["stretch"]
            pushes = [tile_count(coded[i:i + stretch], tile) for i in range(0, len(coded), stretch)]
            f["batch_sizes"] = schedule_sizes(pushes, f["divisor"], f["max_batch"])
        sizes = f["batch_sizes"]
        if tiles > 8 * len(chunk.payload) + 64 or sum(sizes) != tiles or max(sizes, default=0) > 65535 or \
                len(chunk.payload) % 4 or f["warm_images"] > len(shapes):
            raise ArchiveError("corrupted archive: the bits-back batches do not match the image sizes")
        if any(h * w > WARM_MAX_PIXELS for h, w in warm) or sum(h * w for h, w in warm) > WARM_MAX_TOTAL:
            raise ArchiveError("corrupted archive: the warm start is larger than any encoder writes")

    def decode(self, chunk, shapes, models, progress=None) -> list:
        f = chunk.fields
        model = models.coding_for(f["model_hash"])
        tile, k = model.tile_shape, f["particles"]
        words = np.frombuffer(chunk.payload, dtype="<u4").astype(np.uint32)
        try:
            with models.limited():
                if f["multiset"]:
                    return decode_unordered(model, words, f["batch_sizes"], shapes[0], tile, progress, k)
                report = _tile_progress(progress, shapes, tile)
                warm = f["warm_images"]
                if warm:
                    flat, warm_images = decode_images(model, words, f["batch_sizes"], report,
                                                      masks=tile_masks(shapes[warm:], tile), warm=models.warm(),
                                                      warm_shapes=shapes[:warm], particles=k)
                    return warm_images + from_tiles(flat, shapes[warm:], tile)
                flat = decode_images(model, words, f["batch_sizes"], report, masks=tile_masks(shapes, tile),
                                     particles=k)
        except ArchiveError as exc:
            raise ArchiveError(f"corrupted archive: {exc}") from None
        except (ValueError, RuntimeError) as exc:   # the coder refuses impossible states
            raise ArchiveError(f"corrupted archive ({exc})") from None
        return from_tiles(flat, shapes, tile)


def _tile_progress(progress, shapes, tile):
    """Progress in images from the decoder's progress in tiles (one image size only)."""
    if not progress or len(set(shapes)) != 1:
        return None
    per_image = -(-shapes[0][0] // tile[0]) * -(-shapes[0][1] // tile[1])
    return lambda tiles: progress(max(1, tiles // per_image))
