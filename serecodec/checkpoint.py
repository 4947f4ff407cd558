"""Checkpoints (for resuming training) and compact weight files (for shipping a model).

A training checkpoint holds the weights, the optimizer, the epoch and step, the full config
and the RNG states. A weight file holds only the config and fp16 weights; it is what the
package ships as its default model.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Optional

import torch

from .errors import SerecodecError
from .fileio import atomic_write_bytes
from .model import ModelConfig, SeReVAE
from .registry import resolve_weights

CHECKPOINT_FORMAT = "serecodec-checkpoint-1"
WEIGHTS_FORMAT = "serecodec-weights-1"
from .paths import MODELS_DIR  # noqa: E402
DEFAULT_MODEL_PATH = MODELS_DIR / "default.pt"


class ModelFileError(SerecodecError):
    """A model or checkpoint file that cannot be used; the message names the file."""


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save through an in-memory buffer and an atomic write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _read(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file (shipped models: {', '.join(shipped_models()) or 'none'})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise ModelFileError(f"{path}: not a readable serecodec model ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") not in (CHECKPOINT_FORMAT, WEIGHTS_FORMAT):
        raise ModelFileError(f"{path}: not a serecodec checkpoint or weight file")
    return blob


def save_checkpoint(path: Path, model: SeReVAE, optimizer, *, epoch: int, step: int, config: dict,
                    extra: Optional[dict] = None) -> None:
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "model_config": model.config.to_dict(),
        "config": config,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "extra": extra or {},
    }, path)


def load_checkpoint(path: Path) -> dict:
    blob = _read(path)
    if blob["format"] != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: a weight file, not a training checkpoint (cannot resume from it)")
    return blob


def export_weights(checkpoint_path: Path, out_path: Path, meta: Optional[dict] = None) -> Path:
    """Write the compact fp16 weight file of a training checkpoint."""
    blob = load_checkpoint(checkpoint_path)
    init = (blob.get("config") or {}).get("init") or {}       # train_flows.py --init: the run it continued
    log_path = Path(checkpoint_path).parent / "log.jsonl"
    if log_path.exists():  # record the training budget beside the weights
        records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        cpu = records[-1].get("cpu_minutes", sum(r["seconds"] for r in records) / 60.0)   # (flows log CPU time)
        before = init.get("train_cpu_minutes") or 0.0      # (a continued run: both budgets)
        meta = {"train_cpu_minutes": round(before + cpu, 1),
                "final_valid_neg_elbo": records[-1].get("valid_neg_elbo", -records[-1].get("valid_elbo", float("nan"))),
                **(meta or {})}
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in blob["model"].items()
             if not (blob["model_config"].get("kind") == "flow" and k.endswith(".mask"))}   # (rebuilt on load)
    atomic_torch_save({
        "format": WEIGHTS_FORMAT,
        "model_config": blob["model_config"],
        "model": state,
        "meta": {"epoch": blob["epoch"] + (init.get("epoch") or 0),
                 "step": blob["step"], "train_config": blob["config"], **(meta or {})},
    }, out_path)
    return Path(out_path)


def shipped_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.pt"))


def resolve_model(spec=None) -> Path:
    """``None`` → the default model; a shipped or installed model's name → its file; else a path."""
    return resolve_weights(spec)


def load_model(spec=None) -> SeReVAE:
    """A float32 model in eval mode from a shipped name, a weight file or a checkpoint (a VAE,
    or a flow model of ``flow_model`` when its config says ``kind: flow``)."""
    path = resolve_model(spec)
    blob = _read(path)
    if blob["model_config"].get("kind") == "flow":
        from .flow_model import FlowConfig, build_flow      # (zuko only for flow models)
        model = build_flow(FlowConfig.from_dict(blob["model_config"]))
    else:
        model = SeReVAE(ModelConfig.from_dict(blob["model_config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["model"].items()}
    if hasattr(model, "flow_config"):    # MADE masks follow from the config (its order seed): not stored
        state = {**{k: v for k, v in model.state_dict().items() if k.endswith(".mask")}, **state}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match its config ({str(exc).splitlines()[0]})") from None
    model.eval()
    model.meta = blob.get("meta", {"epoch": blob.get("epoch"), "step": blob.get("step")})
    return model
