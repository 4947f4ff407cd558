"""Training and evaluating the flow models (``flow_model``): appendix 9's three phases for the
SeRe-MAF (reconstruction only, geometric KL warm-up over N = 8 levels, the full ELBO), free bits
per latent layer, fresh dequantization noise every epoch, resumable checkpoints; the MAF baseline
trains with the same loop (it has no KL term). Budgets are in epochs or in CPU minutes of the
training process (so two runs sharing a machine get the same compute, whatever else runs);
phases are fractions of whichever runs out first.

Figures are in nats per image in logit space (what the MAF paper reports for MNIST) and in
bits/dim of the 8-bit pixels: log p(levels) = log p(y) + log|dy/dx| − D log 256.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .flow_data import dequantize
from .flow_model import FlowConfig, build_flow, logit_transform
from .schedule import beta_at, warmup_epochs


@dataclass
class FlowTrainConfig:
    epochs: int = 100
    max_minutes: float = 0.0          # CPU minutes of this process; 0: no limit
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    recon_fraction: float = 0.1       # phase 1: reconstruction only (the paper: 350 of 1500 epochs)
    warmup_fraction: float = 0.2      # phase 2: geometric warm-up (258 of 1500)
    warmup_levels: int = 8
    cooldown_fraction: float = 0.3    # the learning rate cools (cosine) over the last part of the budget
    free_bits: float = 1.0            # nats per latent layer
    valid_limit: int = 1000
    seed: int = 0
    threads: int = 1                  # 0: torch's default


def progress(epoch: float, minutes: float, cfg: FlowTrainConfig) -> float:
    """Fraction of the budget spent: epochs or minutes, whichever runs out first."""
    done = epoch / cfg.epochs
    if cfg.max_minutes:
        done = max(done, minutes / cfg.max_minutes)
    return min(done, 1.0)


def beta_for(done: float, cfg: FlowTrainConfig) -> float:
    """0 in phase 1; the paper's geometric levels over phase 2 (its 2**N − 1 units squeezed into
    ``warmup_fraction``); 1 after."""
    if done < cfg.recon_fraction:
        return 0.0
    into = (done - cfg.recon_fraction) / max(cfg.warmup_fraction, 1e-12)
    if into >= 1.0 or cfg.warmup_levels <= 0:
        return 1.0
    return beta_at(into * warmup_epochs(cfg.warmup_levels), cfg.warmup_levels)


def learning_rate_for(done: float, cfg: FlowTrainConfig) -> float:
    start = 1.0 - cfg.cooldown_fraction
    if done <= start:
        return cfg.learning_rate
    t = (done - start) / max(cfg.cooldown_fraction, 1e-12)
    final = 0.02 * cfg.learning_rate
    return final + (cfg.learning_rate - final) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def flow_loss(trace, beta: float, free_bits: float) -> torch.Tensor:
    """−log p(y | z) + β Σ_l max(λ, E[KL_l]) (IAF's free bits, one group per layer)."""
    kl = trace.kl.mean(0)
    return -trace.log_px.mean() + beta * torch.clamp(kl, min=free_bits).sum()


IW_ROWS = 2_000                       # rows (image x particle) per IW pass: 1.5x faster than 25,000 on one core


@torch.no_grad()
def evaluate(model, levels: np.ndarray, iw_samples: int = 1, seed: int = 0, batch: int = 250) -> dict:
    """Test figures: −ELBO (exact −log p for the MAF) and, with ``iw_samples`` > 1, the IW-k bound,
    in nats per image (logit space), and bits/dim of the 8-bit pixels. Fixed noise (``seed``)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    alpha = model.flow_config.alpha
    elbo, iw, log_det, kl = [], [], [], []
    for start in range(0, len(levels), batch):
        x = dequantize(levels[start:start + batch], generator)
        log_det.append(logit_transform(x, alpha)[1])
        trace = model(x)
        elbo.append(trace.elbo)
        kl.append(trace.kl)
        if iw_samples > 1 and trace.kl.shape[-1]:
            step = max(1, IW_ROWS // iw_samples)          # images per pass: k rows each, memory bounded
            for part in x.split(step):
                weights = model(part, num_samples=iw_samples).log_weight.view(len(part), iw_samples)
                iw.append(torch.logsumexp(weights, -1) - math.log(iw_samples))
    elbo, log_det, kl = torch.cat(elbo), torch.cat(log_det), torch.cat(kl)
    dims = levels.shape[1]
    to_bpd = lambda ll: float((-(ll + log_det).mean() / dims + math.log(256)) / math.log(2))   # noqa: E731
    best = torch.cat(iw) if iw else elbo
    return {"images": len(levels), "neg_elbo_nats": float(-elbo.mean()), "log_likelihood": float(best.mean()),
            "log_likelihood_bound": f"IW-{iw_samples}" if iw else ("ELBO" if kl.shape[-1] else "exact"),
            "bits_per_dim": to_bpd(best), "bits_per_dim_elbo": to_bpd(elbo),
            "kl_per_layer": kl.mean(0).tolist()}


def warm_start_from(model, init: Path) -> dict:
    """Load ``init``'s weights into ``model`` (same config required); returns what the run records
    of it: the file and the CPU minutes and epochs it was trained for (a continuation of a
    continuation adds up)."""
    from .checkpoint import load_model
    trained = load_model(init)
    if not hasattr(trained, "flow_config") or trained.flow_config.to_dict() != model.flow_config.to_dict():
        raise ValueError(f"{init}: not a flow model of this config")
    model.load_state_dict(trained.state_dict())
    meta = getattr(trained, "meta", {}) or {}
    return {"weights": str(init), "train_cpu_minutes": meta.get("train_cpu_minutes"), "epoch": meta.get("epoch")}


def train_flow(model_cfg: FlowConfig, cfg: FlowTrainConfig, train_levels: np.ndarray, valid_levels: np.ndarray,
               run_dir: Path, log: Callable[[str], None] = lambda msg: None,
               on_epoch: Optional[Callable[[dict], None]] = None, init: Optional[Path] = None) -> dict:
    """Train (or resume) in ``run_dir``; returns the last epoch's record. ``init`` (a weight file or
    checkpoint of the same config) starts a new run from trained weights with a fresh optimizer: a
    continuation whose budget adds to the one those weights were trained with (their
    ``train_cpu_minutes``, kept in the run's config and reported beside its own)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_flow(model_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    epoch, step, minutes_before = 0, 0, 0.0
    if ckpt_path.exists():
        blob = load_checkpoint(ckpt_path)
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        epoch, step = blob["epoch"], blob["step"]
        minutes_before = float(blob["extra"].get("elapsed_minutes", 0.0))
        torch.set_rng_state(blob["torch_rng"])
        log(f"resumed from {ckpt_path} at epoch {epoch}")
    full_config = {"model": model_cfg.to_dict(), "train": asdict(cfg)}
    if ckpt_path.exists() and "init" in blob.get("config", {}):
        full_config["init"] = blob["config"]["init"]       # (a resumed continuation keeps its origin)
    elif init is not None and not ckpt_path.exists():
        full_config["init"] = warm_start_from(model, Path(init))
        log(f"starting from the weights of {init} ({full_config['init']['train_cpu_minutes']} CPU minutes)")
    (run_dir / "config.json").write_text(json.dumps(full_config, indent=2) + "\n")
    train = torch.as_tensor(train_levels)
    valid = np.asarray(valid_levels[:cfg.valid_limit])
    steps = max(1, len(train) // cfg.batch_size)
    started = time.process_time() - 60.0 * minutes_before
    record: dict = {}
    while progress(epoch, (time.process_time() - started) / 60.0, cfg) < 1.0:
        tic = time.time()
        generator = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        order = torch.randperm(len(train), generator=generator)
        model.train()
        totals = np.zeros(2)
        for i in range(steps):
            done = progress(epoch + i / steps, (time.process_time() - started) / 60.0, cfg)
            beta = beta_for(done, cfg)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_for(done, cfg)
            x = dequantize(train[order[i * cfg.batch_size:(i + 1) * cfg.batch_size]], generator)
            trace = model(x)
            loss = flow_loss(trace, beta, cfg.free_bits)
            if not torch.isfinite(loss):
                continue                                   # skip, never poison the weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
            optimizer.step()
            totals += (loss.item(), -trace.elbo.mean().item())
            step += 1
        epoch += 1
        val = evaluate(model, valid)
        minutes = (time.process_time() - started) / 60.0
        record = {"epoch": epoch, "step": step, "beta": beta, "learning_rate": optimizer.param_groups[0]["lr"],
                  "train_loss": totals[0] / steps, "train_neg_elbo": totals[1] / steps,
                  "valid_neg_elbo": val["neg_elbo_nats"], "valid_bits_per_dim": val["bits_per_dim_elbo"],
                  "valid_kl_per_layer": val["kl_per_layer"], "seconds": time.time() - tic, "cpu_minutes": minutes}
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        save_checkpoint(ckpt_path, model, optimizer, epoch=epoch, step=step, config=full_config,
                        extra={"elapsed_minutes": minutes})   # (CPU minutes)
        if on_epoch:
            on_epoch(record)
        log(f"epoch {epoch} beta {beta:.3f} train -elbo {record['train_neg_elbo']:.1f} valid -elbo "
            f"{record['valid_neg_elbo']:.1f} ({record['valid_bits_per_dim']:.3f} bits/dim, {record['seconds']:.0f}s)")
    return record
