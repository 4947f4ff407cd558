"""serecodec: a learned lossless codec for bilevel images built on the SeRe-VAE."""
from .archive import ArchiveError
from .checkpoint import load_model
from .codec import Codec
from .model import ModelConfig, SeReVAE

__all__ = ["ArchiveError", "Codec", "ModelConfig", "SeReVAE", "load_model"]
__version__ = "0.1.0"
