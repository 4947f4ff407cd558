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


def test_the_page_model_check_runs_beside_the_encoder_and_catches_a_wrong_pixel_or_payload():
    """A pages chunk is checked by decoding it again in a verifier thread; the check fails on a
    payload or an image that do not match."""
    from serecodec.methods.models import Models
    from serecodec.methods.pages import Pages, _decodes_back
    from serecodec.synthetic import text_page
    page = text_page(np.random.default_rng(3), size=(180, 240))
    models = Models()
    encoded = Pages().encode([page], models, verify=True)
    assert encoded.verified is not None and encoded.verified()
    assert Codec().compress([page], method="pages", verify=True) == Codec().compress([page], method="pages")
    model = models.pages_for(encoded.fields["state"])
    wrong = page.copy()
    wrong[90, 120] ^= 1
    assert not _decodes_back(model, encoded.payload, [wrong], encoded.fields["at"])
    damaged = bytearray(encoded.payload)
    damaged[len(damaged) // 2] ^= 0x40
    assert not _decodes_back(model, bytes(damaged), [page], encoded.fields["at"])
    assert not _decodes_back(model, encoded.payload[:10], [page], encoded.fields["at"])
