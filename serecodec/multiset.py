"""Bits-back over the order of an unordered collection (Severo et al., "Compressing multisets
with large alphabets"): an archive of N images saves about log2 N! bits, less for duplicates.

The encoder draws the next image to code *from the stack*: it pops a position j ~ Uniform(n)
in the remaining multiset laid out in canonical order (so image e is drawn with probability
count(e)/n), then pushes back j's offset among e's duplicates under Uniform(count(e)). The
decoder, which rebuilds the multiset as it decodes, mirrors it: after decoding e it inserts e,
pops the offset and pushes j back. Net cost per draw: −log2(count(e)/n) bits taken back.
Uniform pops and pushes are exact integer operations in constriction, so both sides agree.

Canonical order: images sorted by their bytes (shape, then bit-packed pixels). It is also the
order in which an unordered archive is restored.
"""
from __future__ import annotations

import bisect
from itertools import accumulate

import constriction
import numpy as np

ORDER_BITS = 32          # at most what one draw pops (n < 2**32), for the stack's budget


def key(image: np.ndarray) -> bytes:
    """The canonical sort key of an image: its shape, then its bit-packed pixels."""
    height, width = image.shape
    return height.to_bytes(4, "big") + width.to_bytes(4, "big") + np.packbits(image.astype(np.uint8)).tobytes()


def canonical_order(images) -> list:
    """Indexes that sort ``images`` into canonical order (stable for duplicates)."""
    keys = [key(image) for image in images]
    return sorted(range(len(keys)), key=keys.__getitem__)


class Multiset:
    """Distinct keys in sorted order with their counts (a list: O(n) updates, fine to ~10^5)."""

    def __init__(self, keys=()) -> None:
        self.keys: list = []
        self.counts: list = []
        self.size = 0
        for k in keys:
            self.insert(k)

    def insert(self, k: bytes) -> int:
        i = bisect.bisect_left(self.keys, k)
        if i < len(self.keys) and self.keys[i] == k:
            self.counts[i] += 1
        else:
            self.keys.insert(i, k)
            self.counts.insert(i, 1)
        self.size += 1
        return i

    def remove_at(self, i: int) -> None:
        self.counts[i] -= 1
        self.size -= 1
        if not self.counts[i]:
            del self.keys[i], self.counts[i]

    def start(self, i: int) -> int:
        """Position of the first copy of distinct element i in the canonical layout."""
        return sum(self.counts[:i])

    def locate(self, position: int) -> int:
        """The distinct element covering ``position``."""
        return bisect.bisect_right(list(accumulate(self.counts)), position)


def pop_uniform(coder, n: int) -> int:
    """Pop a value ~ Uniform(n) (nothing to pop for n == 1)."""
    return int(coder.decode(constriction.stream.model.Uniform(n))) if n > 1 else 0


def push_uniform(coder, value: int, n: int) -> None:
    if n > 1:
        coder.encode_reverse(np.array([value], dtype=np.int32), constriction.stream.model.Uniform(n))


def draw(coder, multiset: Multiset) -> bytes:
    """Encoder side: pop the next element from the stack and remove it from the multiset."""
    position = pop_uniform(coder, multiset.size)
    i = multiset.locate(position)
    push_uniform(coder, position - multiset.start(i), multiset.counts[i])
    chosen = multiset.keys[i]
    multiset.remove_at(i)
    return chosen


def undraw(coder, multiset: Multiset, k: bytes) -> None:
    """Decoder side, the exact mirror of ``draw``: insert ``k`` and push its position back."""
    i = multiset.insert(k)
    offset = pop_uniform(coder, multiset.counts[i])
    push_uniform(coder, multiset.start(i) + offset, multiset.size)
