#!/usr/bin/env python
"""Learning curves and KL per layer from training logs (the paper's Fig. 6).

    python training/plot_curves.py runs/sere/log.jsonl runs/dlgm/log.jsonl -o results/curves.png
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@click.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, help="One label per log (default: its folder name).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def main(logs, labels, output):
    labels = list(labels) or [p.parent.name for p in logs]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for path, label in zip(logs, labels):
        rec = read_log(path)
        epochs = [r["epoch"] for r in rec]
        axes[0].plot(epochs, [r["train_loss"] for r in rec], label=label)
        axes[1].plot(epochs, [r["beta"] for r in rec], label=label)
        axes[2].plot(epochs, [-r["valid_elbo"] for r in rec], label=label)
    last = read_log(logs[0])
    kl = list(zip(*[r["valid_kl_per_layer"] for r in last]))
    for layer, values in enumerate(kl):
        axes[3].plot([r["epoch"] for r in last], values, label=f"layer {layer + 1}")
    titles = ["(a) training loss −L_n (β-weighted)", "(b) β_n", "(c) validation −ELBO (nats)",
              f"(d) validation KL per layer ({labels[0]})"]
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_ylim(top=min(130, axes[2].get_ylim()[1]))
    axes[2].legend()
    axes[3].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
