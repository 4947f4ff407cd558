#!/usr/bin/env python
"""Chunks on several cores: the fixed binarized 10k MNIST test set coded and decoded by the
library with 1 and 2 chunk workers (forked processes where the platform allows, else threads),
verified and not; every archive decoded and
compared, and the archives of every worker count compared byte for byte. Ratios are measured in
one run, so a busy machine moves them less than the absolute speeds.

    python benchmarks/workers.py             # writes results/workers.json and results/workers.md
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

from serecodec.codec import Codec                      # noqa: E402
from serecodec.parallel import fork_available         # noqa: E402
from serecodec.data import fixed_test_set, load_mnist  # noqa: E402


def measure(images: np.ndarray, workers: int, verify: bool) -> dict:
    codec = Codec(workers=workers)
    tic = time.perf_counter()
    data = codec.compress(images, verify=verify)
    encode_s = time.perf_counter() - tic
    tic = time.perf_counter()
    back = codec.decompress(data)
    decode_s = time.perf_counter() - tic
    return {"workers": workers, "verify": verify, "bytes": len(data), "exact": bool(np.array_equal(back, images)),
            "encode_images_per_s": len(images) / encode_s, "decode_images_per_s": len(images) / decode_s,
            "archive": data}


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N test images.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(limit, out_dir):
    images = fixed_test_set(load_mnist()).reshape(-1, 28, 28).astype(np.uint8)[:limit]
    rows = [measure(images, workers, verify) for verify in (False, True) for workers in (1, 2)]
    same = len({row.pop("archive") for row in rows}) == 1
    report = {"images": len(images), "rows": rows, "archives_identical": same,
              "workers_are": "processes" if fork_available() else "threads"}
    by = {(r["workers"], r["verify"]): r for r in rows}
    report["two_over_one"] = {
        "decode": by[2, False]["decode_images_per_s"] / by[1, False]["decode_images_per_s"],
        "encode_unverified": by[2, False]["encode_images_per_s"] / by[1, False]["encode_images_per_s"],
        "encode_verified": by[2, True]["encode_images_per_s"] / by[1, True]["encode_images_per_s"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "workers.json").write_text(json.dumps(report, indent=2) + "\n")
    r = report["two_over_one"]
    kind = "processes" if fork_available() else "threads"
    lines = [f"Chunk workers ({kind}) on the fixed binarized MNIST test set ({len(images):,} images, library, default "
             f"chunks; every archive decoded exactly: {all(x['exact'] for x in rows)}; archives identical for 1 and 2 "
             f"workers: {same}). One worker checks its chunks in a thread of its own beside it; worker processes "
             f"check their own chunks.",
             "", "| workers | verified | encode images/s | decode images/s |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['workers']} | {row['verify']} | {row['encode_images_per_s']:.0f} | "
                     f"{row['decode_images_per_s']:.0f} |")
    lines += ["", f"Two workers over one: decode **{r['decode']:.2f}x**, unverified encode "
                  f"**{r['encode_unverified']:.2f}x**, verified encode **{r['encode_verified']:.2f}x**."]
    (out_dir / "workers.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
