"""Compiled kernels of the adaptive context model: context counting and a binary range coder.

The adaptive model must look at pixels one at a time in raster order (each probability depends
on the counts every earlier pixel updated), which costs ~1 µs a pixel through Python calls: a
2-Mpixel page would take seconds each way. Numba compiles these loops to machine code (cached
on disk after the first run), so a page codes at tens of Mpixel/s. Everything is integer
arithmetic, so the encoder and decoder agree bit for bit on every machine.

The coder is the classic carry-propagating binary range coder of LZMA (32-bit range, 8-bit
renormalization, 16-bit probabilities); decoding checks it consumed exactly the payload.

Each row starts with a flag "this row repeats the row above" (JBIG's typical prediction), coded
under counts of its own; a repeated row costs that flag only (blank lines, scaled QR modules).

Context: JBIG2's 16-pixel generic template (row y-2: x-2..x+2; row y-1: x-3..x+3; row y:
x-4..x-1), pixels outside the image read as 0, kept in three shift registers as JBIG does.
"""
from __future__ import annotations

import numpy as np
from numba import njit

PROB_BITS = 16
TOP = 1 << 24
TP_CONTEXT = 1 << 16      # the counts of the "row repeats the one above" flag follow the pixel contexts


@njit(cache=True, inline="always")
def _pixel(image, offset, width, height, y, x):
    if y < 0 or x < 0 or x >= width or y >= height:
        return 0
    return image[offset + y * width + x]


@njit(cache=True, inline="always")
def _probability(counts, ctx):
    """P(1 | ctx) in 1..2^16-1 from the counts (n0, n1), KT-style: (n1 + 1/2) / (n0 + n1 + 1)."""
    n0 = counts[ctx, 0]
    n1 = counts[ctx, 1]
    p = ((2 * n1 + 1) << PROB_BITS) // (2 * (n0 + n1) + 2)
    if p < 1:
        p = 1
    elif p > (1 << PROB_BITS) - 1:
        p = (1 << PROB_BITS) - 1
    return p


@njit(cache=True, inline="always")
def _update(counts, ctx, bit, increment, limit):
    counts[ctx, bit] += increment
    if counts[ctx, 0] + counts[ctx, 1] > limit:
        counts[ctx, 0] = (counts[ctx, 0] + 1) >> 1
        counts[ctx, 1] = (counts[ctx, 1] + 1) >> 1


@njit(cache=True)
def _context_walk(image, offset, width, height, y, x, r2, r1, r0):
    """Registers for pixel (y, x+1) from those of (y, x) and the pixel just coded."""
    r2 = ((r2 << 1) | _pixel(image, offset, width, height, y - 2, x + 3)) & 0x1F
    r1 = ((r1 << 1) | _pixel(image, offset, width, height, y - 1, x + 4)) & 0x7F
    r0 = ((r0 << 1) | image[offset + y * width + x]) & 0xF
    return r2, r1, r0


@njit(cache=True)
def _row_start(image, offset, width, height, y):
    r2 = 0
    for dx in range(-2, 3):
        r2 = (r2 << 1) | _pixel(image, offset, width, height, y - 2, dx)
    r1 = 0
    for dx in range(-3, 4):
        r1 = (r1 << 1) | _pixel(image, offset, width, height, y - 1, dx)
    return r2, r1, 0


@njit(cache=True)
def model_sequence(pixels, heights, widths, counts, increment, limit):
    """The coded symbols and their P(1) (1..2^16-1), in coding order: per row a "repeats the row
    above" flag, then (unless it repeats) every pixel of the row. Updates ``counts``."""
    bits = np.empty(pixels.size + heights.sum(), dtype=np.uint8)
    probs = np.empty(pixels.size + heights.sum(), dtype=np.int64)
    n = 0
    offset = 0
    for i in range(heights.size):
        height = heights[i]
        width = widths[i]
        for y in range(height):
            same = 1
            for x in range(width):
                if pixels[offset + y * width + x] != _pixel(pixels, offset, width, height, y - 1, x):
                    same = 0
                    break
            probs[n] = _probability(counts, TP_CONTEXT)
            bits[n] = same
            n += 1
            _update(counts, TP_CONTEXT, same, increment, limit)
            if same:
                continue
            r2, r1, r0 = _row_start(pixels, offset, width, height, y)
            for x in range(width):
                ctx = (r2 << 11) | (r1 << 4) | r0
                bit = pixels[offset + y * width + x]
                probs[n] = _probability(counts, ctx)
                bits[n] = bit
                n += 1
                _update(counts, ctx, bit, increment, limit)
                r2, r1, r0 = _context_walk(pixels, offset, width, height, y, x, r2, r1, r0)
        offset += height * width
    return bits[:n], probs[:n]


@njit(cache=True)
def _shift_low(out, n_out, low, cache, cache_size):
    """LZMA's shift_low: emit the cached byte (plus carry) once the carry is settled."""
    mask32 = np.uint64(0xFFFFFFFF)
    if low < np.uint64(0xFF000000) or low > mask32:
        carry = low >> np.uint64(32)
        temp = cache
        while True:
            if n_out == out.size:
                out = np.concatenate((out, np.empty(out.size, dtype=np.uint8)))
            out[n_out] = np.uint8((temp + carry) & np.uint64(0xFF))
            n_out += 1
            temp = np.uint64(0xFF)
            cache_size -= 1
            if cache_size == 0:
                break
        cache = (low >> np.uint64(24)) & np.uint64(0xFF)
    cache_size += 1
    low = (low & np.uint64(0x00FFFFFF)) << np.uint64(8)
    return out, n_out, low, cache, cache_size


@njit(cache=True, inline="always")
def encode_bit(bit, p1, low, rng, out, n_out, cache, cache_size):
    """Code one binary decision at P(1) = p1 / 2^16 (1..65535) and renormalize (LZMA's coder)."""
    bound = (rng >> np.uint64(16)) * np.uint64(p1)
    if bit:
        rng = bound
    else:
        low += bound
        rng -= bound
    while rng < np.uint64(TOP):
        rng = (rng << np.uint64(8)) & np.uint64(0xFFFFFFFF)
        out, n_out, low, cache, cache_size = _shift_low(out, n_out, low, cache, cache_size)
    return out, n_out, low, rng, cache, cache_size


@njit(cache=True, inline="always")
def decode_bit(p1, code, rng, payload, pos):
    """The decoder's twin of ``encode_bit``: (bit, code, rng, pos); bytes past the end read 0."""
    bound = (rng >> np.uint64(16)) * np.uint64(p1)
    if code < bound:
        rng = bound
        bit = 1
    else:
        code -= bound
        rng -= bound
        bit = 0
    while rng < np.uint64(TOP):
        rng = (rng << np.uint64(8)) & np.uint64(0xFFFFFFFF)
        code = ((code << np.uint64(8)) | np.uint64(payload[pos] if pos < payload.size else 0)) & np.uint64(0xFFFFFFFF)
        pos += 1
    return bit, code, rng, pos


@njit(cache=True, inline="always")
def start_decoding(payload):
    """The decoder's first code word (the encoder's 5 flushed-in bytes) and the read position."""
    code = np.uint64(0)
    for pos in range(5):
        code = (code << np.uint64(8)) | np.uint64(payload[pos] if pos < payload.size else 0)
    return code & np.uint64(0xFFFFFFFF), 5


@njit(cache=True, inline="always")
def finish_encoding(out, n_out, low, cache, cache_size):
    """The payload: ``out`` with the last bytes of ``low`` pushed out."""
    for _ in range(5):
        out, n_out, low, cache, cache_size = _shift_low(out, n_out, low, cache, cache_size)
    return out[:n_out]


@njit(cache=True)
def encode_pixels(pixels, heights, widths, counts, increment, limit):
    """Range-code the images (flat uint8 0/1 pixels, row-major, one after another): each image's
    symbols come from ``model_sequence`` (counts carried over), so memory stays per image."""
    out = np.empty(1024 + pixels.size // 16, dtype=np.uint8)
    n_out = 0
    low = np.uint64(0)
    rng = np.uint64(0xFFFFFFFF)
    cache = np.uint64(0)
    cache_size = 1
    offset = 0
    for i in range(heights.size):
        size = heights[i] * widths[i]
        bits, probs = model_sequence(pixels[offset:offset + size], heights[i:i + 1], widths[i:i + 1], counts,
                                     increment, limit)
        offset += size
        for k in range(bits.size):
            out, n_out, low, rng, cache, cache_size = encode_bit(bits[k], probs[k], low, rng, out, n_out, cache,
                                                                 cache_size)
    return finish_encoding(out, n_out, low, cache, cache_size)


@njit(cache=True)
def context_at(pixels, offset, width, height, y, x):
    """The 16-pixel context of (y, x) computed from scratch (what the registers hold there)."""
    ctx = 0
    for dx in range(-2, 3):
        ctx = (ctx << 1) | _pixel(pixels, offset, width, height, y - 2, x + dx)
    for dx in range(-3, 4):
        ctx = (ctx << 1) | _pixel(pixels, offset, width, height, y - 1, x + dx)
    for dx in range(-4, 0):
        ctx = (ctx << 1) | _pixel(pixels, offset, width, height, y, x + dx)
    return ctx


@njit(cache=True)
def decode_pixels(payload, heights, widths, counts, increment, limit, pixels):
    """Fill ``pixels`` (flat, preallocated); returns how many payload bytes the decoder read.

    A corrupted payload cannot run forever: the loop is bounded by the pixel count, and reading
    more than a few bytes past the end stops it early (the caller then refuses the archive).
    """
    n = payload.size
    code, pos = start_decoding(payload)
    rng = np.uint64(0xFFFFFFFF)
    offset = 0
    for i in range(heights.size):
        height = heights[i]
        width = widths[i]
        for y in range(height):
            if pos > n + 8:
                return pos
            for x in range(-1, width):
                if x < 0:
                    ctx = TP_CONTEXT
                else:
                    if x == 0:
                        r2, r1, r0 = _row_start(pixels, offset, width, height, y)
                    ctx = (r2 << 11) | (r1 << 4) | r0
                bit, code, rng, pos = decode_bit(_probability(counts, ctx), code, rng, payload, pos)
                _update(counts, ctx, bit, increment, limit)
                if x < 0:
                    if bit:          # the row repeats the one above (all 0 above the first row)
                        for i in range(width):
                            pixels[offset + y * width + i] = _pixel(pixels, offset, width, height, y - 1, i)
                        break
                    continue
                pixels[offset + y * width + x] = bit
                r2, r1, r0 = _context_walk(pixels, offset, width, height, y, x, r2, r1, r0)
        offset += height * width
    return pos


@njit(cache=True)
def count_contexts(pixels, heights, widths, counts):
    """Add every pixel's (context, value) to ``counts`` (for fitting the initial counts)."""
    offset = 0
    for i in range(heights.size):
        height = heights[i]
        width = widths[i]
        for y in range(height):
            r2, r1, r0 = _row_start(pixels, offset, width, height, y)
            for x in range(width):
                ctx = (r2 << 11) | (r1 << 4) | r0
                counts[ctx, pixels[offset + y * width + x]] += 1
                r2, r1, r0 = _context_walk(pixels, offset, width, height, y, x, r2, r1, r0)
        offset += height * width
