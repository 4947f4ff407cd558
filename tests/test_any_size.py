"""Any bilevel image, any size: every method round-trips mixed sizes exactly; tile padding is never coded."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serecodec.tiles import from_tiles, tile_count, tile_masks, to_tiles
from serecodec.codec import Codec
from serecodec.synthetic import line_art, qr_code, text_page

SIZES = [(1, 1), (1, 50), (50, 1), (27, 29), (28, 28), (57, 113)]


@pytest.fixture(scope="module")
def codec():
    return Codec()


@pytest.fixture(scope="module")
def mixed(digits):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 2, size).astype(np.uint8) for size in SIZES]
    images[4] = digits[0].reshape(28, 28)
    images[5][10:40, 20:90] = 0                    # some structure, not only noise
    return images


@pytest.mark.parametrize("method", ["auto", "bits-back", "adaptive", "deflate"])
def test_mixed_sizes_round_trip_in_one_archive(codec, mixed, method):
    data = codec.compress(mixed, method=method, names=[f"im{i}" for i in range(len(mixed))])
    archive = codec.read(data)
    assert archive.shapes == SIZES and archive.sizes == [(h, w, 1) for h, w in SIZES]
    decoded = codec.decompress(data)
    assert isinstance(decoded, list) and len(decoded) == len(mixed)
    for got, want in zip(decoded, mixed):
        assert got.shape == want.shape and np.array_equal(got, want)       # every pixel


def test_runs_of_equal_sizes_cost_almost_nothing(codec, digits):
    squares = digits[:50].reshape(-1, 28, 28)
    one = codec.read(codec.compress(squares, method="deflate"))
    assert one.sizes == [(28, 28, 50)]


def test_tiles_cover_images_and_masks_mark_only_real_pixels():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 2, s).astype(np.uint8) for s in SIZES]
    tiles, masks = to_tiles(images, (28, 28))
    assert len(tiles) == tile_count(SIZES, (28, 28)) == 1 + 2 + 2 + 2 + 1 + 3 * 5
    assert np.array_equal(masks, tile_masks(SIZES, (28, 28)))          # the decoder rebuilds them from sizes
    assert masks.sum() == sum(h * w for h, w in SIZES)                   # only real pixels are coded
    assert (tiles[~masks] == 0).all()                                    # padding is a value the decoder knows
    for got, want in zip(from_tiles(tiles, SIZES, (28, 28)), images):
        assert np.array_equal(got, want)


def test_padding_is_not_coded(codec):
    """A 1x1 image costs the same whether its padded tile could hold ink or not: only its pixel
    is pushed, and the decoder pops only that pixel (a mismatch would break the round trip)."""
    for value in (0, 1):
        image = np.full((1, 1), value, np.uint8)
        data = codec.compress(image, method="bits-back")
        assert np.array_equal(codec.decompress(data), image[None])
    bits_one = codec.read(codec.compress(np.ones((1, 1), np.uint8), method="bits-back")).payload_bits
    speckle = (np.random.default_rng(0).random((28, 28)) < 0.4).astype(np.uint8)   # mostly 0: not inverted
    bits_full = codec.read(codec.compress(speckle, method="bits-back")).payload_bits
    assert bits_one < bits_full        # a full tile costs more than one pixel of it


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=4), st.integers(0, 2 ** 32 - 1))
def test_adaptive_model_decodes_exactly_what_it_encoded(codec, sizes, seed):
    rng = np.random.default_rng(seed)
    images = [(rng.random(s) < rng.random()).astype(np.uint8) for s in sizes]
    data = codec.compress(images, method="adaptive")
    decoded = codec.decompress(data)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, images))


def test_pages_qr_codes_and_line_art(codec):
    rng = np.random.default_rng(5)
    images = [text_page(rng, (300, 420), 12), qr_code(rng, 3), line_art(rng, (200, 150))]
    data = codec.compress(images)
    assert codec.read(data).method == "pages"
    assert all(np.array_equal(a, b) for a, b in zip(codec.decompress(data), images))
    assert 8 * len(data) / sum(i.size for i in images) < 0.3


def test_api_accepts_one_image_bool_and_0_255_and_refuses_empty(codec, digits):
    from serecodec.errors import InputError
    image = digits[0].reshape(28, 28)
    for form in (image, image.astype(bool), image * 255):
        assert np.array_equal(codec.decompress(codec.compress(form)), image[None])
    for bad in (np.zeros((0, 28, 28)), [], np.full((2, 3), 7), np.zeros((2, 2, 2, 2))):
        with pytest.raises(InputError):
            codec.compress(bad)


def test_stream_to_a_file_and_iterate_the_archive(digits, tmp_path):
    squares = digits[:40].reshape(-1, 28, 28)
    codec = Codec(chunk_pixels=16 * 784)                     # a chunk closes every 16 digits
    with codec.stream(tmp_path / "s.sere") as stream:
        stream.append(squares[0])
        stream.append(squares[1:40])
    data = (tmp_path / "s.sere").read_bytes()
    for source in (data, tmp_path / "s.sere"):                 # from bytes, and from the file chunk by chunk
        chunks = list(codec.iter_decompress(source))
        assert [len(c) for c in chunks] == [16, 16, 8] and np.array_equal(np.concatenate(chunks), squares)
    with pytest.raises(ZeroDivisionError):
        with codec.stream(tmp_path / "t.sere") as stream:
            stream.append(squares[0])
            1 / 0
    assert not (tmp_path / "t.sere").exists()                 # nothing written when the block fails
    from serecodec.errors import InputError
    stream = codec.stream()
    stream.append(squares[0], names=["a"])
    with pytest.raises(InputError, match="every append"):
        stream.append(squares[1])
