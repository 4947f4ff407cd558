#!/usr/bin/env python
"""Coding below the ELBO's overheads: the warm start (no random initial bits) and unordered
collections (bits-back over the order), on the fixed binarized MNIST test set.

    python benchmarks/below_elbo.py            # 10,000 test digits
    python benchmarks/below_elbo.py --quick    # the 300 fixture digits (CI)

Writes results/below_elbo.json, .md and .png: the whole-archive rate of the first n digits with
the warm start (the default), with random initial bits (the previous release) and with the
static context model alone; ordered vs unordered archives of the whole set.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import test_images                 # noqa: E402
from serecodec.codec import Codec                 # noqa: E402
from serecodec.multiset import canonical_order    # noqa: E402

GRID = (1, 2, 3, 5, 7, 10, 14, 20, 27, 38, 50, 73, 100, 142, 200, 300, 500, 1000, 2000)


def bpd(data: bytes, count: int) -> float:
    return 8 * len(data) / (count * 784)


@click.command()
@click.option("--quick", is_flag=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(quick, out_dir):
    images, source = test_images(quick)
    squares = images.reshape(-1, 28, 28)
    warm, cold = Codec(), Codec(warm_start=False)
    curve = []
    for n in [n for n in GRID if n <= len(squares)]:
        part = squares[:n]
        default = warm.compress(part)
        row = {"n": n, "default_bpd": bpd(default, n), "default_method": warm.read(default).method,
               "warm_bits_back_bpd": bpd(warm.compress(part, method="bits-back"), n),
               "initial_bits_bits_back_bpd": bpd(cold.compress(part, method="bits-back"), n),
               "context_bpd": bpd(warm.compress(part, method="context"), n) if n <= 4096 else None}
        assert np.array_equal(warm.decompress(default), part)
        curve.append(row)
    tic = time.perf_counter()
    ordered = warm.compress(squares, method="bits-back")
    ordered_s = time.perf_counter() - tic
    tic = time.perf_counter()
    unordered = warm.compress(squares, method="bits-back", ordered=False)
    unordered_s = time.perf_counter() - tic
    tic = time.perf_counter()
    restored = warm.decompress(unordered)
    unordered_decode_s = time.perf_counter() - tic
    assert np.array_equal(restored, squares[canonical_order(squares)])
    keys, counts = np.unique(images, axis=0, return_counts=True)
    order_bits = (math.lgamma(len(squares) + 1) - sum(math.lgamma(c + 1) for c in counts)) / math.log(2)
    whole = bpd(ordered, len(squares))
    report = {"source": source, "images": len(squares), "curve": curve,
              "ordered_bpd": whole, "unordered_bpd": bpd(unordered, len(squares)),
              "order_information_bpd": order_bits / (len(squares) * 784),
              "distinct_images": int(len(keys)),
              "ordered_encode_s": ordered_s, "unordered_encode_s": unordered_s,
              "unordered_decode_s": unordered_decode_s}
    for row in curve:
        row["over_whole_set"] = row["default_bpd"] / whole
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "below_elbo_quick" if quick else "below_elbo"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(render(report))
    plot(report, out_dir / f"{name}.png")
    click.echo(render(report))


def render(r: dict) -> str:
    lines = [f"{r['source']} (`python benchmarks/below_elbo.py`). Whole-archive bits/dim of the first n digits, "
             f"headers included:", "",
             "| n | default (`auto`) | bits-back, warm start | bits-back, random initial bits (before) | "
             "static context model | default / whole set |", "|---|---|---|---|---|---|"]
    for row in r["curve"]:
        ctx = f"{row['context_bpd']:.4f}" if row["context_bpd"] is not None else "–"
        lines.append(f"| {row['n']} | {row['default_bpd']:.4f} ({row['default_method']}) | {row['warm_bits_back_bpd']:.4f} | "
                     f"{row['initial_bits_bits_back_bpd']:.4f} | {ctx} | {row['over_whole_set']:.3f} |")
    lines += ["", f"* All {r['images']} images as one archive: ordered **{r['ordered_bpd']:.4f}** bits/dim, unordered "
              f"(`--unordered`) **{r['unordered_bpd']:.4f}** bits/dim; the order holds "
              f"{r['order_information_bpd']:.4f} bits/dim (log2 N! less the duplicates' share; "
              f"{r['distinct_images']} distinct images). Unordered encode {r['unordered_encode_s']:.1f} s "
              f"(ordered {r['ordered_encode_s']:.1f} s), decode {r['unordered_decode_s']:.1f} s."]
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = [row["n"] for row in r["curve"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(n, [row["warm_bits_back_bpd"] for row in r["curve"]], "o-", label="bits-back, warm start")
    ax.plot(n, [row["initial_bits_bits_back_bpd"] for row in r["curve"]], "s--", label="bits-back, random initial bits")
    ax.plot([x for x, row in zip(n, r["curve"]) if row["context_bpd"]],
            [row["context_bpd"] for row in r["curve"] if row["context_bpd"]], "^:", label="static context model")
    ax.axhline(r["ordered_bpd"], color="grey", lw=0.8, label="whole set, ordered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images in the archive")
    ax.set_ylabel("whole-archive bits/dim")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
