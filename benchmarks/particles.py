#!/usr/bin/env python
"""Importance-weighted bits-back (BB-IS): coded rate against the coding model's IW-K bound for
K = 1..32 particles, with encode/decode speed, and the whole test set with K = 16 vs K = 1.

    python benchmarks/particles.py            # 2,000 test digits per K; the 10k set with K = 1 and 16
    python benchmarks/particles.py --quick    # 100 fixture digits, K = 1, 2, 4 (CI)

Net rate: the archive's payload less the initial words (coded without the warm start, so the
payload is exactly the initial words plus what the images cost), per image. IW-K bound: the
coding model's −log mean importance weight over K posterior samples (K = 1: its −ELBO).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import test_images, write_results       # noqa: E402
from serecodec.bitsback import initial_word_count      # noqa: E402
from serecodec.codec import Codec                      # noqa: E402
from serecodec.evaluate import coding_bound            # noqa: E402

LN2 = math.log(2)


def rate_row(images: np.ndarray, particles: int) -> dict:
    codec = Codec(particles=particles, warm_start=False)
    squares = images.reshape(-1, 28, 28)
    tic = time.perf_counter()
    data = codec.compress(squares, method="bits-back")
    encode_s = time.perf_counter() - tic
    tic = time.perf_counter()
    exact = bool(np.array_equal(codec.decompress(data), squares))
    decode_s = time.perf_counter() - tic
    archive = codec.read(data)
    net = (archive.payload_bits - 32 * initial_word_count(codec.model, particles)) * LN2 / len(images)
    bound = coding_bound(codec.model, images, particles)["iw_nats"]
    return {"particles": particles, "net_nats": net, "net_bpd": net / LN2 / 784, "iw_nats": bound,
            "iw_bpd": bound / LN2 / 784, "net_over_bound": net / bound, "bit_exact": exact,
            "encode_images_per_s": len(images) / encode_s, "decode_images_per_s": len(images) / decode_s}


def whole_set(images: np.ndarray, particles: int) -> dict:
    codec = Codec(particles=particles)
    squares = images.reshape(-1, 28, 28)
    tic = time.perf_counter()
    data = codec.compress(squares, method="bits-back")
    encode_s = time.perf_counter() - tic
    exact = bool(np.array_equal(codec.decompress(data), squares))
    return {"particles": particles, "bytes": len(data), "bpd": 8 * len(data) / images.size,
            "warm_start_images": codec.read(data).warm_images, "bit_exact": exact, "encode_s": encode_s}


@click.command()
@click.option("--quick", is_flag=True)
@click.option("--images", "count", type=int, default=2000, show_default=True, help="Images per K in the table.")
@click.option("--particles", default="1,2,4,8,16,32", show_default=True)
@click.option("--whole/--no-whole", default=True, show_default=True, help="Also the whole set with K = 1 and 16.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(quick, count, particles, whole, out_dir):
    images, source = test_images(quick)
    ks = [int(k) for k in particles.split(",")]
    if quick:
        count, ks = 100, [1, 2, 4]
    rows = []
    for k in ks:
        rows.append(rate_row(images[:count], k))
        click.echo(f"K={k}: net {rows[-1]['net_nats']:.2f} nats, IW bound {rows[-1]['iw_nats']:.2f}", err=True)
    report = {"source": source, "images": min(count, len(images)), "rows": rows}
    if whole:
        report["whole"] = [whole_set(images, k) for k in (1, 16)]
        report["whole_images"] = len(images)
        report["whole_saving"] = 1 - report["whole"][1]["bytes"] / report["whole"][0]["bytes"]
    write_results(out_dir, "particles_quick" if quick else "particles", report, render(report))
    click.echo(render(report))


def render(r: dict) -> str:
    lines = [f"{r['source']}, first {r['images']} images (`python benchmarks/particles.py`). Net coded rate of "
             f"importance-weighted bits-back against the coding model's IW-K bound (K = 1: its −ELBO); one core.", "",
             "| K | net rate (nats) | bits/dim | IW-K bound (nats) | net / bound | encode img/s | decode img/s |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['particles']} | {row['net_nats']:.2f} | {row['net_bpd']:.4f} | {row['iw_nats']:.2f} | "
                     f"{row['net_over_bound']:.4f} | {row['encode_images_per_s']:.0f} | "
                     f"{row['decode_images_per_s']:.0f} |")
    if "whole" in r:
        one, many = r["whole"]
        lines += ["", f"* All {r['whole_images']} images, default flags with `--method bits-back`: K = 1 "
                  f"{one['bytes']:,} bytes ({one['bpd']:.4f} bits/dim), K = 16 {many['bytes']:,} bytes "
                  f"({many['bpd']:.4f} bits/dim, warm start {many['warm_start_images']} images): "
                  f"**{100 * r['whole_saving']:.1f}% smaller**; encode {one['encode_s']:.0f} s vs "
                  f"{many['encode_s']:.0f} s; both decoded exactly: {one['bit_exact'] and many['bit_exact']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
