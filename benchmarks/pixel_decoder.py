#!/usr/bin/env python
"""The pixel-regressive likelihood (issue 21) against the factorized decoder it was warm-started
from: test −ELBO and IW-k on the fixed binarized MNIST test set, as likelihoods (the coding side
of the pixel-regressive model is not built yet, so there is no coded rate in this table).

    python training/train.py --config training/configs/pixel_cpu.json --run-dir RUN   # ~2 CPU hours
    python benchmarks/pixel_decoder.py --weights RUN/checkpoint.pt [--iw-limit 1000]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import test_images, write_results          # noqa: E402
from serecodec.checkpoint import load_model                # noqa: E402
from serecodec.evaluate import elbo_figures, iw_figures    # noqa: E402


def row(name: str, model, images, iw_samples: int, iw_limit: int) -> dict:
    torch.manual_seed(0)
    figures = elbo_figures(model, images)
    if iw_samples:
        figures.update(iw_figures(model, images, iw_samples, iw_limit))
    c = model.config
    return {"name": name, "pixel_context": c.pixel_context or "none", "pixel_hidden": c.pixel_hidden if c.pixel_context
            else 0, "epochs": (model.meta or {}).get("epoch"), **figures}


def markdown(rows: list, source: str) -> str:
    lines = [f"{source}, {rows[0]['images']} images; −ELBO over all, IW-{rows[0].get('iw_samples', '-')} over the first "
             f"{rows[0].get('iw_images', '-')} (nats per image; bits/dim in brackets).", "",
             "| decoder | causal template | −ELBO | recon | KL | IW-k | IW-k on the same images' −ELBO |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['pixel_context']} | {r['neg_elbo_nats']:.2f} ({r['neg_elbo_bpd']:.4f}) | "
                     f"{r['recon_nats']:.2f} | {r['kl_nats']:.2f} | {r.get('neg_iw_nats', float('nan')):.2f} "
                     f"({r.get('neg_iw_bpd', float('nan')):.4f}) | {r.get('neg_elbo_nats_same_images', float('nan')):.2f} |")
    if len(rows) == 2:
        lines += ["", f"The pixel-regressive likelihood is **{rows[0]['neg_elbo_nats'] - rows[1]['neg_elbo_nats']:.2f} "
                  f"nats** below the factorized −ELBO per test image."]
    return "\n".join(lines)


@click.command()
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The pixel-regressive model's checkpoint (training/configs/pixel_cpu.json).")
@click.option("--baseline", default="default", show_default=True, help="The factorized model it started from.")
@click.option("--iw-samples", type=int, default=100, show_default=True)
@click.option("--iw-limit", type=int, default=1000, show_default=True)
@click.option("--limit", type=int, default=None, help="Test images (default: all 10,000).")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(weights, baseline, iw_samples, iw_limit, limit, threads, out_dir):
    torch.set_num_threads(threads)
    images, source = test_images(False, limit)
    rows = [row("factorized (shipped default)", load_model(baseline), images, iw_samples, iw_limit),
            row("pixel-regressive (warm start)", load_model(weights), images, iw_samples, iw_limit)]
    report = {"source": source, "weights": str(weights), "rows": rows}
    write_results(out_dir, "pixel_decoder", report, markdown(rows, source))
    click.echo(json.dumps(report["rows"], indent=1))


if __name__ == "__main__":
    main()
