"""Training loop: Adam, dynamic binarization, geometric warm-up, JSON-lines log, resume.

Kept deliberately small (VDVAE/NVAE style): one function trains, the checkpoint carries
everything needed to continue, and each epoch appends one JSON line to ``log.jsonl``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .errors import SerecodecError
from .model import ModelConfig, SeReVAE
from .distributed import join_world
from .schedule import learning_rate_at, warmup_beta


class TrainingDiverged(SerecodecError):
    """Too many non-finite losses: training stopped (the last checkpoint is intact)."""


@dataclass
class TrainConfig:
    epochs: int = 4000
    batch_size: int = 256
    learning_rate: float = 1e-3
    lr_decay_epochs: float = 0.0     # cosine cool-down over the last epochs; 0: constant (paper)
    l2: float = 1e-5                 # paper: kernel/bias l2 penalty λ·Σw² (Keras convention)
    warmup_levels: int = 10          # N
    warmup_unit: float = 1.0         # epochs per 2ⁿ unit; < 1 scales the warm-up down
    warmup_linear_epochs: float = 0.0  # > 0: linear warm-up over these epochs instead (ResNet model)
    seed: int = 0
    threads: int = 0                 # 0: leave torch's default
    valid_limit: int = 10000         # validation images evaluated each epoch
    max_minutes: float = 0.0         # 0: no wall-clock limit
    device: str = "auto"
    init_weights: str = ""           # weight file or checkpoint whose weights start a fresh run
    time_cooldown: float = 0.0       # with max_minutes: cosine cool-down over this last fraction of the time
    max_bad_steps: int = 100         # non-finite losses skipped before training stops

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def load_config_file(path: Path) -> tuple[ModelConfig, TrainConfig]:
    data = json.loads(Path(path).read_text())
    return ModelConfig.from_dict(data.get("model", {})), TrainConfig.from_dict(data.get("train", {}))


def make_optimizer(model: SeReVAE, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Adam's weight_decay adds wd·w to the gradient, the gradient of (wd/2)·Σw²; λ·Σw² needs wd = 2λ.
    # The fused kernel updates all ~1300 tensors in one pass: 4.6 ms instead of 21.5 ms a step on
    # one CPU core for the paper's model, 12% of the whole step (benchmarks/training_speed.py).
    decay, rest = model.decay_parameters()
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.Adam([{"params": decay, "weight_decay": 2 * cfg.l2},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.learning_rate, fused=fused)


@torch.no_grad()
def validate(model: SeReVAE, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """Mean ELBO (nats) and KL per layer on fixed binary images, model in eval mode."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=images.device).manual_seed(0)
    elbo, kl, count = 0.0, None, 0
    for start in range(0, len(images), batch_size):
        trace = model(images[start:start + batch_size], generator=gen)
        elbo += trace.elbo.sum().item()
        layer_kl = trace.kl.sum(0)
        kl = layer_kl if kl is None else kl + layer_kl
        count += trace.elbo.shape[0]
    model.train(was_training)
    return {"elbo": elbo / count, "kl_per_layer": (kl / count).tolist()}


def time_factor(minutes: float, cfg: TrainConfig) -> float:
    """Learning-rate multiplier of a time-limited run: 1, then a cosine to 2% over the last
    ``time_cooldown`` of ``max_minutes`` (so a run stopped by the clock ends cooled)."""
    if not (cfg.max_minutes and cfg.time_cooldown):
        return 1.0
    return learning_rate_at(minutes / cfg.max_minutes, 1.0, 1.0, cfg.time_cooldown)


def train(model_cfg: ModelConfig, cfg: TrainConfig, train_probs: np.ndarray, valid_images: np.ndarray,
          run_dir: Path, resume: bool = True, log: Callable[[str], None] = print,
          on_epoch: Optional[Callable[[dict], None]] = None) -> dict:
    """Train (or resume) in ``run_dir``; returns the last epoch's log record.

    Under ``torchrun`` every process calls this; the main one validates, logs and checkpoints.
    A step whose loss is not finite is skipped (counted; training stops after
    ``max_bad_steps``). ``on_epoch`` gets each epoch's record (for a progress bar).
    """
    run_dir = Path(run_dir)
    world = join_world(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = world.device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = SeReVAE(model_cfg).to(device)
    if world.distributed and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = make_optimizer(model, cfg)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    epoch, step, elapsed_before, bad_steps = 0, 0, 0.0, 0
    if cfg.init_weights and not (resume and ckpt_path.exists()):
        source = load_model(cfg.init_weights)
        if source.config == model_cfg:
            model.load_state_dict(source.state_dict())
            fresh_parts = []
        else:                                   # a different model: warm-start its shared parts
            fresh_parts = model.warm_start(source.state_dict())
        if world.is_main:
            log(f"weights initialized from {cfg.init_weights}"
                + (f" (new parts left as initialized: {', '.join(fresh_parts)})" if fresh_parts else ""))
    if resume and ckpt_path.exists():
        blob = load_checkpoint(ckpt_path)
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        epoch, step = blob["epoch"], blob["step"]
        elapsed_before = float(blob.get("extra", {}).get("elapsed_minutes", 0.0))
        bad_steps = int(blob.get("extra", {}).get("bad_steps", 0))
        torch.set_rng_state(blob["torch_rng"])
        if world.is_main:
            log(f"resumed from {ckpt_path} at epoch {epoch}")
    full_config = {"model": model_cfg.to_dict(), "train": asdict(cfg)}
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")
    net = model
    if world.distributed:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    probs = torch.as_tensor(np.asarray(train_probs, dtype=np.float32), device=device)
    valid = torch.as_tensor(np.asarray(valid_images[: cfg.valid_limit], dtype=np.float32), device=device)
    n = probs.shape[0]
    steps_per_epoch = max(1, n // cfg.batch_size)   # the last partial batch is dropped
    started = time.time() - 60.0 * elapsed_before
    record: dict = {}
    while epoch < cfg.epochs:
        tic = time.time()
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 100003 + epoch)
        binary = torch.bernoulli(probs, generator=gen)            # dynamic binarization
        order = torch.randperm(n, generator=gen, device=device)
        if world.distributed:   # the same data everywhere, but each process its own latent noise
            torch.manual_seed((cfg.seed * 100003 + epoch) * 1009 + world.rank)
        model.train()
        loss_sum = torch.zeros((), device=device)
        elbo_sum = torch.zeros((), device=device)
        for i in range(steps_per_epoch):
            batch = binary[world.shard(order[i * cfg.batch_size:(i + 1) * cfg.batch_size])]
            progress = epoch + i / steps_per_epoch
            beta = warmup_beta(progress, cfg.warmup_levels, cfg.warmup_unit, cfg.warmup_linear_epochs)
            lr = learning_rate_at(progress, cfg.learning_rate, cfg.epochs, cfg.lr_decay_epochs)
            lr *= time_factor((time.time() - started) / 60.0, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            trace = net(batch)
            kl = trace.kl.sum(-1)
            loss = (kl * beta - trace.log_px).mean()
            optimizer.zero_grad(set_to_none=True)
            bad = ~torch.isfinite(loss)
            if world.distributed:                 # every process skips together, or DDP would hang
                bad = world.sum(bad.float()) > 0
            if bad:                               # skip the step, never poison the weights
                bad_steps += 1
                if bad_steps > cfg.max_bad_steps:
                    raise TrainingDiverged(f"{run_dir}: {bad_steps} non-finite losses; stopping (resume with a lower "
                                           f"learning rate)")
                step += 1
                continue
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            elbo_sum += (trace.log_px - kl).detach().mean()
            step += 1
        epoch += 1
        loss_sum, elbo_sum = world.sum(loss_sum) / world.size, world.sum(elbo_sum) / world.size
        stop = False
        if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
            raise TrainingDiverged(f"{run_dir}: the weights (or batch-norm statistics) became non-finite in epoch {epoch}; the checkpoint "
                                   f"of epoch {epoch - 1} is kept (resume with a lower learning rate)")
        if world.is_main:
            val = validate(model, valid)
            record = {
                "epoch": epoch, "step": step,
                "beta": warmup_beta(epoch - 1e-9, cfg.warmup_levels, cfg.warmup_unit, cfg.warmup_linear_epochs),
                "learning_rate": lr,
                "train_loss": loss_sum.item() / steps_per_epoch,
                "train_elbo": elbo_sum.item() / steps_per_epoch,
                "valid_elbo": val["elbo"], "valid_kl_per_layer": val["kl_per_layer"],
                "seconds": time.time() - tic, "bad_steps": bad_steps,
            }
            if world.distributed:
                record["processes"] = world.size
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            save_checkpoint(ckpt_path, model, optimizer, epoch=epoch, step=step, config=full_config,
                            extra={"elapsed_minutes": (time.time() - started) / 60.0, "bad_steps": bad_steps})
            if on_epoch:
                on_epoch(record)
            log(f"epoch {epoch} beta {record['beta']:.3f} train -elbo {-record['train_elbo']:.2f} "
                f"valid -elbo {-record['valid_elbo']:.2f} ({record['seconds']:.1f}s)")
            stop = bool(cfg.max_minutes) and (time.time() - started) / 60.0 >= cfg.max_minutes
            if stop:
                log(f"stopping after {cfg.max_minutes} minutes (resume to continue)")
        if world.agree(stop, device):
            break
    world.check_replicas(model)
    world.close()
    return record
