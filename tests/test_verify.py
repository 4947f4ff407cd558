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



def test_a_chunk_check_runs_beside_the_encoder_and_catches_a_wrong_pixel_or_payload():
    """A chunk without a check of its own (here the page model's, encoded without one) is checked by decoding it again
    in a verifier thread; the check fails on a payload or an image that do not match."""
    from serecodec.container import Chunk
    from serecodec.errors import VerificationError
    from serecodec.methods.pages import Pages
    from serecodec.synthetic import text_page

    def fails(chunk, image) -> bool:
        try:
            return not codec._decodes_back(pages, chunk, [image.shape], [image])
        except VerificationError:
            return True

    page = text_page(np.random.default_rng(3), size=(180, 240))
    codec, pages = Codec(), Pages()
    encoded = pages.encode([page], codec.models)

    def chunk_of(payload: bytes):
        return Chunk(pages.code, 1, pages.name, params=pages.params_bytes(encoded.fields), payload=payload,
                     fields=dict(encoded.fields))
    check = codec._verify_chunk(pages, encoded, chunk_of(encoded.payload), [page], False)
    assert check is not None and check()
    assert Codec().compress([page], method="pages", verify=True) == Codec().compress([page], method="pages")
    wrong = page.copy()
    wrong[90, 120] ^= 1
    assert fails(chunk_of(encoded.payload), wrong)
    damaged = bytearray(encoded.payload)
    damaged[len(damaged) // 2] ^= 0x40
    assert fails(chunk_of(bytes(damaged)), page)
    assert fails(chunk_of(encoded.payload[:10]), page)
