"""Bits-back ANS coding of images with the integer coding model (DESIGN §3, as in HiLLoC).

For a batch of images on one ANS stack:

    encode:  for l = 1..L: pop ε̂_l from q(· | ẑ_{l−1}, x)       (bits back)
             push x under p(x | ẑ_{1:L})
             for l = L..1: push ε̂_l under p(· | ẑ_{l−1}) = Uniform(K)
    decode:  the exact mirror.

With K particles (importance-weighted bits-back, BB-IS as in McBits) the encoder pops K
posterior chains and the index j of one with probability w_j / Σ w (``importance``), then pushes
j uniformly, the other K − 1 chains back under the posterior, x under p(x | ẑʲ) and ẑʲ under
the prior. The decoder pops ẑʲ, x, the other chains and j, then pushes j under the weights and
all K chains under the posterior. The net rate is −log2 of the IW-K estimate, below the ELBO.

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
from .importance import index_masses, log2_fixed
from .inputs import require_bilevel
from .multiset import ORDER_BITS, Multiset, draw, key, undraw
from .tiles import from_tiles, tile_count, tile_masks, to_tiles
from .warm_start import WARM_MAX_PIXELS, WARM_MAX_TOTAL, WarmStartTooLarge

HEAD_RESERVE_BITS = 64      # keep at least this many valid bits beyond a batch's expected pops
MAX_PARTICLES = 64          # importance particles per tile (bounds a hostile header's work)

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


class ScheduleUnaffordable(RuntimeError):
    """A scheduled batch needs more bits than the stack holds; encode with explicit sizes instead."""


def scheduled_batch(tiles_done: int, divisor: int, max_batch: int) -> int:
    """The batch size a schedule takes after ``tiles_done`` tiles: it grows with the stack (whose
    bits grow with the tiles coded), so the sizes need not be stored: ``schedule_sizes``."""
    return min(max_batch, max(1, tiles_done // divisor))


def schedule_sizes(push_tiles: Iterable[int], divisor: int, max_batch: int) -> list:
    """The batch sizes an encoder following the schedule wrote for pushes of these tile counts."""
    sizes, done = [], 0
    for tiles in push_tiles:
        while tiles:
            size = min(scheduled_batch(done, divisor, max_batch), tiles)
            sizes.append(size)
            tiles -= size
            done += size
    return sizes


class StackIntegrityError(ArchiveError):
    """Decoding did not restore the initial stack: the payload is corrupt or from another model."""


def bits_per_image_bound(model: CodingModel, particles: int = 1) -> int:
    """Expected bits popped per image are at most K · L · n · log2 B (max entropy of the buckets of
    K particle chains) plus log2 K for the particle index."""
    return particles * model.num_layers * model.latent_dim * model.bucket_bits + (particles - 1).bit_length()


def initial_word_count(model: CodingModel, particles: int = 1) -> int:
    """Enough 32-bit words for one image's posterior pops plus the reserve (a function of the model)."""
    return -(-(bits_per_image_bound(model, particles) + 2 * HEAD_RESERVE_BITS) // 32)


def initial_words(model: CodingModel, seed: int = 0x5E2E, particles: int = 1) -> np.ndarray:
    words = np.random.default_rng(seed).integers(1, 1 << 32, size=initial_word_count(model, particles),
                                                  dtype=np.uint64)
    return words.astype(np.uint32)


class BitsBackEncoder:
    """Appends batches of binary images to one ANS stack."""

    def __init__(self, model: CodingModel, max_batch: int = 256, warm=None, particles: int = 1,
                 divisor: Optional[int] = None) -> None:
        """``warm``: an adaptive context model to start from an empty stack (warm start), coding
        the first images with it until the stack can pay for bits-back; None: initial words.
        ``particles``: K > 1 codes each tile with importance-weighted bits-back (BB-IS).
        ``divisor``: batch sizes follow ``scheduled_batch`` (not stored), or ScheduleUnaffordable."""
        if not 1 <= max_batch <= 65535:   # the archive stores batch sizes as uint16
            raise ValueError(f"max_batch must be in 1..65535, not {max_batch}")
        if not 1 <= particles <= MAX_PARTICLES:
            raise ValueError(f"particles must be in 1..{MAX_PARTICLES}, not {particles}")
        self.model, self.max_batch, self.warm, self.particles = model, max_batch, warm, particles
        self.divisor, self.tiles_done = divisor, 0
        self.coder = constriction.stream.stack.AnsCoder(
            *(() if warm else (initial_words(model, particles=particles),)))
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
        return int(max(0, min(self.max_batch, spare // bits_per_image_bound(self.model, self.particles))))

    def push(self, images: np.ndarray, masks: Optional[np.ndarray] = None) -> None:
        """Encode tiles (N, pixels) of 0/1, in as many batches as the stack affords; ``masks``
        (N, pixels) bool marks the real pixels of padded edge tiles (only those are coded)."""
        images = require_bilevel(np.ascontiguousarray(images), "bits-back tiles").reshape(len(images), -1)
        start = 0
        while start < len(images):
            affordable = self.affordable_batch()
            if self.divisor:
                size = min(scheduled_batch(self.tiles_done, self.divisor, self.max_batch), len(images) - start)
                if size > affordable:
                    raise ScheduleUnaffordable(f"batch {len(self.batch_sizes)} needs {size} tiles' bits")
            else:
                size = min(affordable, len(images) - start)
            if size == 0:
                raise RuntimeError("bits-back stack has too few bits for even one image")
            self._encode_batch(images[start:start + size], None if masks is None else masks[start:start + size])
            self.batch_sizes.append(size)
            self.tiles_done += size
            start += size

    def push_unordered(self, images: np.ndarray, tile: tuple) -> None:
        """Encode a collection whose order does not matter (N, H, W): each batch's images are
        drawn from the stack (``multiset.draw``), so the order's log2 N! bits come back."""
        by_key = {}
        for image in images:
            by_key.setdefault(key(image), image)
        multiset = Multiset(key(image) for image in images)
        per_image = tile_count([images.shape[1:]], tile)
        bound = per_image * bits_per_image_bound(self.model, self.particles) + ORDER_BITS
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
        """Pop the latents from the posterior, push x under the likelihood and the latents under
        the prior; with K particles pop K chains and the chosen one's index (BB-IS)."""
        m, coder, timed, k = self.model, self.coder, self.timer, self.particles
        with timed("networks"):
            evidence = m.evidence(x.astype(np.int64))
        if k > 1:
            evidence = np.repeat(evidence, k, axis=1)           # rows: image-major, particle-minor
        chains = _pop_posterior(m, coder, evidence, timed)
        if coder.num_valid_bits() < 32:      # cannot happen with affordable_batch; never silently
            raise RuntimeError("bits-back stack ran dry during posterior pops")
        x_rows = np.repeat(x, k, axis=0) if k > 1 else x
        with timed("networks"):
            p1 = m.pixel_probabilities(chains.zs, x_rows)
        if k == 1:
            _push_pixels(m, coder, x, p1, mask, timed)
            _push_prior(m, coder, chains.indices, timed)
            return
        with timed("importance"):
            log_w = log_weights(x_rows, p1, chains, None if mask is None else np.repeat(mask, k, axis=0))
            chosen = coder.decode(_CATEGORICAL, index_masses(log_w.reshape(-1, k)).astype(np.float64))
        rows = np.arange(len(x)) * k + chosen
        others = np.setdiff1d(np.arange(len(x) * k), rows)     # sorted: each image's others in particle order
        with timed("ans"):
            coder.encode_reverse(chosen.astype(np.int32), constriction.stream.model.Uniform(k))
            _push_posterior(coder, chains.take(others))
        _push_pixels(m, coder, x, p1[rows], mask, timed)
        _push_prior(m, coder, [index[rows] for index in chains.indices], timed)

    def compressed(self) -> np.ndarray:
        return self.coder.get_compressed()


def decode_images(model: CodingModel, compressed: np.ndarray, batch_sizes: Iterable[int],
                  progress: Optional[Callable[[int], None]] = None,
                  timer: Optional[PhaseTimer] = None, masks: Optional[np.ndarray] = None,
                  warm=None, warm_shapes: Iterable = (), particles: int = 1) -> np.ndarray:
    """Pop every batch (last encoded first), check the initial words are back, return tiles in order.

    The encoder started a batch only when its stack held enough bits to pay for the batch's
    posterior pops (``affordable_batch``), so after decoding that batch the decoder's stack must
    hold as many: one that holds fewer is corrupt, and decoding stops there instead of popping
    zeros from an empty coder.
    """
    coder = constriction.stream.stack.AnsCoder(np.asarray(compressed, dtype=np.uint32))
    initial = initial_words(model, particles=particles)
    timer = timer or PhaseTimer()
    batches = []
    sizes = list(batch_sizes)
    end = sum(sizes)
    for size in reversed(sizes):
        mask = None if masks is None else masks[end - size:end]
        end -= size
        batches.append(_decode_batch(model, coder, size, timer, mask, particles))
        if coder.num_valid_bits() < HEAD_RESERVE_BITS + size * bits_per_image_bound(model, particles):
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


def verify_segment(model: CodingModel, after: np.ndarray, batch_sizes: list, tiles: np.ndarray,
                   masks: Optional[np.ndarray], before: np.ndarray, particles: int = 1) -> bool:
    """Decode the batches one stretch of encoding pushed (stack ``after``) and check they give
    back ``tiles`` and leave exactly the stack ``before`` it. The stretches of an archive chain
    from its first words to its last, so checking each one checks the whole archive, and each
    check can run while the encoder goes on with the next stretch."""
    coder = constriction.stream.stack.AnsCoder(np.asarray(after, dtype=np.uint32))
    end, timer = len(tiles), PhaseTimer()
    for size in reversed(batch_sizes):
        mask = None if masks is None else masks[end - size:end]
        if not np.array_equal(_decode_batch(model, coder, size, timer, mask, particles), tiles[end - size:end]):
            return False
        end -= size
    return np.array_equal(coder.get_compressed(), before)


def verify_warm(after: np.ndarray, warm, images: list) -> bool:
    """The warm-start images pop back off the stack they started, which must end empty."""
    coder = constriction.stream.stack.AnsCoder(np.asarray(after, dtype=np.uint32))
    decoded = [warm.decode(coder, image.shape) for image in reversed(images)][::-1]
    return coder.num_words() == 0 and all(np.array_equal(a, b) for a, b in zip(decoded, images))


def decode_unordered(model: CodingModel, compressed: np.ndarray, batch_sizes: Iterable[int], shape: tuple,
                     tile: tuple, progress: Optional[Callable[[int], None]] = None, particles: int = 1) -> list:
    """The mirror of ``push_unordered``: images in canonical order (``multiset.canonical_order``)."""
    coder = constriction.stream.stack.AnsCoder(np.asarray(compressed, dtype=np.uint32))
    per_image = tile_count([shape], tile)
    bound = per_image * bits_per_image_bound(model, particles) + ORDER_BITS
    multiset, by_key, timer = Multiset(), {}, PhaseTimer()
    for size in reversed(list(batch_sizes)):
        count = size // per_image
        if count * per_image != size:
            raise StackIntegrityError("batch sizes do not hold whole images")
        shapes = [shape] * count
        tiles = _decode_batch(model, coder, size, timer, tile_masks(shapes, tile), particles)
        for image in reversed(from_tiles(tiles, shapes, tile)):
            k = key(image)
            by_key.setdefault(k, image)
            undraw(coder, multiset, k)
        if coder.num_valid_bits() < HEAD_RESERVE_BITS + count * bound:
            raise StackIntegrityError("the bits-back stack ran dry")
        if progress:
            progress(count)
    if not np.array_equal(coder.get_compressed(), initial_words(model, particles=particles)):
        raise StackIntegrityError("the stack did not return to its initial bits")
    return [by_key[k] for k, c in zip(multiset.keys, multiset.counts) for _ in range(c)]


def _decode_batch(m: CodingModel, coder, batch: int, timed: PhaseTimer, mask: Optional[np.ndarray] = None,
                  particles: int = 1) -> np.ndarray:
    """The mirror of ``BitsBackEncoder._encode_batch``: pops the prior chain and x, then gives
    the posterior bits back (with K particles: pops the other chains and the index first)."""
    k = particles
    chosen_chain = _pop_prior(m, coder, batch, timed)
    x, p1 = _pop_pixels(m, coder, chosen_chain.zs, mask, batch, timed)
    with timed("networks"):
        evidence = m.evidence(x.astype(np.int64))
    if k == 1:
        _push_posterior(coder, _posterior_masses(m, evidence, chosen_chain, timed))
        return x
    other_chains = _pop_posterior(m, coder, np.repeat(evidence, k - 1, axis=1), timed)
    with timed("ans"):
        chosen = coder.decode(constriction.stream.model.Uniform(k), batch).astype(np.int64)
    rows = np.arange(batch) * k + chosen
    others = np.setdiff1d(np.arange(batch * k), rows)
    _posterior_masses(m, evidence, chosen_chain, timed)
    with timed("networks"):
        if p1 is None:                   # (a pixel-regressive likelihood: from the decoded images)
            p1 = m.pixel_probabilities(chosen_chain.zs, x)
        p1_others = m.pixel_probabilities(other_chains.zs, np.repeat(x, k - 1, axis=0))
    chains = Chains.interleave(chosen_chain, rows, other_chains, others)
    p1_all = _merge(p1, rows, p1_others, others)
    with timed("importance"):
        log_w = log_weights(np.repeat(x, k, axis=0), p1_all, chains, None if mask is None else np.repeat(mask, k, axis=0))
        coder.encode_reverse(chosen.astype(np.int32), _CATEGORICAL, index_masses(log_w.reshape(-1, k)).astype(np.float64))
    _push_posterior(coder, chains)
    return x


class Chains:
    """One latent chain per row: bucket indices, latents ẑ, prior (loc, σ) and, once known,
    posterior bucket masses, each a list over layers."""

    def __init__(self, indices: list, zs: list, priors: list, masses: Optional[list] = None) -> None:
        self.indices, self.zs, self.priors, self.masses = indices, zs, priors, masses

    def take(self, rows: np.ndarray) -> "Chains":
        pick = lambda arrays: None if arrays is None else [a[rows] for a in arrays]   # noqa: E731
        return Chains(pick(self.indices), pick(self.zs), [(loc[rows], sigma[rows]) for loc, sigma in self.priors],
                      pick(self.masses))

    @staticmethod
    def interleave(first: "Chains", first_rows: np.ndarray, second: "Chains", second_rows: np.ndarray) -> "Chains":
        """Rows of ``first`` at ``first_rows`` and of ``second`` at ``second_rows``."""
        merge = lambda a, b: _merge(a, first_rows, b, second_rows)    # noqa: E731
        return Chains([merge(a, b) for a, b in zip(first.indices, second.indices)],
                      [merge(a, b) for a, b in zip(first.zs, second.zs)],
                      [(merge(a[0], b[0]), merge(a[1], b[1])) for a, b in zip(first.priors, second.priors)],
                      [merge(a, b) for a, b in zip(first.masses, second.masses)])


def _merge(a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    out = np.empty((len(a_rows) + len(b_rows),) + a.shape[1:], dtype=np.result_type(a, b))
    out[a_rows], out[b_rows] = a, b
    return out


def _pop_posterior(m: CodingModel, coder, evidence: np.ndarray, timed: PhaseTimer) -> Chains:
    """Pop one chain per row of ``evidence`` (L, R, F) from the posterior, layer by layer."""
    rows = evidence.shape[1]
    z_prev, zs, indices, priors, masses_per_layer = None, [], [], [], []
    for layer in range(m.num_layers):
        with timed("networks"):
            p_loc, p_sigma = m.prior(layer, z_prev, rows)
            q_loc, q_inv = m.posterior(layer, evidence[layer], z_prev)
        with timed("buckets"):
            masses = m.bucket_masses(p_loc, p_sigma, q_loc, q_inv)
        with timed("ans"):
            index = coder.decode(_CATEGORICAL, masses.reshape(-1, m.buckets).astype(np.float64))
            index = index.reshape(rows, m.latent_dim)
        with timed("networks"):
            z_prev = m.transform(layer, m.bucket_value(p_loc, p_sigma, index), z_prev)
        indices.append(index)
        zs.append(z_prev)
        priors.append((p_loc, p_sigma))
        masses_per_layer.append(masses)
    return Chains(indices, zs, priors, masses_per_layer)


def _pop_prior(m: CodingModel, coder, rows: int, timed: PhaseTimer) -> Chains:
    """Pop one chain per row from the prior (uniform over its equal-mass buckets)."""
    uniform = constriction.stream.model.Uniform(m.buckets)
    z_prev, zs, indices, priors = None, [], [], []
    for layer in range(m.num_layers):
        with timed("ans"):
            index = coder.decode(uniform, rows * m.latent_dim).reshape(rows, m.latent_dim)
        with timed("networks"):
            p_loc, p_sigma = m.prior(layer, z_prev, rows)
            z_prev = m.transform(layer, m.bucket_value(p_loc, p_sigma, index), z_prev)
        indices.append(index)
        priors.append((p_loc, p_sigma))
        zs.append(z_prev)
    return Chains(indices, zs, priors)


def _posterior_masses(m: CodingModel, evidence: np.ndarray, chains: Chains, timed: PhaseTimer) -> Chains:
    """The posterior bucket masses of known chains (what their pops used)."""
    masses = []
    for layer in range(m.num_layers):
        z_in = chains.zs[layer - 1] if layer > 0 else None
        with timed("networks"):
            q_loc, q_inv = m.posterior(layer, evidence[layer], z_in)
        with timed("buckets"):
            masses.append(m.bucket_masses(*chains.priors[layer], q_loc, q_inv))
    chains.masses = masses
    return chains


def _push_posterior(coder, chains: Chains) -> None:
    """Give the chains' posterior bits back: the mirror of ``_pop_posterior``."""
    for index, masses in zip(reversed(chains.indices), reversed(chains.masses)):
        coder.encode_reverse(index.reshape(-1).astype(np.int32), _CATEGORICAL,
                             masses.reshape(-1, masses.shape[-1]).astype(np.float64))


def _push_prior(m: CodingModel, coder, indices: list, timed: PhaseTimer) -> None:
    with timed("ans"):
        uniform = constriction.stream.model.Uniform(m.buckets)
        for index in reversed(indices):
            coder.encode_reverse(index.reshape(-1).astype(np.int32), uniform)


def _push_pixels(m: CodingModel, coder, x: np.ndarray, p1: np.ndarray, mask: Optional[np.ndarray],
                 timed: PhaseTimer) -> None:
    """x under p(x | ẑ); padding (``mask`` false) is known to the decoder: no bits spent on it. A
    pixel-regressive likelihood pushes position-major (every image's pixel 0 first), the order
    in which the decoder pops a batch one raster position at a time."""
    with timed("ans"):
        if m.regressive:
            x, p1, mask = x.T, p1.T, (None if mask is None else mask.T)
        pixels, probs = x.reshape(-1).astype(np.int32), p1.reshape(-1) / float(1 << PIXEL_BITS)
        if mask is not None:
            keep = mask.reshape(-1)
            pixels, probs = pixels[keep], probs[keep]
        coder.encode_reverse(pixels, _BERNOULLI, probs)


def _pop_pixels(m: CodingModel, coder, zs: list, mask: Optional[np.ndarray], batch: int,
                timed: PhaseTimer) -> np.ndarray:
    """The mirror of ``_push_pixels``: (x given the latents ẑ, the factorized P(1) it used, or
    None for a pixel-regressive likelihood, whose probabilities depend on x)."""
    if m.regressive:
        with timed("pixels"):
            return m.decode_pixels(zs, lambda probs: coder.decode(_BERNOULLI, probs), mask), None
    with timed("networks"):
        p1 = m.pixel_probabilities(zs)
    with timed("ans"):
        probs = p1.reshape(-1) / float(1 << PIXEL_BITS)
        if mask is None:
            return coder.decode(_BERNOULLI, probs).reshape(batch, m.pixels).astype(np.uint8), p1
        keep = mask.reshape(-1)
        x = np.zeros(batch * m.pixels, np.uint8)
        x[keep] = coder.decode(_BERNOULLI, probs[keep])
        return x.reshape(batch, m.pixels), p1


def log_weights(x: np.ndarray, p1: np.ndarray, chains: Chains, mask: Optional[np.ndarray]) -> np.ndarray:
    """Per row, log2 p(x | ẑ) − log2 q(buckets | x) at 2**LOG_BITS, up to a constant shared by
    the particles of one image (the prior's log2 B per latent, the probability scales)."""
    prob = np.where(x.reshape(p1.shape) == 1, p1, (1 << PIXEL_BITS) - p1)
    pixel_logs = log2_fixed(prob)
    if mask is not None:
        pixel_logs = np.where(mask.reshape(p1.shape), pixel_logs, 0)
    total = pixel_logs.sum(-1)
    for index, masses in zip(chains.indices, chains.masses):
        chosen = np.take_along_axis(masses, index[..., None], -1)[..., 0]
        total -= log2_fixed(chosen).sum(-1)
    return total
