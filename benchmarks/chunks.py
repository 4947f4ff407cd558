#!/usr/bin/env python
"""What independent chunks cost and what they save: the fixed binarized 10k MNIST test set
compressed with default flags at several chunk sizes (one chunk = what a single stack gives),
and, for each, one byte flipped in the middle of the archive and ``salvage`` run on it.

    python benchmarks/chunks.py                 # writes results/chunks.json and results/chunks.md
    python benchmarks/chunks.py --limit 2000    # a quicker look
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serecodec.codec import CHUNK_PIXELS, Codec       # noqa: E402
from serecodec.data import fixed_test_set, load_mnist  # noqa: E402

PIXELS = 784


def measure(images: np.ndarray, chunk_images: int) -> dict:
    codec = Codec(chunk_pixels=chunk_images * PIXELS)
    tic = time.perf_counter()
    data = codec.compress(images)
    encode_s = time.perf_counter() - tic
    archive = codec.read(data)
    broken = bytearray(data)
    broken[len(data) // 2] ^= 0x10
    tic = time.perf_counter()
    rescued = codec.salvage(bytes(broken))
    salvage_s = time.perf_counter() - tic
    exact = all(got is None or np.array_equal(got, want) for got, want in zip(rescued.images, images))
    return {"chunk_images": chunk_images, "chunks": len(archive.chunks), "bytes": len(data),
            "bits_per_dim": 8 * len(data) / images.size, "methods": sorted({c.method for c in archive.chunks}),
            "params_bytes": sum(len(c.params) for c in archive.chunks),
            "restored_after_flip": rescued.restored / len(images), "lost_chunks": len(rescued.lost),
            "restored_exact": exact, "encode_s": encode_s, "salvage_s": salvage_s}


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N test images.")
@click.option("--sizes", default="500,1000,1338,2000,5000,0", show_default=True,
              help="Chunk sizes in images (0: the whole set in one chunk).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(limit, sizes, out_dir):
    images = fixed_test_set(load_mnist()).reshape(-1, 28, 28).astype(np.uint8)
    if limit:
        images = images[:limit]
    rows = []
    for size in (int(s) for s in sizes.split(",")):
        row = measure(images, size or len(images))
        rows.append(row)
        click.echo(json.dumps(row), err=True)
    single = next(r for r in rows if r["chunks"] == 1)
    for row in rows:
        row["rate_cost"] = row["bytes"] / single["bytes"] - 1
    report = {"images": len(images), "default_chunk_pixels": CHUNK_PIXELS, "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chunks.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"Chunk size on the fixed binarized MNIST test set ({len(images):,} images, default flags; "
             f"the default chunk is {CHUNK_PIXELS:,} pixels = {CHUNK_PIXELS // PIXELS:,} digits). "
             f"'After one flip': one byte flipped in the middle of the archive, then `salvage`.", "",
             "| images a chunk | chunks | bytes | bits/dim | rate cost vs one chunk | parameter bytes a chunk "
             "| after one flip: restored | exact |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['chunk_images']:,} | {r['chunks']} | {r['bytes']:,} | {r['bits_per_dim']:.4f} | "
                     f"{100 * r['rate_cost']:+.2f}% | {r['params_bytes'] / r['chunks']:.0f} | "
                     f"{100 * r['restored_after_flip']:.1f}% | {r['restored_exact']} |")
    (out_dir / "chunks.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
