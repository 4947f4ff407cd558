"""serecodec: a learned lossless codec for bilevel images built on the SeRe-VAE."""
from .checkpoint import load_model
from .model import ModelConfig, SeReVAE

__all__ = ["ModelConfig", "SeReVAE", "load_model"]
__version__ = "0.1.0"
