"""Where the shipped models live (a module of its own so the decoder needs no torch to find them)."""
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
