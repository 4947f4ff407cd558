"""Unordered collections: bits-back over the order saves about log2 N! bits and restores the
same multiset in canonical order."""
import math

import numpy as np
import pytest
from click.testing import CliRunner

from serecodec.cli import main
from serecodec.codec import Codec
from serecodec.errors import ArchiveError, InputError
from serecodec.multiset import Multiset, canonical_order, key


@pytest.fixture(scope="module")
def codec():
    return Codec()


def test_unordered_archive_restores_the_multiset_and_saves_the_order(codec, digits):
    squares = digits[:120].reshape(-1, 28, 28)
    images = np.concatenate([squares, squares[:10], squares[:3]])          # duplicates too
    ordered = Codec(warm_start=False).compress(images, method="bits-back")     # both start from initial words
    unordered = codec.compress(images, method="bits-back", ordered=False)
    back = codec.decompress(unordered)
    assert codec.read(unordered).unordered and back.shape == images.shape
    assert np.array_equal(back, images[canonical_order(images)])           # same multiset, canonical order
    multiplicities = [3] * 3 + [2] * 7
    expected = (math.lgamma(len(images) + 1) - sum(math.lgamma(m + 1) for m in multiplicities)) / math.log(2)
    # payloads, not archives: an ordered chunk's batch sizes follow a schedule and are not stored
    saved = codec.read(ordered).payload_bits - codec.read(unordered).payload_bits
    assert abs(saved - expected) < 0.05 * expected + 64, (saved, expected)


def test_unordered_auto_and_limits(codec, digits):
    squares = digits[:5].reshape(-1, 28, 28)
    small = codec.compress(squares, ordered=False)                          # auto: few images, adaptive
    assert codec.read(small).unordered and np.array_equal(codec.decompress(small), squares[canonical_order(squares)])
    with pytest.raises(InputError):
        codec.compress([squares[0], np.zeros((5, 5), np.uint8)], ordered=False)
    with pytest.raises(InputError):
        codec.compress(squares, names=list("abcde"), ordered=False)


def test_damaged_unordered_archive_is_refused(codec, digits):
    import zlib
    data = codec.compress(digits[:30].reshape(-1, 28, 28), method="bits-back", ordered=False)
    rng = np.random.default_rng(2)
    for pos in rng.choice(np.arange(40, len(data) - 8), size=10, replace=False):
        broken = bytearray(data)
        broken[pos] ^= 0x04
        body = bytes(broken[:-4])
        resealed = body + (zlib.crc32(body) & 0xFFFFFFFF).to_bytes(4, "little")
        with pytest.raises(ArchiveError):
            codec.decompress(resealed)


def test_multiset_layout():
    m = Multiset([b"b", b"a", b"b", b"c"])
    assert m.keys == [b"a", b"b", b"c"] and m.counts == [1, 2, 1] and m.size == 4
    assert [m.locate(p) for p in range(4)] == [0, 1, 1, 2] and m.start(2) == 3
    m.remove_at(1)
    assert m.counts == [1, 1, 1] and m.size == 3
    assert key(np.ones((2, 3), np.uint8)) != key(np.ones((3, 2), np.uint8))


def test_cli_unordered(tmp_path, digits):
    src = tmp_path / "set.npy"
    np.save(src, digits[:50].reshape(-1, 28, 28))
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(src), "--unordered", "--method", "bits-back", "-q"]).exit_code == 0
    assert runner.invoke(main, ["decompress", str(tmp_path / "set.npy.sere"), "--npy", "-o",
                                str(tmp_path / "back.npy"), "-q"]).exit_code == 0
    images = digits[:50].reshape(-1, 28, 28)
    assert np.array_equal(np.load(tmp_path / "back.npy"), images[canonical_order(images)])
