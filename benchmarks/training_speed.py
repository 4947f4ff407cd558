#!/usr/bin/env python
"""How fast one training step is, and what the trainer's choices buy (ratios from one run).

Times the paper's model (or with --quick a small one) on random binary batches: Adam's
per-tensor loop vs the fused kernel the trainer uses, 1 vs 2 threads, batch 256 vs larger
(images/s; the paper's batch is 256), and optionally torch.compile. Converts the trainer's
setting to seconds per epoch of the 50,000 training digits.
Writes results/training_speed.json and results/training_speed.md.

    python benchmarks/training_speed.py            # paper-sized model
    python benchmarks/training_speed.py --quick    # small model, a few steps
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import torch

from serecodec.model import ModelConfig, SeReVAE

TRAIN_IMAGES = 50_000


def time_steps(model_config: ModelConfig, batch: int, threads: int, fused: bool, compiled: bool,
               steps: int, device: str) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SeReVAE(model_config).to(device).train()
    decay, rest = model.decay_parameters()
    optimizer = torch.optim.Adam([{"params": decay, "weight_decay": 2e-5}, {"params": rest, "weight_decay": 0.0}],
                                 lr=1e-3, fused=fused)
    net = torch.compile(model) if compiled else model
    data = (torch.rand(steps + 3, batch, model_config.image_pixels, device=device) < 0.13).float()

    def step(x):
        trace = net(x)
        loss = (trace.kl.sum(-1) - trace.log_px).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    for i in range(3):                      # warm-up (and compilation)
        step(data[i])
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    tic = time.perf_counter()
    for i in range(steps):
        step(data[3 + i])
    sync()
    seconds = (time.perf_counter() - tic) / steps
    return {"batch": batch, "threads": threads, "fused_adam": fused, "compiled": compiled,
            "seconds_per_step": seconds, "images_per_s": batch / seconds,
            "seconds_per_epoch": TRAIN_IMAGES / (batch / seconds)}


@click.command()
@click.option("--quick", is_flag=True, help="A small model and a few steps.")
@click.option("--steps", type=int, default=20, show_default=True)
@click.option("--compile", "with_compile", is_flag=True, help="Also time torch.compile (a minute to compile).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
def main(quick, steps, with_compile, device, out_dir):
    if quick:
        config = ModelConfig(num_layers=3, latent_dim=4, evidence_hidden=32, evidence_features=8, latent_hidden=32,
                             latent_features=8, gaussian_hidden=32, bijector_hidden=8, decoder_hidden=64)
        steps = min(steps, 5)
    else:
        config = ModelConfig(variant="sere", num_layers=10, latent_dim=10)
    settings = [dict(batch=256, threads=1, fused=False, compiled=False),
                dict(batch=256, threads=1, fused=True, compiled=False),
                dict(batch=256, threads=2, fused=True, compiled=False),
                dict(batch=512, threads=1, fused=True, compiled=False),
                dict(batch=1024, threads=1, fused=True, compiled=False)]
    if with_compile:
        settings.append(dict(batch=256, threads=1, fused=True, compiled=True))
    rows = []
    for setting in settings:
        rows.append(time_steps(config, steps=steps, device=device, **setting))
        click.echo(json.dumps(rows[-1]), err=True)
    base = rows[0]
    for row in rows:
        row["speed_vs_per_tensor_adam"] = row["images_per_s"] / base["images_per_s"]
    report = {"benchmark": "training_speed", "model": config.to_dict(), "steps": steps, "device": device,
              "machine": {"platform": platform.platform(), "torch": torch.__version__}, "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if quick else ""
    (out_dir / f"training_speed{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"One training step of the {'small test' if quick else 'paper-sized'} model "
             f"({sum(p.numel() for p in SeReVAE(config).parameters()) / 1e6:.2f} M parameters) on {device}, "
             f"{steps} steps each, measured in one run (`python benchmarks/training_speed.py`).",
             "",
             "| batch | threads | Adam | compiled | ms/step | images/s | s/epoch (50k) | speed × per-tensor Adam |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['threads']} | {'fused' if r['fused_adam'] else 'per tensor'} | "
                     f"{'yes' if r['compiled'] else 'no'} | {1e3 * r['seconds_per_step']:.1f} | {r['images_per_s']:.0f} | "
                     f"{r['seconds_per_epoch']:.1f} | {r['speed_vs_per_tensor_adam']:.2f} |")
    (out_dir / f"training_speed{suffix}.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
