"""Verification while compressing: stretch by stretch for bits-back, a full decode otherwise."""
import numpy as np

from serecodec.bitsback import BitsBackEncoder, verify_segment
from serecodec.tiles import to_tiles
from serecodec.codec import Codec


def test_verified_archives_are_the_unverified_ones(digits):
    squares = digits[:120].reshape(-1, 28, 28)
    codec = Codec()
    for method in ("bits-back", "adaptive", "deflate", "auto"):
        assert codec.compress(squares, method=method, verify=True) == codec.compress(squares, method=method)
    assert codec.compress(squares, ordered=False, verify=True) == codec.compress(squares, ordered=False)
    pages = [(np.random.default_rng(0).random((40, 70)) < 0.1).astype(np.uint8), squares[0]]
    assert codec.compress(pages, method="bits-back", verify=True) == codec.compress(pages, method="bits-back")


def test_a_stretch_check_catches_a_wrong_pixel_or_stack(digits):
    codec = Codec()
    tiles, masks = to_tiles(digits[:30].reshape(-1, 28, 28), codec.tile)
    encoder = BitsBackEncoder(codec.model)
    before = encoder.compressed().copy()
    encoder.push(tiles, masks)
    after = encoder.compressed()
    assert verify_segment(codec.model, after, encoder.batch_sizes, tiles, masks, before)
    wrong = tiles.copy()
    wrong[7, 300] ^= 1
    assert not verify_segment(codec.model, after, encoder.batch_sizes, wrong, masks, before)
    other = before.copy()
    other[0] ^= 1
    assert not verify_segment(codec.model, after, encoder.batch_sizes, tiles, masks, other)
