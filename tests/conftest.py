import os

import numpy as np
import pytest
import torch

from serecodec.data import load_fixture
from serecodec.model import ModelConfig


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """300 digits of the fixed binarized MNIST test set, uint8 (300, 784)."""
    return load_fixture()


@pytest.fixture(scope="session")
def squares(digits) -> np.ndarray:
    """The same 300 digits as (300, 28, 28)."""
    return digits.reshape(-1, 28, 28)


def tiny_config(**overrides) -> ModelConfig:
    """A small hierarchy with the full structure, cheap enough for unit tests."""
    base = dict(num_layers=3, latent_dim=4, evidence_hidden=32, evidence_features=8, latent_hidden=32,
                latent_features=8, gaussian_hidden=32, bijector_hidden=8, decoder_hidden=64)
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _state_cache(tmp_path_factory):
    """Page-state cache files (``state_cache``) in the session's own directory, not the user's
    (the CLI's subprocesses inherit it)."""
    os.environ["SERECODEC_STATE_CACHE"] = str(tmp_path_factory.mktemp("page-states"))
    yield
