"""serecodec: a learned lossless codec for bilevel images built on the SeRe-VAE.

Names are imported on first use, so that decoding (which needs only numpy and the integer
coding model) never imports torch.
"""
from __future__ import annotations

import importlib

from .errors import ArchiveError, InputError, LimitError, SerecodecError, VerificationError

__version__ = "0.2.0"
_LAZY = {"Codec": "codec", "StreamWriter": "stream", "ModelConfig": "model", "SeReVAE": "model",
         "load_model": "checkpoint"}
__all__ = ["ArchiveError", "Codec", "InputError", "LimitError", "ModelConfig", "SeReVAE", "SerecodecError",
           "StreamWriter", "VerificationError", "load_model"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'serecodec' has no attribute {name!r}")
