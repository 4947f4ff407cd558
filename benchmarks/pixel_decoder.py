#!/usr/bin/env python
"""The pixel-regressive likelihood (issue 21) against the factorized decoder it was warm-started
from, on the fixed binarized MNIST test set: test −ELBO and IW-k as likelihoods, then the coded
rate of real archives (`serecodec compress` with default flags, each in a fresh process, every
output decoded and compared) against each coding model's own −ELBO, and images/s each way.

    python training/train.py --config training/configs/pixel_cpu.json --run-dir RUN   # ~2 CPU hours
    serecodec export RUN/checkpoint.pt -o serecodec/models/pixel.pt
    python benchmarks/pixel_decoder.py --weights serecodec/models/pixel.pt [--iw-limit 1000]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import test_images, write_results          # noqa: E402
from process import timed_process                          # noqa: E402
from serecodec.checkpoint import load_model                # noqa: E402
from serecodec.evaluate import coded_rates, elbo_figures, iw_figures    # noqa: E402
from serecodec.registry import resolve_coding_model        # noqa: E402


def row(name: str, model, images, iw_samples: int, iw_limit: int) -> dict:
    torch.manual_seed(0)
    figures = elbo_figures(model, images)
    if iw_samples:
        figures.update(iw_figures(model, images, iw_samples, iw_limit))
    c = model.config
    return {"name": name, "pixel_context": c.pixel_context or "none", "pixel_hidden": c.pixel_hidden if c.pixel_context
            else 0, "epochs": (model.meta or {}).get("epoch"), **figures}


def coded_row(name: str, coding_path: Path, images: np.ndarray, particles: int, tmp: Path) -> dict:
    """Bytes and speed of a real archive of ``images`` under one coding model, whole process."""
    squares = images.reshape(-1, 28, 28)
    np.save(tmp / "x.npy", squares)
    extra = ["--particles", particles] if particles > 1 else []
    enc = timed_process(["compress", tmp / "x.npy", "-o", tmp / "x.sere", "--model", coding_path, "-q", "-f", *extra])
    dec = timed_process(["decompress", tmp / "x.sere", "--npy", "-o", tmp / "y.npy", "--model", coding_path, "-q", "-f"])
    assert np.array_equal(np.load(tmp / "y.npy"), squares), "decoded images differ"
    # the net rate at the bound, measured as `serecodec bpd --code` does: one chunk from initial words
    net = coded_rates(str(coding_path), None, images, particles)
    return {"name": name, "particles": particles, "images": len(images), "bytes": (tmp / "x.sere").stat().st_size,
            "bits_per_dim": 8 * (tmp / "x.sere").stat().st_size / images.size,
            "net_nats": net["net_nats"], "coding_bound_nats": net["iw_nats"], "net_over_bound": net["net_over_bound"],
            "library_encode_images_per_s": net["encode_images_per_s"],
            "library_decode_images_per_s": net["decode_images_per_s"],
            "encode_images_per_s": len(images) / enc["seconds"], "decode_images_per_s": len(images) / dec["seconds"],
            "encode_peak_mb": enc["peak_mb"], "decode_peak_mb": dec["peak_mb"]}


def markdown(rows: list, coded: list, source: str) -> str:
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
    if coded:
        lines += ["", f"Real archives of the {coded[0]['images']:,} images (`serecodec compress x.npy --model M` with "
                  "default flags, each in a fresh process on this machine; every archive decoded and compared): "
                  "total bits/dim counts every header and initial word. Net is measured as `serecodec bpd --code` "
                  "does (the images as one bits-back chunk from initial words, payload less those words, per "
                  "image) against the coding model's own −ELBO (IW-K with particles).", "",
                  "| decoder | particles | bytes | bits/dim | net nats | coding model's bound | net / bound | "
                  "encode images/s | decode images/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in coded:
            net = (f"{r['net_nats']:.2f}", f"{r['net_over_bound']:.4f}")
            lines.append(f"| {r['name']} | {r['particles']} | {r['bytes']:,} | {r['bits_per_dim']:.4f} | "
                         f"{net[0]} | {r['coding_bound_nats']:.2f} | {net[1]} | "
                         f"{r['encode_images_per_s']:.0f} | {r['decode_images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The pixel-regressive model's checkpoint (training/configs/pixel_cpu.json).")
@click.option("--baseline", default="default", show_default=True, help="The factorized model it started from.")
@click.option("--iw-samples", type=int, default=100, show_default=True)
@click.option("--iw-limit", type=int, default=1000, show_default=True)
@click.option("--limit", type=int, default=None, help="Test images (default: all 10,000).")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--particles", type=int, default=16, show_default=True,
              help="Also code the first --iw-limit images with this many particles (1: skip).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(weights, baseline, iw_samples, iw_limit, limit, threads, particles, out_dir):
    torch.set_num_threads(threads)
    images, source = test_images(False, limit)
    rows = [row("factorized (shipped default)", load_model(baseline), images, iw_samples, iw_limit),
            row("pixel-regressive (warm start)", load_model(weights), images, iw_samples, iw_limit)]
    coded = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (("factorized", baseline), ("pixel-regressive", str(weights))):
            for k in sorted({1, particles}):
                coded.append(coded_row(name, resolve_coding_model(spec), images if k == 1 else images[:iw_limit], k,
                                       Path(tmp)))
    report = {"source": source, "weights": str(weights), "rows": rows, "coded": coded}
    write_results(out_dir, "pixel_decoder", report, markdown(rows, coded, source))
    click.echo(json.dumps(report["coded"], indent=1))


if __name__ == "__main__":
    main()
