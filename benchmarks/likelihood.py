#!/usr/bin/env python
"""Test −ELBO and IW-k log-likelihood of shipped models on the fixed binarized MNIST test set.

Writes results/likelihood_<model>.json per model, then the Markdown table results/likelihood.md
from every such file present (so models can be evaluated in separate, parallel runs).

    python benchmarks/likelihood.py                    # default and dlgm, all 10,000 images, IW-1000
    python benchmarks/likelihood.py --quick            # 300 fixture digits, IW-100 (CI-sized)
    python benchmarks/likelihood.py --models resnet --iw-limit 1000   # IW on the first 1,000 only

Each row also runs the real coder (bits-back, one core) over the first --code-images test images:
its net rate and its encode/decode speed.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import torch

from serecodec.checkpoint import load_model, resolve_model
from benchdata import test_images
from serecodec.evaluate import coded_rates, evaluate


def markdown(rows: list[dict]) -> str:
    head = ("| model | variant | weights | epochs | CPU minutes | test images | −ELBO nats | −ELBO bits/dim "
            "| IW-k (images) | −log p(x) nats (IW) | bits/dim (IW) | coded net bits/dim | encode / decode img/s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")

    def coding(r: dict) -> str:
        c = r.get("coding")
        if not c:
            return "– | –"
        return f"{c['net_bpd']:.4f} | {c['encode_images_per_s']:.0f} / {c['decode_images_per_s']:.0f}"
    body = "".join(
        f"| {r['name']} | {r['variant']} | {r['weights_mb']} MB fp16 | {r['epochs']} | {r['train_cpu_minutes']} | {r['images']} "
        f"| {r['neg_elbo_nats']:.2f} | {r['neg_elbo_bpd']:.4f} | {r.get('iw_samples', '-')} ({r.get('iw_images', '-')}) "
        f"| {r.get('neg_iw_nats', float('nan')):.2f} | {r.get('neg_iw_bpd', float('nan')):.4f} | {coding(r)} |\n"
        for r in rows)
    sere = [r for r in rows if r["variant"] == "sere"]
    dlgm = [r for r in rows if r["variant"] == "dlgm"]
    if sere and dlgm and "neg_iw_nats" in sere[0] and "neg_iw_nats" in dlgm[0]:
        body += (f"\nSeRe-VAE ahead of the DLGM by **{dlgm[0]['neg_elbo_nats'] - sere[0]['neg_elbo_nats']:.2f} nats** "
                 f"(−ELBO) and **{dlgm[0]['neg_iw_nats'] - sere[0]['neg_iw_nats']:.2f} nats** (IW-{sere[0]['iw_samples']}) "
                 f"per test image with the same training budget (paper, 4000 epochs: 3.21 nats, −81.32 vs −84.53).\n")
    for r in rows:
        if r.get("iw_images") and r["iw_images"] < r["images"]:
            body += (f"\n* {r['name']}: IW on the first {r['iw_images']} test images only (these are easier than the "
                     f"average: its −ELBO on them is {r['neg_elbo_nats_same_images']:.2f}).\n")
    return head + body + equal_minutes()


def _curve(path: Path) -> list:
    """(cumulative training minutes, validation −ELBO) per epoch of a training log."""
    minutes, points = 0.0, []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        minutes += record["seconds"] / 60
        points.append((minutes, -record["valid_elbo"], record["epoch"]))
    return points


def equal_minutes(logs: Path = Path("results/training")) -> str:
    """The ResNet run against the MLP run at the same training minutes (same validation images)."""
    resnet, mlp = logs / "resnet_cpu.jsonl", logs / "sere_cpu.jsonl"
    if not (resnet.exists() and mlp.exists()):
        return ""
    r, m = _curve(resnet), _curve(mlp)
    minutes, r_elbo, r_epoch = r[-1]
    m_minutes, m_elbo, m_epoch = min(m, key=lambda point: abs(point[0] - minutes))
    return (f"\nAt equal training time on one CPU core: the ResNet model after {r_epoch} epochs "
            f"({minutes:.0f} min) has validation −ELBO **{r_elbo:.2f}** nats; the MLP after {m_epoch} epochs "
            f"({m_minutes:.0f} min) had **{m_elbo:.2f}** (logs in results/training/; 2,000 validation images).\n")


@click.command()
@click.option("--models", default="default,dlgm", show_default=True, help="Comma-separated names or paths.")
@click.option("--limit", type=int, default=None, help="Test images (default: all 10,000).")
@click.option("--iw-samples", type=int, default=1000, show_default=True)
@click.option("--iw-limit", type=int, default=None, help="IW estimate on the first N images only (default: all).")
@click.option("--code-images", type=int, default=2000, show_default=True,
              help="Images coded with the real coder for its rate and speed (0: skip).")
@click.option("--coding-only", is_flag=True, help="Only (re)measure the coder's rate and speed of rows already saved.")
@click.option("--quick", is_flag=True, help="The 300 fixture digits and IW-100, for a fast check.")
@click.option("--table-only", is_flag=True, help="Only rebuild the Markdown table from the JSON files present.")
@click.option("--data-dir", default=None)
@click.option("--threads", type=int, default=None)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
def main(models, limit, iw_samples, iw_limit, code_images, coding_only, quick, table_only, data_dir, threads, out_dir):
    if table_only:
        models = ""
    if threads:
        torch.set_num_threads(threads)
    if quick:
        iw_samples = min(iw_samples, 100)
    images, source = test_images(quick, limit, data_dir) if models else (None, "")
    rows = []
    suffix = "_quick" if quick else ""
    if coding_only:
        for spec in filter(None, models.split(",")):
            path = out_dir / f"likelihood{suffix}_{Path(spec).stem}.json"
            report = json.loads(path.read_text())
            report["result"]["coding"] = coded_rates(spec, load_model(spec), images[:code_images])
            path.write_text(json.dumps(report, indent=2) + "\n")
        models = ""
    for spec in filter(None, models.split(",")):
        model = load_model(spec)
        tic = time.time()
        result = evaluate(model, images, iw_samples=iw_samples, iw_limit=iw_limit)
        if code_images:
            result["coding"] = coded_rates(spec, model, images[:code_images])
        meta = getattr(model, "meta", {}) or {}
        rows.append({"name": spec, "path": str(resolve_model(spec)), "variant": model.config.variant,
                     "weights_mb": round(resolve_model(spec).stat().st_size / 1e6, 1),
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "epochs": meta.get("epoch"), "train_cpu_minutes": meta.get("train_cpu_minutes"),
                     "seconds": round(time.time() - tic, 1), **result})
        click.echo(f"{spec}: -ELBO {result['neg_elbo_nats']:.2f}  -IW{iw_samples} "
                   f"{result.get('neg_iw_nats', float('nan')):.2f} nats ({rows[-1]['seconds']} s)", err=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = {"threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__}
    for row in rows:
        report = {"benchmark": "likelihood", "data": source,
                  "machine": machine, "result": row}
        (out_dir / f"likelihood{suffix}_{Path(row['name']).stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    every = [json.loads(p.read_text())["result"] for p in sorted(out_dir.glob(f"likelihood{suffix}_*.json"))]
    every.sort(key=lambda r: (r["variant"] != "sere", r["name"]))
    (out_dir / f"likelihood{suffix}.md").write_text(markdown(every))
    click.echo(markdown(every))


if __name__ == "__main__":
    main()
