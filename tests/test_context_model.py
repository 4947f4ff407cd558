"""The static context model that codes small archives."""
import numpy as np
import pytest

from serecodec.errors import ArchiveError
from serecodec.codec import Codec
from serecodec.context_model import (CONTEXT_TABLES, CURRENT_TABLE, TEMPLATE, ContextModelError, context_bits,
                                     contexts, fit_table, load_context_model)


@pytest.fixture(scope="module")
def model():
    return load_context_model()


@pytest.fixture(scope="module")
def images(digits):
    return digits.reshape(-1, 28, 28)


def test_context_is_the_causal_neighbourhood_and_block():
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 9, 10] = 1                                # the pixel above (10, 10): offset (-1, 0)
    ctx = contexts(image)[0]
    shift = context_bits(28, 28) - len(TEMPLATE)
    bit = len(TEMPLATE) - 1 - TEMPLATE.index((-1, 0))
    assert ctx[10, 10] == (1 << bit << shift) | (1 * 4 + 1)   # block row 1, column 1
    assert ctx[0, 0] == 0 and ctx[27, 27] == 15               # empty neighbourhood, last block
    assert ctx[9, 10] == 5                                    # a pixel never sees itself


def test_fitted_probabilities_follow_the_counts():
    images = np.zeros((50, 28, 28), dtype=np.uint8)
    images[:, :, 14:] = 1                                     # right half black
    table = fit_table(images)
    p1 = table[contexts(images)] / 2.0 ** 24
    assert (p1[images == 1] > 0.5).mean() > 0.95 and (p1[images == 0] < 0.5).mean() > 0.95
    assert table.min() >= 1 and table.max() < 2 ** 24


@pytest.mark.parametrize("count", [1, 7, 300])
def test_round_trip_is_bit_exact_and_near_the_ideal_length(model, images, count):
    words = model.encode(images[:count])
    assert np.array_equal(model.decode(words, count), images[:count])
    ideal = model.expected_bits(images[:count])
    assert ideal <= 32 * len(words) <= ideal * 1.01 + 64


def test_shipped_table_is_the_registered_one(model, tmp_path):
    assert model.hash.startswith(CONTEXT_TABLES[CURRENT_TABLE])
    with pytest.raises(ContextModelError, match="missing.npz"):
        load_context_model(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ContextModelError, match="junk.npz"):
        load_context_model(tmp_path / "junk.npz")
    changed = type(model)(model.table.copy())
    changed.table[0] += 1
    changed.save(tmp_path / "other.npz")
    with pytest.raises(ContextModelError, match="not table 1"):
        load_context_model(tmp_path / "other.npz")


def test_auto_picks_the_context_model_for_few_digits_and_bits_back_for_many(images):
    codec = Codec()
    one = codec.compress(images[:1])
    assert codec.read(one).method == "context" and np.array_equal(codec.decompress(one), images[:1])
    assert len(one) < min(len(codec.compress(images[:1], method=m)) for m in ("deflate", "adaptive", "bits-back"))
    assert 8 * len(one) / 784 < 0.47     # bits per pixel, header included (29 bytes: the chunk index, three CRCs)
    many = codec.compress(images)
    assert codec.read(many).method == "bits-back" and np.array_equal(codec.decompress(many), images)
    assert len(many) < len(codec.compress(images, method="context"))


def test_corrupted_context_payload_is_detected(images):
    codec = Codec()
    data = codec.compress(images[:20], method="context")
    rng = np.random.default_rng(1)
    for pos in rng.choice(np.arange(20, len(data)), size=8, replace=False):
        broken = bytearray(data)
        broken[pos] ^= 0x08
        with pytest.raises(ArchiveError, match="corrupted"):
            codec.decompress(bytes(broken))
    archive = codec.read(data)
    archive.chunks[0].params = bytes([9])                       # a table this version does not have
    with pytest.raises(ArchiveError, match="context table 9"):
        codec.decompress(archive.to_bytes())
