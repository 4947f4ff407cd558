"""Bits-back ANS coding of images with the integer coding model (DESIGN §3, as in HiLLoC).

For a batch of images on one ANS stack:

    encode:  for l = 1..L: pop ε̂_l from q(· | ẑ_{l−1}, x)       (bits back)
             push x under p(x | ẑ_{1:L})
             for l = L..1: push ε̂_l under p(· | ẑ_{l−1}) = Uniform(K)
    decode:  the exact mirror.

All images of an archive chain on one stack; the stack starts from explicit initial words
that decoding must restore at the end (an integrity check). A pop needs bits on the stack:
the entropy of a K-bucket posterior is at most log2 K bits per latent, so a batch is only as
large as the bits already on the stack can pay for; the batch sizes go in the archive.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterable, Optional

import constriction
import numpy as np

from .coding_model import PIXEL_BITS, CodingModel
from .errors import ArchiveError

PROB_BITS_ADAPTIVE = 16     # the adaptive model's probabilities are int / 2**16

HEAD_RESERVE_BITS = 64      # keep at least this many valid bits beyond a batch's expected pops
WARM_MAX_PIXELS = 1 << 16   # warm start only from images this small (their decoder runs pixel by pixel)
WARM_MAX_TOTAL = 1 << 22    # and at most this many warm-start pixels in all (bounds a hostile header)

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


class PhaseTimer:
    """Seconds spent per phase (networks, bucket tables, ANS coder), for the speed benchmark."""

    def __init__(self) -> None:
        self.seconds: dict = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str):
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - tic


class WarmStartTooLarge(ValueError):
    """The first images are too large (or too many) for a warm start; use initial words instead."""


class StackIntegrityError(ArchiveError):
    """Decoding did not restore the initial stack: the payload is corrupt or from another model."""


def bits_per_image_bound(model: CodingModel) -> int:
    """Expected bits popped per image are at most L · n · log2 K (max entropy of the buckets)."""
    return model.num_layers * model.latent_dim * model.bucket_bits


def initial_word_count(model: CodingModel) -> int:
    """Enough 32-bit words for one image's posterior pops plus the reserve (a function of the model)."""
    return -(-(bits_per_image_bound(model) + 2 * HEAD_RESERVE_BITS) // 32)


def initial_words(model: CodingModel, seed: int = 0x5E2E) -> np.ndarray:
    words = np.random.default_rng(seed).integers(1, 1 << 32, size=initial_word_count(model), dtype=np.uint64)
    return words.astype(np.uint32)


class BitsBackEncoder:
    """Appends batches of binary images to one ANS stack."""

    def __init__(self, model: CodingModel, max_batch: int = 256, warm=None) -> None:
        """``warm``: an adaptive context model to start from an empty stack (warm start), coding
        the first images with it until the stack can pay for bits-back; None: initial words."""
        if not 1 <= max_batch <= 65535:   # the archive stores batch sizes as uint16
            raise ValueError(f"max_batch must be in 1..65535, not {max_batch}")
        self.model, self.max_batch, self.warm = model, max_batch, warm
        self.coder = constriction.stream.stack.AnsCoder(*(() if warm else (initial_words(model),)))
        self.batch_sizes: list[int] = []
        self.warm_images = 0
        self.timer = PhaseTimer()

    def needs_warmth(self) -> bool:
        """Still in the warm start: no bits-back batch yet, and the stack cannot pay for one."""
        return self.warm is not None and not self.batch_sizes and self.affordable_batch() == 0

    def push_warm(self, image: np.ndarray) -> None:
        """Push one whole image under the adaptive context model (fresh counts per image, so the
        decoder, which pops the warm images last and in reverse, can decode each on its own)."""
        self.warm_pixels = getattr(self, "warm_pixels", 0) + image.size
        if image.size > WARM_MAX_PIXELS or self.warm_pixels > WARM_MAX_TOTAL:
            raise WarmStartTooLarge("the warm start would exceed its size limits")
        bits, probs = self.warm.sequence(image)
        self.coder.encode_reverse(bits.astype(np.int32), _BERNOULLI, probs)
        self.warm_images += 1

    def affordable_batch(self) -> int:
        """The largest batch whose posterior pops the stack's bits can pay for."""
        spare = self.coder.num_valid_bits() - HEAD_RESERVE_BITS
        return int(max(0, min(self.max_batch, spare // bits_per_image_bound(self.model))))

    def push(self, images: np.ndarray, masks: Optional[np.ndarray] = None) -> None:
        """Encode tiles (N, pixels) of 0/1, in as many batches as the stack affords; ``masks``
        (N, pixels) bool marks the real pixels of padded edge tiles (only those are coded)."""
        images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
        start = 0
        while start < len(images):
            size = min(self.affordable_batch(), len(images) - start)
            if size == 0:
                raise RuntimeError("bits-back stack has too few bits for even one image")
            self._encode_batch(images[start:start + size], None if masks is None else masks[start:start + size])
            self.batch_sizes.append(size)
            start += size

    def push_unordered(self, images: np.ndarray, tile: tuple) -> None:
        """Encode a collection whose order does not matter (N, H, W): each batch's images are
        drawn from the stack (``multiset.draw``), so the order's log2 N! bits come back."""
        from .multiset import ORDER_BITS, Multiset, draw, key
        by_key = {}
        for image in images:
            by_key.setdefault(key(image), image)
        multiset = Multiset(key(image) for image in images)
        per_image = tile_count([images.shape[1:]], tile)
        bound = per_image * bits_per_image_bound(self.model) + ORDER_BITS
        while multiset.size:
            spare = self.coder.num_valid_bits() - HEAD_RESERVE_BITS
            count = int(min(max(1, self.max_batch // per_image), spare // bound, multiset.size))
            if count <= 0:
                raise RuntimeError("bits-back stack has too few bits for even one image")
            chosen = np.stack([by_key[draw(self.coder, multiset)] for _ in range(count)])
            tiles, masks = to_tiles(chosen, tile)
            self._encode_batch(tiles, masks)
            self.batch_sizes.append(len(tiles))

    def _encode_batch(self, x: np.ndarray, mask: Optional[np.ndarray] = None) -> None:
        m, coder, batch, timed = self.model, self.coder, len(x), self.timer
        with timed("networks"):
            evidence = m.evidence(x.astype(np.int64))
        z_prev, zs, indices = None, [], []
        for layer in range(m.num_layers):
            with timed("networks"):
                p_loc, p_sigma = m.prior(layer, z_prev, batch)
                q_loc, q_inv = m.posterior(layer, evidence[layer], z_prev)
            with timed("buckets"):
                masses = m.bucket_masses(p_loc, p_sigma, q_loc, q_inv).reshape(-1, m.buckets).astype(np.float64)
            with timed("ans"):
                index = coder.decode(_CATEGORICAL, masses).reshape(batch, m.latent_dim)
            indices.append(index)
            with timed("networks"):
                z_prev = m.transform(layer, m.bucket_value(p_loc, p_sigma, index), z_prev)
            zs.append(z_prev)
        if coder.num_valid_bits() < 32:      # cannot happen with affordable_batch; never silently
            raise RuntimeError("bits-back stack ran dry during posterior pops")
        with timed("networks"):
            p1 = m.pixel_probabilities(zs).reshape(-1) / float(1 << PIXEL_BITS)
        with timed("ans"):
            pixels = x.reshape(-1).astype(np.int32)
            if mask is not None:          # padding is known to the decoder: no bits spent on it
                keep = mask.reshape(-1)
                pixels, p1 = pixels[keep], p1[keep]
            coder.encode_reverse(pixels, _BERNOULLI, p1)
            uniform = constriction.stream.model.Uniform(m.buckets)
            for index in reversed(indices):
                coder.encode_reverse(index.reshape(-1).astype(np.int32), uniform)

    def compressed(self) -> np.ndarray:
        return self.coder.get_compressed()


def decode_images(model: CodingModel, compressed: np.ndarray, batch_sizes: Iterable[int],
                  progress: Optional[Callable[[int], None]] = None,
                  timer: Optional[PhaseTimer] = None, masks: Optional[np.ndarray] = None,
                  warm=None, warm_shapes: Iterable = ()) -> np.ndarray:
    """Pop every batch (last encoded first), check the initial words are back, return tiles in order.

    The encoder started a batch only when its stack held enough bits to pay for the batch's
    posterior pops (``affordable_batch``), so after decoding that batch the decoder's stack must
    hold as many: one that holds fewer is corrupt, and decoding stops there instead of popping
    zeros from an empty coder.
    """
    coder = constriction.stream.stack.AnsCoder(np.asarray(compressed, dtype=np.uint32))
    initial = initial_words(model)
    timer = timer or PhaseTimer()
    batches = []
    sizes = list(batch_sizes)
    end = sum(sizes)
    for size in reversed(sizes):
        mask = None if masks is None else masks[end - size:end]
        end -= size
        batches.append(_decode_batch(model, coder, size, timer, mask))
        if coder.num_valid_bits() < HEAD_RESERVE_BITS + size * bits_per_image_bound(model):
            raise StackIntegrityError("the bits-back stack ran dry")
        if progress:
            progress(size)
    if warm is not None:             # the warm-start images lie at the bottom of the stack
        warm_images = [warm.decode(coder, shape) for shape in reversed(list(warm_shapes))][::-1]
        if coder.num_words():
            raise StackIntegrityError("the stack did not end empty after the warm start")
    elif not np.array_equal(coder.get_compressed(), initial):
        raise StackIntegrityError("the stack did not return to its initial bits")
    tiles = np.concatenate(batches[::-1], axis=0) if batches else np.zeros((0, model.pixels), dtype=np.uint8)
    return (tiles, warm_images) if warm is not None else tiles


class WarmStart:
    """Which model codes a warm-start image, by its shape alone (so the decoder knows): the static
    digit context model for its 28x28, the adaptive model (fresh counts) for any other size."""

    def __init__(self, adaptive, static=None) -> None:
        self.adaptive, self.static = adaptive, static

    def _static_for(self, shape) -> bool:
        return self.static is not None and tuple(shape) == (self.static.height, self.static.width)

    def sequence(self, image: np.ndarray) -> tuple:
        """(symbols in decoding order, P(1) of each as float)."""
        if self._static_for(image.shape):
            return self.static.sequence(image)
        bits, probs = self.adaptive.sequence(image)
        return bits, probs / float(1 << PROB_BITS_ADAPTIVE)

    def decode(self, coder, shape: tuple) -> np.ndarray:
        """Pop one warm-start image pixel by pixel (the mirror of ``BitsBackEncoder.push_warm``)."""
        if self._static_for(shape):
            return self.static.decode_with(lambda probs: coder.decode(_BERNOULLI, probs), 1)[0]
        return _decode_adaptive_warm(coder, self.adaptive, shape)


def _decode_adaptive_warm(coder, adaptive, shape: tuple) -> np.ndarray:
    from .adaptive_kernel import TP_CONTEXT, _probability, _update, context_at
    height, width = shape
    counts = adaptive.initial.copy()
    pixels = np.zeros(height * width, np.uint8)
    scale = float(1 << PROB_BITS_ADAPTIVE)
    pop = lambda p: int(coder.decode(_BERNOULLI, np.array([p / scale]))[0])  # noqa: E731
    for y in range(height):
        repeat = pop(_probability(counts, TP_CONTEXT))
        _update(counts, TP_CONTEXT, repeat, adaptive.increment, adaptive.limit)
        if repeat:
            if y:
                pixels[y * width:(y + 1) * width] = pixels[(y - 1) * width:y * width]
            continue
        for x in range(width):
            ctx = context_at(pixels, 0, width, height, y, x)
            bit = pop(_probability(counts, ctx))
            _update(counts, ctx, bit, adaptive.increment, adaptive.limit)
            pixels[y * width + x] = bit
    return pixels.reshape(height, width)


def decode_unordered(model: CodingModel, compressed: np.ndarray, batch_sizes: Iterable[int], shape: tuple,
                     tile: tuple, progress: Optional[Callable[[int], None]] = None) -> list:
    """The mirror of ``push_unordered``: images in canonical order (``multiset.canonical_order``)."""
    from .multiset import ORDER_BITS, Multiset, key, undraw
    coder = constriction.stream.stack.AnsCoder(np.asarray(compressed, dtype=np.uint32))
    per_image = tile_count([shape], tile)
    bound = per_image * bits_per_image_bound(model) + ORDER_BITS
    multiset, by_key, timer = Multiset(), {}, PhaseTimer()
    for size in reversed(list(batch_sizes)):
        count = size // per_image
        if count * per_image != size:
            raise StackIntegrityError("batch sizes do not hold whole images")
        shapes = [shape] * count
        tiles = _decode_batch(model, coder, size, timer, tile_masks(shapes, tile))
        for image in reversed(from_tiles(tiles, shapes, tile)):
            k = key(image)
            by_key.setdefault(k, image)
            undraw(coder, multiset, k)
        if coder.num_valid_bits() < HEAD_RESERVE_BITS + count * bound:
            raise StackIntegrityError("the bits-back stack ran dry")
        if progress:
            progress(count)
    if not np.array_equal(coder.get_compressed(), initial_words(model)):
        raise StackIntegrityError("the stack did not return to its initial bits")
    return [by_key[k] for k, c in zip(multiset.keys, multiset.counts) for _ in range(c)]


def _decode_batch(m: CodingModel, coder, batch: int, timed: PhaseTimer, mask: Optional[np.ndarray] = None) -> np.ndarray:
    uniform = constriction.stream.model.Uniform(m.buckets)
    z_prev, zs, indices, priors = None, [], [], []
    for layer in range(m.num_layers):
        with timed("ans"):
            index = coder.decode(uniform, batch * m.latent_dim).reshape(batch, m.latent_dim)
        with timed("networks"):
            p_loc, p_sigma = m.prior(layer, z_prev, batch)
            z_prev = m.transform(layer, m.bucket_value(p_loc, p_sigma, index), z_prev)
        indices.append(index)
        priors.append((p_loc, p_sigma))
        zs.append(z_prev)
    with timed("networks"):
        p1 = m.pixel_probabilities(zs).reshape(-1) / float(1 << PIXEL_BITS)
    with timed("ans"):
        if mask is None:
            x = coder.decode(_BERNOULLI, p1).reshape(batch, m.pixels).astype(np.uint8)
        else:
            keep = mask.reshape(-1)
            x = np.zeros(batch * m.pixels, np.uint8)
            x[keep] = coder.decode(_BERNOULLI, p1[keep])
            x = x.reshape(batch, m.pixels)
    with timed("networks"):
        evidence = m.evidence(x.astype(np.int64))
    for layer in reversed(range(m.num_layers)):
        z_in = zs[layer - 1] if layer > 0 else None
        with timed("networks"):
            q_loc, q_inv = m.posterior(layer, evidence[layer], z_in)
        with timed("buckets"):
            masses = m.bucket_masses(*priors[layer], q_loc, q_inv).reshape(-1, m.buckets).astype(np.float64)
        with timed("ans"):
            coder.encode_reverse(indices[layer].reshape(-1).astype(np.int32), _CATEGORICAL, masses)
    return x


def to_tiles(images, tile: tuple) -> tuple:
    """Cut images into tiles of ``tile`` (raster order per image, images in order), padding edge
    tiles with 0. Returns (tiles (T, th·tw) in the images' dtype, masks (T, th·tw) bool of real pixels, or None
    when no tile is padded)."""
    th, tw = tile
    if isinstance(images, np.ndarray) and images.shape[1:] == (th, tw):   # every image is one tile
        return images.reshape(len(images), th * tw), None
    tiles, masks, padded = [], [], False
    for image in images:
        height, width = image.shape
        rows, cols = -(-height // th), -(-width // tw)
        if (height, width) == (th, tw):
            tiles.append(np.asarray(image).reshape(1, -1))
            masks.append(np.ones((1, th * tw), bool))
            continue
        canvas = np.zeros((rows * th, cols * tw), np.asarray(image).dtype)
        canvas[:height, :width] = image
        real = np.zeros_like(canvas, dtype=bool)
        real[:height, :width] = True
        padded |= (rows * th, cols * tw) != (height, width)
        tiles.append(canvas.reshape(rows, th, cols, tw).transpose(0, 2, 1, 3).reshape(-1, th * tw))
        masks.append(real.reshape(rows, th, cols, tw).transpose(0, 2, 1, 3).reshape(-1, th * tw))
    if not tiles:
        return np.zeros((0, th * tw), np.uint8), None      # (the dtype of the images is kept otherwise)
    return np.concatenate(tiles), (np.concatenate(masks) if padded else None)


def tile_masks(shapes, tile: tuple) -> Optional[np.ndarray]:
    """The masks ``to_tiles`` gives for images of these shapes (the decoder knows only the shapes)."""
    th, tw = tile
    if all(h % th == 0 and w % tw == 0 for h, w in shapes):
        return None
    return to_tiles([np.ones(shape, np.uint8) for shape in shapes], tile)[1]


def tile_count(shapes, tile: tuple) -> int:
    th, tw = tile
    return sum(-(-h // th) * -(-w // tw) for h, w in shapes)


def from_tiles(tiles: np.ndarray, shapes, tile: tuple) -> list:
    """Reassemble images of ``shapes`` from their tiles (the inverse of ``to_tiles``)."""
    th, tw = tile
    if shapes and all(shape == (th, tw) for shape in shapes):      # every image is one tile: views
        return list(tiles.reshape(len(shapes), th, tw))
    out, start = [], 0
    for height, width in shapes:
        rows, cols = -(-height // th), -(-width // tw)
        block = tiles[start:start + rows * cols].reshape(rows, cols, th, tw).transpose(0, 2, 1, 3)
        out.append(np.ascontiguousarray(block.reshape(rows * th, cols * tw)[:height, :width]))
        start += rows * cols
    return out
