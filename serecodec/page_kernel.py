"""The compiled kernel of the context-mixing page model: one loop that both encodes and decodes.

Per pixel, in raster order, M context models (each a causal template read as a number: direct
table index when it fits, else hashed) give a probability from adaptive state (a 22-bit
probability and a 10-bit count per slot: the rate is 1/(n + 1.5) until the count reaches the
model's limit, so a fresh context learns fast and an old one follows the page). A logistic
mixer (a weight set chosen by the four nearest pixels) combines their logits; an APM (SSE) stage
refines the mixed probability in a small context; the LZMA binary range coder codes the pixel.
Each row starts with a "repeats the row above" flag (JBIG's typical prediction). The large hashed
models also keep a run map (paq's idea): per context the last value seen there and how many times
in a row, turned into a mixer input by an adaptive table over (run length, value), which is what
makes exactly repeated shapes (the glyphs of rendered text) nearly free after a few copies.

Encoding and decoding run the same function (``decoding`` picks where each bit comes from), so
the two cannot drift apart. Everything is integer arithmetic: identical on every machine. Images
live in a zero-padded buffer, so every template read is inside it whatever the image size, and a
corrupted payload stops the decoder within one row of running past its end.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .adaptive_kernel import decode_bit, encode_bit, finish_encoding, start_decoding

from .page_tables import APM_STEP, NEAR_SETS, PAD, STATE_BITS, STRETCH_LIMIT

@njit(cache=True, inline="always")
def _squash(d, squash):
    if d > STRETCH_LIMIT:
        d = STRETCH_LIMIT
    elif d < -STRETCH_LIMIT:
        d = -STRETCH_LIMIT
    return squash[d + STRETCH_LIMIT]


@njit(cache=True, inline="always")
def _learn(tables, slot, bit, limit, reciprocal):
    state = np.int64(tables[slot])
    p = state >> STATE_BITS
    n = state & ((1 << STATE_BITS) - 1)
    p += (((bit << 22) - p) * reciprocal[n]) >> 16
    if p < 0:
        p = 0
    elif p > (1 << 22) - 1:
        p = (1 << 22) - 1
    if n < limit:
        n += 1
    tables[slot] = np.uint32((p << STATE_BITS) | n)


@njit(cache=True, inline="always")
def _dot(inputs, weights, row, n):
    """A mixer's clamped logit for weight set ``row``."""
    dot = np.int64(0)
    for m in range(n):
        dot += inputs[m] * weights[row, m]
    dot >>= 16
    if dot > STRETCH_LIMIT:
        dot = STRETCH_LIMIT
    elif dot < -STRETCH_LIMIT:
        dot = -STRETCH_LIMIT
    return dot


@njit(cache=True, inline="always")
def _train(inputs, weights, row, n, bit, p, rate):
    err = ((bit << 16) - p) * rate
    for m in range(n):
        weights[row, m] += (inputs[m] * err) >> 18


@njit(cache=True, inline="always")
def _apm_update(apm, slot, frac, bit, rate):
    target = bit << 16
    apm[slot] += ((target - apm[slot]) * (APM_STEP - frac)) // (APM_STEP << rate)
    apm[slot + 1] += ((target - apm[slot + 1]) * frac) // (APM_STEP << rate)


@njit(cache=True)
def code_images(decoding, pixels, heights, widths, payload, offsets, lengths, bases, bits, limits,
                tables, weights, apm, apm_model, mixer_rate, apm_rate, tp_slot, squash, stretch, reciprocal,
                runs, run_model, run_bases, runmap_slot, weights2, final, apm2):
    """Encode ``pixels`` (decoding = False; returns the payload) or decode ``payload`` into
    ``pixels`` (decoding = True; returns the bytes read, in a 1-element array) with the state
    arrays (``tables``, ``weights``, ``apm``: updated in place, carried from image to image).

    A layered state (``final`` not empty) adds two mixers over the same inputs (weight sets chosen
    by the ink count of the 10-pixel context with the large model's confidence, and by the run
    maps), a final mixer over the three mixers' logits, and a second APM over the 16-pixel
    template; a state without them codes exactly as the first layout did."""
    models = lengths.size
    out = np.empty(1024 + (0 if decoding else pixels.size // 16), dtype=np.uint8)
    n_out = 0
    low = np.uint64(0)
    rng = np.uint64(0xFFFFFFFF)
    cache = np.uint64(0)
    cache_size = 1
    n_in = payload.size
    pos = 0
    code = np.uint64(0)
    if decoding:
        code, pos = start_decoding(payload)
    run_models = run_bases.size
    inputs = np.zeros(models + run_models + 1, dtype=np.int64)
    slots = np.zeros(models, dtype=np.int64)
    run_at = np.zeros(run_models, dtype=np.int64)
    run_slot = np.zeros(run_models, dtype=np.int64)
    deltas = np.zeros(offsets.shape[:2], dtype=np.int64)
    layered = final.size > 0
    n_mix = models + run_models + 1
    logits = np.zeros(final.shape[1], dtype=np.int64)       # the three mixers' logits, for the final one
    p_1 = p_2 = p_3 = np.int64(0)
    set2 = set3 = a2 = np.int64(0)
    offset = 0
    for image in range(heights.size):
        height = heights[image]
        width = widths[image]
        stride = width + 2 * PAD
        buffer = np.zeros((height + PAD) * stride, dtype=np.uint8)
        for m in range(models):
            for k in range(lengths[m]):
                deltas[m, k] = offsets[m, k, 0] * stride + offsets[m, k, 1]
        for y in range(height):
            if decoding and pos > n_in + 8:
                out[0] = 0
                return out[:0], pos
            row = (y + PAD) * stride + PAD
            for x in range(-1, width):
                at = row + x
                if x < 0:                                   # the row-repeat flag
                    p1 = np.int64(tables[tp_slot]) >> (STATE_BITS + 6)
                    p1 = min(max(p1, 1), 65535)
                else:
                    for m in range(models):
                        ctx = np.uint64(0)
                        for k in range(lengths[m]):
                            ctx = (ctx << np.uint64(1)) | np.uint64(buffer[at + deltas[m, k]])
                        if bits[m] < 64 and lengths[m] > bits[m]:
                            ctx = (ctx * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits[m])
                        slots[m] = bases[m] + np.int64(ctx)
                        inputs[m] = stretch[np.int64(tables[slots[m]]) >> (STATE_BITS + 10)]
                    for r in range(run_models):              # the run maps of the first hashed models
                        m = run_model[r]
                        run_at[r] = run_bases[r] + slots[m] - bases[m]
                        state = np.int64(runs[run_at[r]])
                        if state == 0:
                            run_slot[r] = -1
                            inputs[models + r] = 0
                        else:
                            length = state >> 1
                            run_slot[r] = runmap_slot + r * 64 + min(length, 31) * 2 + (state & 1)
                            st = stretch[np.int64(tables[run_slot[r]]) >> (STATE_BITS + 10)]
                            inputs[models + r] = st if state & 1 else -st
                    inputs[models + run_models] = 256
                    wset = (np.int64(buffer[at - 1]) << 3) | (np.int64(buffer[at - stride - 1]) << 2) | \
                        (np.int64(buffer[at - stride]) << 1) | np.int64(buffer[at - stride + 1])
                    dot = _dot(inputs, weights, wset, n_mix)
                    p_mix = squash[dot + STRETCH_LIMIT]
                    if layered:
                        near = np.int64(0)
                        for k in range(lengths[1]):
                            near += np.int64(buffer[at + deltas[1, k]])
                        count = np.int64(tables[slots[2]]) & ((1 << STATE_BITS) - 1)
                        set2 = near * 4 + (0 if count == 0 else (1 if count < 3 else (2 if count < 16 else 3)))
                        run0 = np.int64(runs[run_at[0]])
                        run1 = np.int64(runs[run_at[1]])
                        set3 = NEAR_SETS + min(run0 >> 1, 7) * 2 + (run0 & 1) + 16 * ((run1 & 1) + (1 if run1 > 0 else 0))
                        logits[0], p_1 = dot, p_mix
                        logits[1] = _dot(inputs, weights2, set2, n_mix)
                        logits[2] = _dot(inputs, weights2, set3, n_mix)
                        p_2, p_3 = squash[logits[1] + STRETCH_LIMIT], squash[logits[2] + STRETCH_LIMIT]
                        dot = _dot(logits, final, wset, logits.size)
                        p_mix = squash[dot + STRETCH_LIMIT]
                    knot = (dot + 3072) // APM_STEP
                    frac = (dot + 3072) - knot * APM_STEP
                    a_slot = (slots[apm_model] - bases[apm_model]) * 33 + knot
                    p_apm = (apm[a_slot] * (APM_STEP - frac) + apm[a_slot + 1] * frac) // APM_STEP
                    if layered:
                        c16 = np.int64(0)
                        for k in range(16):
                            c16 = (c16 << 1) | np.int64(buffer[at + deltas[0, k]])
                        a2 = c16 * 33 + knot
                        p_apm2 = (apm2[a2] * (APM_STEP - frac) + apm2[a2 + 1] * frac) // APM_STEP
                        p1 = (2 * p_mix + 3 * p_apm + 3 * p_apm2) >> 3
                    else:
                        p1 = (p_mix + 3 * p_apm) >> 2
                    p1 = min(max(p1, 1), 65535)
                if decoding:
                    bit, code, rng, pos = decode_bit(p1, code, rng, payload, pos)
                else:
                    if x < 0:
                        bit = 1
                        for i in range(width):
                            if pixels[offset + y * width + i] != buffer[row - stride + i]:
                                bit = 0
                                break
                    else:
                        bit = np.int64(pixels[offset + y * width + x])
                    out, n_out, low, rng, cache, cache_size = encode_bit(bit, p1, low, rng, out, n_out, cache,
                                                                         cache_size)
                if x < 0:
                    _learn(tables, tp_slot, bit, limits[models], reciprocal)
                    if bit:                               # the row repeats the one above
                        for i in range(width):
                            buffer[row + i] = buffer[row - stride + i]
                        break
                    continue
                buffer[at] = bit
                for m in range(models):
                    _learn(tables, slots[m], bit, limits[m], reciprocal)
                for r in range(run_models):
                    state = np.int64(runs[run_at[r]])
                    if run_slot[r] >= 0:
                        _learn(tables, run_slot[r], 1 if bit == (state & 1) else 0, 1023, reciprocal)
                    if state != 0 and bit == (state & 1):
                        length = min((state >> 1) + 1, 127)
                    else:
                        length = 1
                    runs[run_at[r]] = np.uint8((length << 1) | bit)
                if layered:
                    _train(logits, final, wset, logits.size, bit, p_mix, mixer_rate)
                    _train(inputs, weights, wset, n_mix, bit, p_1, mixer_rate)
                    _train(inputs, weights2, set2, n_mix, bit, p_2, mixer_rate)
                    _train(inputs, weights2, set3, n_mix, bit, p_3, mixer_rate)
                    _apm_update(apm2, a2, frac, bit, apm_rate)
                else:
                    _train(inputs, weights, wset, n_mix, bit, p_mix, mixer_rate)
                _apm_update(apm, a_slot, frac, bit, apm_rate)
        if decoding:
            for y in range(height):
                for x in range(width):
                    pixels[offset + y * width + x] = buffer[(y + PAD) * stride + PAD + x]
        offset += height * width
    if not decoding:
        return finish_encoding(out, n_out, low, cache, cache_size), pos
    return out[:n_out], pos
