"""Training a SeRe-VAE on a user's own images, as ``serecodec train`` does: the policy (warm-up
by preset, weight decay, the epoch budget a time limit affords, fine-tuning from the shipped
model), the export into a weight file and a coding model, and the validation rates written on
the model's card. The command line only parses its options and shows progress."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .checkpoint import export_weights, load_model
from .codec import Codec
from .coding_model import save_coding_model
from .data import binarize_fixed
from .errors import InputError
from .export import export_coding_model
from .model import PRESETS, ModelConfig
from .registry import install, resolve_weights, write_card
from .trainer import TrainConfig, train
from .userdata import parse_tile, read_training_images, split_valid, to_tile_probabilities

# tiles a CPU core trains per second, by preset (to turn --max-minutes into an epoch budget)
PACE_TILES_PER_S = {"resnet": 200}
DEFAULT_PACE_TILES_PER_S = 2000


def coding_path(weights: Path) -> Path:
    """NAME.coding.npz beside NAME.pt."""
    return weights.with_name(weights.name.removesuffix(".pt") + ".coding.npz")


def export_model(checkpoint: Path, weights: Path, bucket_bits: int = 8) -> Optional[str]:
    """Freeze a training checkpoint into fp16 weights (``weights``) and the integer coding model
    beside it; returns the coding model's hash (None for a flow model, which codes nothing)."""
    export_weights(checkpoint, weights)
    model = load_model(weights)
    if hasattr(model, "flow_config"):
        return None
    return save_coding_model(export_coding_model(model, bucket_bits, source=weights.name), coding_path(weights))


def initial_weights(spec: str, model_cfg) -> Optional[Path]:
    """The weight file a run starts from (``auto``: the shipped default when it has this
    architecture and tile; ``none``: from scratch)."""
    if spec == "none":
        return None
    path = resolve_weights(None if spec == "auto" else spec)
    other = load_model(path).config
    if (dataclasses.replace(other, tile_height=0, tile_width=0) != dataclasses.replace(model_cfg, tile_height=0,
                                                                                          tile_width=0)
            or other.tile_shape != model_cfg.tile_shape):
        if spec == "auto":
            return None
        raise InputError(f"--init {spec}: its architecture or tile size differs from the model being trained")
    return path


def budget_epochs(epochs: int, max_minutes: float, tiles: int, tiles_per_s: float) -> float:
    """The epochs a run will get: ``epochs``, or those that fit the time at a CPU core's pace."""
    if not max_minutes:
        return epochs
    return min(epochs, max(8, int(max_minutes * 60 * tiles_per_s / max(tiles, 1))))


def validation_rates(coding: Path, images: np.ndarray, tile: tuple) -> dict:
    """Bits/dim of the whole validation set as one archive, per method."""
    codec = Codec(str(coding))
    squares = images.reshape(-1, *tile).astype(np.uint8)
    return {method: 8 * len(codec.compress(squares, method=method)) / squares.size
            for method in ("bits-back", "adaptive", "deflate")}


@dataclasses.dataclass
class TrainingRequest:
    """What ``serecodec train`` was asked for (its options, with their defaults)."""

    data: list
    output: Path
    tile: str = "28x28"
    preset: str = "paper"
    epochs: int = 4000
    max_minutes: float = 0.0
    valid: str = "0.1"
    learning_rate: float = 1e-3
    batch_size: int = 256
    init: str = "auto"
    threads: Optional[int] = None
    device: str = "auto"
    seed: int = 0
    run_dir: Optional[Path] = None
    install_name: Optional[str] = None
    force: bool = False


def train_user_model(req: TrainingRequest, on_start: Callable[[dict], None] = lambda info: None,
                     on_epoch: Callable[[dict], None] = lambda record: None) -> dict:
    """Train, export and measure a model on the user's images; returns a summary. ``on_start``
    receives what the run will do (tiles, validation, run directory, initial weights)."""

    out = Path(req.output)
    if out.suffix != ".pt":
        raise InputError(f"{out}: the model file must end in .pt")
    coding = coding_path(out)
    for path in (out, coding):
        if (path.exists() or path.is_symlink()) and not req.force:
            raise InputError(f"{path}: already exists (use -f to overwrite)")
    height, width = parse_tile(req.tile)
    if req.preset == "resnet" and (height % 4 or width % 4):
        raise InputError(f"--tile {req.tile}: the resnet preset halves the tile twice, so its sides must be "
                         f"divisible by 4")
    tiles = to_tile_probabilities(read_training_images(list(req.data)), (height, width))
    try:
        fraction = float(req.valid)
    except ValueError:
        train_tiles = tiles
        valid_tiles = to_tile_probabilities(read_training_images([req.valid]), (height, width))
    else:
        if not 0 < fraction < 1:
            raise InputError(f"--valid {req.valid}: a fraction must lie strictly between 0 and 1")
        train_tiles, valid_tiles = split_valid(tiles, fraction, req.seed)
    valid_bits = binarize_fixed(valid_tiles, seed=1)
    model_cfg = ModelConfig(image_pixels=height * width, tile_height=height, tile_width=width, **PRESETS[req.preset])
    init = initial_weights(req.init, model_cfg)
    budget = budget_epochs(req.epochs, req.max_minutes, len(train_tiles),
                           PACE_TILES_PER_S.get(req.preset, DEFAULT_PACE_TILES_PER_S))
    if init:                                  # fine-tuning: no KL warm-up
        warmup = {"warmup_levels": 0}
    elif req.preset == "resnet":              # appendix 8: linear warm-up over 256 of 1000 epochs
        warmup = {"warmup_levels": 0, "warmup_linear_epochs": 0.256 * budget}
    else:                                     # §5.1's geometric warm-up over a quarter of the budget
        warmup = {"warmup_levels": 10, "warmup_unit": min(1.0, budget / 4 / 1023)}
    cfg = TrainConfig(epochs=req.epochs, max_minutes=req.max_minutes, learning_rate=req.learning_rate,
                      time_cooldown=0.4 if req.max_minutes else 0.0, init_weights=str(init or ""), **warmup,
                      l2=0.0 if req.preset == "resnet" else 1e-5, threads=req.threads or 0, device=req.device,
                      seed=req.seed, valid_limit=min(len(valid_bits), 5000),
                      batch_size=min(req.batch_size, max(8, len(train_tiles) // 4)))
    run_path = Path(req.run_dir) if req.run_dir else out.with_name(out.name[:-3] + ".run")
    on_start({"tiles": len(train_tiles), "tile": (height, width), "valid": len(valid_bits), "run_dir": run_path,
              "init": init})
    train(model_cfg, cfg, train_tiles, valid_bits, run_path, log=lambda msg: None, on_epoch=on_epoch)
    export_model(run_path / "checkpoint.pt", out)
    rates = validation_rates(coding, valid_bits, (height, width))
    write_card(coding, valid_bits_per_dim=rates["bits-back"], tiles_trained=len(train_tiles), preset=req.preset)
    installed = install(out, req.install_name, req.force) if req.install_name else None
    return {"weights": out, "coding": coding, "validation_bits_per_dim": rates, "installed": installed}
