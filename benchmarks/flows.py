#!/usr/bin/env python
"""SeRe-MAF against the MAF baseline of the same MADEs, width and CPU budget (issue 23): test
log-likelihood in nats per image in logit space (the MAF paper's MNIST measure; −ELBO for the
SeRe-MAF, with its IW-k bound on the first --iw-limit images), bits/dim of the 8-bit pixels,
per-layer KL, and the training curves (valid −ELBO against CPU minutes) from the runs' logs.

    python training/train_flows.py --config training/configs/sere_maf_cpu.json --run-dir RUNS/sere_maf
    python training/train_flows.py --config training/configs/maf_cpu.json --run-dir RUNS/maf
    (the same two with --data-dir /usr/share/datasets/fashion-mnist --max-minutes 15 into RUNS/fashion_*)
    serecodec export RUNS/sere_maf/checkpoint.pt -o serecodec/models/sere-maf.pt     (and maf; the
    Fashion-MNIST models are measured from their runs' checkpoints, not shipped)
    python benchmarks/flows.py --runs RUNS

The shipped MNIST pair was then continued side by side with the same schedule and budget:

    python training/train_flows.py --config training/configs/sere_maf_cpu_continue.json --init sere-maf --run-dir RUNS/sere_maf
    python training/train_flows.py --config training/configs/maf_cpu_continue.json --init maf --run-dir RUNS/maf
    (exported over the shipped weights as above)
    python benchmarks/flows.py --runs RUNS --only MNIST --iw-samples 1000
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import write_results                      # noqa: E402
from serecodec.checkpoint import load_model              # noqa: E402
from serecodec.flow_data import grey_levels              # noqa: E402
from serecodec.flow_training import evaluate             # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
# Papamakarios et al. 2017 (MAF), Table 2, unconditional MNIST, test log-likelihood (nats, logit space)
MAF_PAPER_MNIST = [("Gaussian", -1366.9), ("MADE", -1380.8), ("MADE MoG", -1038.5), ("Real NVP (5)", -1323.2),
                   ("MAF (5)", -1300.5), ("MAF (10)", -1313.1)]
PAPER_CIFAR = {"sere_maf": 3190, "maf": 2670}            # the SeRe-VAE paper, Table 3 (SeRe-MAF: an ELBO)


def curve(log_path: Path) -> list:
    if not log_path.is_file():
        return []
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [{"epoch": r["epoch"], "cpu_minutes": r.get("cpu_minutes"), "valid_neg_elbo": r["valid_neg_elbo"]}
            for r in records]


def continued_curve(earlier: list, init: dict, log_path: Path) -> list:
    """A continuation's curve after the curve of the run it started from (CPU minutes and epochs
    counted on from that run's; the two runs may have had different machines)."""
    start_minutes, start_epoch = init.get("train_cpu_minutes") or 0.0, init.get("epoch") or 0
    later = [{**p, "epoch": p["epoch"] + start_epoch, "cpu_minutes": p["cpu_minutes"] + start_minutes,
              "continued": True} for p in curve(log_path)]
    return [p for p in earlier if not p.get("continued")] + later


def row(name: str, data: str, weights: Path, levels, iw_samples: int, iw_limit: int, log_path: Path,
        earlier: Optional[dict] = None) -> dict:
    model = load_model(weights)
    torch.manual_seed(0)
    figures = evaluate(model, levels)
    variational = bool(figures["kl_per_layer"])
    if not variational:                  # the exact figure on the images the SeRe-MAF's IW bound covers
        figures["log_likelihood_same_images"] = evaluate(model, levels[:iw_limit])["log_likelihood"]
        figures["same_images"] = min(iw_limit, len(levels))
    if variational and iw_samples > 1:
        iw = evaluate(model, levels[:iw_limit], iw_samples=iw_samples)
        figures.update({"iw_images": iw["images"], "log_likelihood": iw["log_likelihood"],
                        "log_likelihood_bound": iw["log_likelihood_bound"], "bits_per_dim": iw["bits_per_dim"],
                        "neg_elbo_same_images": iw["neg_elbo_nats"]})
    c, meta = model.flow_config, getattr(model, "meta", {})
    if meta.get("train_cpu_minutes") is None and log_path.is_file():     # a checkpoint: the log has the budget
        last = json.loads(log_path.read_text().splitlines()[-1])
        meta = {**meta, "train_cpu_minutes": round(last["cpu_minutes"], 1)}
    init = (meta.get("train_config") or {}).get("init")
    extra = {"curve": curve(log_path)}
    if init:                             # a continuation (train_flows.py --init): both runs' budgets
        extra = {"init_cpu_minutes": init.get("train_cpu_minutes"), "init_epochs": init.get("epoch"),
                 "curve": continued_curve((earlier or {}).get("curve", []), init, log_path)}
    return {"name": name, "data": data, "weights": str(weights), "variational": variational,
            "parameters": sum(p.numel() for p in model.parameters()), "mades": c.made_count,
            "made_hidden": c.made_hidden, "epochs": meta.get("epoch"), "cpu_minutes": meta.get("train_cpu_minutes"),
            "weight_file_mb": Path(weights).stat().st_size / 1e6, **figures, **extra}


def budget(r: dict) -> str:
    """CPU minutes (epochs), a continuation's as first run + continuation."""
    if r.get("init_cpu_minutes") is None:
        return f"{r['cpu_minutes']} ({r['epochs']})"
    own, own_epochs = round(r["cpu_minutes"] - r["init_cpu_minutes"], 1), r["epochs"] - r["init_epochs"]
    return f"{r['init_cpu_minutes']} + {own} ({r['init_epochs']} + {own_epochs})"


def markdown(rows: list) -> str:
    lines = ["Test sets: grey MNIST (10,000) and Fashion-MNIST (10,000), dequantized with fixed noise, in logit space "
             "(α = 10⁻⁶). The MAF's figure is its exact log-likelihood; the SeRe-MAF's is its ELBO over all images "
             "and its IW-k bound on the first images (column 'bound').", "",
             "| model | data | MADEs × width | parameters | CPU minutes (epochs) | −ELBO / −log p (nats) | "
             "log-likelihood (bound) | bits/dim (all images; SeRe-MAF: ELBO) | KL per layer |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        kl = " ".join(f"{v:.1f}" for v in r["kl_per_layer"]) or "-"
        bound = r["log_likelihood_bound"] + (f" on {r['iw_images']}" if "iw_images" in r else "")
        if "log_likelihood_same_images" in r:
            bound += f"; {r['log_likelihood_same_images']:.1f} on the first {r['same_images']}"
        lines.append(f"| {r['name']} | {r['data']} | {r['mades']} × {r['made_hidden']} | {r['parameters'] / 1e6:.1f} M | "
                     f"{budget(r)} | {r['neg_elbo_nats']:.1f} | {r['log_likelihood']:.1f} "
                     f"({bound}) | {r['bits_per_dim_elbo']:.3f} | {kl} |")
    lines += ["", "Gap, SeRe-MAF minus MAF, in test log-likelihood (nats per image; positive: the SeRe-MAF is better):", ""]
    for data in sorted({r["data"] for r in rows}):
        pair = {("sere" if r["variational"] else "maf"): r for r in rows if r["data"] == data}
        if len(pair) == 2:
            sere, maf = pair["sere"], pair["maf"]
            same = maf.get("log_likelihood_same_images", maf["log_likelihood"])
            gap = sere["log_likelihood"] - same
            lines.append(f"* {data}: {gap:+.2f} nats ({sere['log_likelihood_bound']} bound against the exact MAF "
                         f"figure, both on the first {sere.get('iw_images', sere['images'])} test images; with the "
                         f"SeRe-MAF's plain ELBO on all images: {-sere['neg_elbo_nats'] + maf['neg_elbo_nats']:+.2f}).")
    lines.append(f"* The paper, CIFAR-10 (Table 3, same MADEs and width 1024): SeRe-MAF ≥ {PAPER_CIFAR['sere_maf']} "
                 f"(ELBO) against MAF {PAPER_CIFAR['maf']}: {PAPER_CIFAR['sere_maf'] - PAPER_CIFAR['maf']:+d} nats.")
    carried = sorted({r["data"] for r in rows if r.get("carried_over")})
    lines += ["", "The Fashion-MNIST models are measured from their runs' checkpoints, not shipped."]
    if carried:
        lines += ["", f"Rows of {', '.join(carried)} are carried over from the previous run of this benchmark "
                      "(`--only` measured the others)."]
    if any(r.get("init_cpu_minutes") is not None for r in rows):
        lines += ["", "A budget 'a + b (m + n)' is a continuation (`train_flows.py --init`): a CPU minutes (m epochs) "
                      "of the first run, then b (n) continuing from its weights with a fresh optimizer; the pair "
                      "compared had the same runs, schedules and budgets, each pair side by side on one machine."]
    lines += ["", "The MAF paper's MNIST figures (Papamakarios et al. 2017, Table 2; long GPU training, "
              "MADEs of 1024 units): " + ", ".join(f"{n} {v}" for n, v in MAF_PAPER_MNIST) + " nats.",
              "", "![training curves](flows.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, data in zip(axes, ("MNIST", "Fashion-MNIST")):
        for r in rows:
            if r["data"] == data and r["curve"]:
                ax.plot([p["cpu_minutes"] for p in r["curve"]], [p["valid_neg_elbo"] for p in r["curve"]],
                        marker=".", label=r["name"])
        ax.set(title=data, xlabel="CPU minutes", ylabel="valid −ELBO / −log p (nats, logit space)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@click.command()
@click.option("--runs", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory of run dirs sere_maf, maf, fashion_sere_maf, fashion_maf (each with checkpoint.pt).")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "serecodec" / "models",
              help="Where the exported weights are: sere-maf.pt, maf.pt, fashion-sere-maf.pt, fashion-maf.pt.")
@click.option("--iw-samples", type=int, default=100, show_default=True)
@click.option("--iw-limit", type=int, default=1000, show_default=True)
@click.option("--limit", type=int, default=None, help="Test images (default: all 10,000).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
@click.option("--only", type=click.Choice(["MNIST", "Fashion-MNIST"]), default=None,
              help="Measure only this data set; keep the other rows of OUT_DIR/flows.json.")
def main(runs, models_dir, iw_samples, iw_limit, limit, out_dir, only):
    torch.set_num_threads(1)
    previous_path = out_dir / "flows.json"
    previous = json.loads(previous_path.read_text())["rows"] if previous_path.is_file() else []
    mnist = grey_levels()[2][:limit]
    fashion = grey_levels(FASHION_DIR)[2][:limit] if Path(FASHION_DIR).is_dir() else None
    rows = []
    for prefix, data, levels in (("", "MNIST", mnist), ("fashion-", "Fashion-MNIST", fashion)):
        for name, stem in (("SeRe-MAF", "sere-maf"), ("MAF", "maf")):
            run = runs / f"{prefix.replace('-', '_')}{stem.replace('-', '_')}"
            weights = models_dir / f"{prefix}{stem}.pt"      # shipped weights, else the run's checkpoint
            weights = weights if weights.is_file() else run / "checkpoint.pt"
            earlier = next((r for r in previous if (r["name"], r["data"]) == (name, data)), None)
            if only and data != only:
                if earlier:
                    rows.append({**earlier, "carried_over": True})
                continue
            if levels is None or not weights.is_file():
                click.echo(f"skipping {weights} ({'no data' if levels is None else 'not there'})", err=True)
                continue
            log = run / "log.jsonl"
            rows.append(row(name, data, weights, levels, iw_samples, iw_limit, log, earlier))
            click.echo(f"{name} {data}: {rows[-1]['log_likelihood']:.1f} nats ({rows[-1]['log_likelihood_bound']})",
                       err=True)
    write_results(out_dir, "flows", {"rows": rows}, markdown(rows))
    plot(rows, out_dir / "flows.png")
    click.echo(markdown(rows))


if __name__ == "__main__":
    main()
