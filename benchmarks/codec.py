#!/usr/bin/env python
"""The real coder on the fixed binarized MNIST test set: rate vs ELBO, exactness, speed.

Measures, in one run on the same images:
  * float-model −ELBO, coding-model −ELBO (the quantization cost is their difference);
  * coded rate net (payload less the initial bits) and total (the whole archive), bits/dim;
  * that every image decodes bit-exactly;
  * encode / decode images/s and where the time goes (networks, bucket tables, ANS coder);
  * the bucket-count trade-off (rate and speed for K = 2^4 .. 2^10) and batch-size scaling.
Writes results/codec.json and results/codec.md.

    python benchmarks/codec.py            # all 10,000 test images
    python benchmarks/codec.py --quick    # the 300 committed fixture digits
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import click
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from serecodec.bitsback import BitsBackEncoder, initial_word_count, PhaseTimer, decode_images
from serecodec.checkpoint import load_model
from serecodec.codec import Codec
from serecodec.coding_model import CodingModel
from serecodec.export import export_coding_model
from benchdata import test_images
from serecodec.evaluate import elbo_per_image, nats_to_bpd

LN2 = math.log(2)


def run_coder(model: CodingModel, images: np.ndarray, max_batch: int = 256, threads: int = 1) -> dict:
    flat = images.reshape(len(images), -1)
    encoder = BitsBackEncoder(model, max_batch)
    with threadpool_limits(limits=threads, user_api="blas"):
        tic = time.perf_counter()
        encoder.push(flat)
        payload = encoder.compressed()
        encode_s = time.perf_counter() - tic
        timer = PhaseTimer()
        tic = time.perf_counter()
        decoded = decode_images(model, payload, encoder.batch_sizes, timer=timer)
        decode_s = time.perf_counter() - tic
    net_nats = (32 * len(payload) - 32 * initial_word_count(model)) * LN2 / len(images)
    return {"images": len(images), "bit_exact": bool(np.array_equal(decoded, flat)),
            "net_nats": net_nats, "net_bpd": nats_to_bpd(net_nats), "payload_words": int(len(payload)),
            "batches": len(encoder.batch_sizes),
            "encode_images_per_s": len(images) / encode_s, "decode_images_per_s": len(images) / decode_s,
            "encode_seconds_by_phase": {k: round(v, 3) for k, v in encoder.timer.seconds.items()},
            "decode_seconds_by_phase": {k: round(v, 3) for k, v in timer.seconds.items()},
            "encode_seconds": encode_s, "decode_seconds": decode_s}


def markdown(report: dict) -> str:
    m = report["main"]
    lines = [
        f"{report['data']}, {m['images']} images, shipped default model "
        f"(coding model `{m['coding_model_hash'][:16]}`, {2 ** m['bucket_bits']} buckets per latent).",
        "",
        "| quantity | nats/image | bits/dim |",
        "|---|---|---|",
        f"| −ELBO, float model | {m['float_neg_elbo_nats']:.2f} | {nats_to_bpd(m['float_neg_elbo_nats']):.4f} |",
        f"| −ELBO, integer coding model | {m['coding_neg_elbo_nats']:.2f} | {nats_to_bpd(m['coding_neg_elbo_nats']):.4f} |",
        f"| coded rate, net (initial bits excluded) | {m['net_nats']:.2f} | {m['net_bpd']:.4f} |",
        f"| coded rate, total (whole archive file) | {m['total_nats']:.2f} | {m['total_bpd']:.4f} |",
        "",
        f"* net coded rate / coding-model −ELBO = **{m['net_over_coding_elbo']:.4f}**; "
        f"quantization cost (coding − float −ELBO) = {m['coding_neg_elbo_nats'] - m['float_neg_elbo_nats']:+.2f} nats/image; "
        f"all {m['images']} images decoded bit-exactly: **{m['bit_exact']}**.",
        f"* speed (1 BLAS thread, numpy engine, batches up to 256): encode "
        f"**{m['encode_images_per_s']:.0f}** images/s, decode **{m['decode_images_per_s']:.0f}** images/s. "
        f"Encode time by phase (s): {m['encode_seconds_by_phase']}; decode: {m['decode_seconds_by_phase']}.",
        "",
        f"Bucket count trade-off ({report['sweep_images']} images):",
        "",
        "| buckets K | coding −ELBO nats | net coded nats | encode img/s | decode img/s |",
        "|---|---|---|---|---|",
    ]
    for row in report["bucket_sweep"]:
        lines.append(f"| {2 ** row['bucket_bits']} | {row['coding_neg_elbo_nats']:.2f} | {row['net_nats']:.2f} "
                     f"| {row['encode_images_per_s']:.0f} | {row['decode_images_per_s']:.0f} |")
    lines += ["", f"Batch-size scaling ({report['sweep_images']} images):", "",
              "| max batch | encode img/s | decode img/s |", "|---|---|---|"]
    for row in report["batch_sweep"]:
        lines.append(f"| {row['max_batch']} | {row['encode_images_per_s']:.0f} | {row['decode_images_per_s']:.0f} |")
    lines += ["", f"BLAS threads ({report['sweep_images']} images):", "",
              "| threads | encode img/s | decode img/s |", "|---|---|---|"]
    for row in report["thread_sweep"]:
        lines.append(f"| {row['threads']} | {row['encode_images_per_s']:.0f} | {row['decode_images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--limit", type=int, default=None, help="Test images (default: all 10,000).")
@click.option("--sweep-images", type=int, default=2000, show_default=True)
@click.option("--quick", is_flag=True, help="The 300 fixture digits, no download.")
@click.option("--data-dir", default=None)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
def main(limit, sweep_images, quick, data_dir, out_dir):
    if quick:
        sweep_images = min(sweep_images, 300)
    images, source = test_images(quick, limit, data_dir)
    float_model = load_model(None)
    codec = Codec()
    elbo, _, _ = elbo_per_image(float_model, torch.as_tensor(images, dtype=torch.float32))
    expected = codec.model.expected_rate(images)
    main_run = run_coder(codec.model, images)
    data = codec.compress(images.reshape(-1, 28, 28), method="bits-back")
    total_nats = 8 * len(data) * LN2 / len(images)
    main_run.update({
        "coding_model_hash": codec.model.hash, "bucket_bits": codec.model.bucket_bits,
        "float_neg_elbo_nats": -elbo.mean().item(), "coding_neg_elbo_nats": expected["neg_elbo_nats"],
        "total_nats": total_nats, "total_bpd": nats_to_bpd(total_nats), "archive_bytes": len(data),
        "net_over_coding_elbo": main_run["net_nats"] / expected["neg_elbo_nats"],
        "net_over_float_elbo": main_run["net_nats"] / -elbo.mean().item(),
    })
    click.echo(f"net {main_run['net_nats']:.2f} nats vs coding -ELBO {expected['neg_elbo_nats']:.2f} "
               f"(ratio {main_run['net_over_coding_elbo']:.4f}); exact {main_run['bit_exact']}", err=True)
    subset = images[:sweep_images]
    bucket_sweep = []
    for bits in (4, 6, 8, 10):
        model = CodingModel(export_coding_model(float_model, bucket_bits=bits))
        row = run_coder(model, subset)
        row.update(bucket_bits=bits, coding_neg_elbo_nats=model.expected_rate(subset)["neg_elbo_nats"])
        bucket_sweep.append(row)
        click.echo(f"K=2^{bits}: net {row['net_nats']:.2f} nats, {row['encode_images_per_s']:.0f} img/s", err=True)
    batch_sweep = []
    for max_batch in (16, 64, 256, 1024):
        row = run_coder(codec.model, subset, max_batch=max_batch)
        row["max_batch"] = max_batch
        batch_sweep.append(row)
    thread_sweep = []
    for threads in (1, 2):
        row = run_coder(codec.model, subset, threads=threads)
        row["threads"] = threads
        thread_sweep.append(row)
    report = {"benchmark": "codec", "data": source,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "threads": torch.get_num_threads(), "numpy": np.__version__},
              "main": main_run, "sweep_images": len(subset), "bucket_sweep": bucket_sweep,
              "batch_sweep": batch_sweep, "thread_sweep": thread_sweep}
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if quick else ""
    (out_dir / f"codec{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"codec{suffix}.md").write_text(markdown(report))
    click.echo(markdown(report))


if __name__ == "__main__":
    main()
