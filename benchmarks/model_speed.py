#!/usr/bin/env python
"""Each shipped coding model's speed on one core, in one run: bits-back through the library
(`Codec(model=M, workers=1)`, one BLAS thread), encode without and with verification and decode,
on the same test digits, every archive decoded and compared. The models' speeds relative to the
default (measured beside each other) move less with the machine than the images/s do.

    python benchmarks/model_speed.py                  # 1,000 test digits
    python benchmarks/model_speed.py --quick          # the first 60 fixture digits
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import test_images, write_results    # noqa: E402
from process import cpu_name                        # noqa: E402
from serecodec.codec import Codec                   # noqa: E402

MODELS = ("default", "pixel", "resnet")      # (the shipped coding models)


def measure(model: str, squares: np.ndarray) -> dict:
    codec = Codec(model=model, workers=1)
    codec.compress(squares[:4], method="bits-back")          # load the model and any compiled kernels
    seconds = {}
    for name, verify in (("encode", False), ("verified_encode", True)):
        tic = time.perf_counter()
        data = codec.compress(squares, method="bits-back", verify=verify)
        seconds[name] = time.perf_counter() - tic
    tic = time.perf_counter()
    back = codec.decompress(data)
    seconds["decode"] = time.perf_counter() - tic
    if not np.array_equal(np.asarray(back), squares):
        raise SystemExit(f"{model}: the archive did not decode to its images")
    return {"model": model, "bytes": len(data), "bits_per_dim": 8 * len(data) / squares.size,
            **{f"{k}_images_per_s": len(squares) / v for k, v in seconds.items()}}


def render(r: dict) -> str:
    lines = [f"{r['source']}, {r['images']} images, bits-back, library, one worker and one BLAS thread, measured "
             f"in one run (`python benchmarks/model_speed.py`) on {r['cpu']}.", "",
             "| model | bits/dim | encode images/s | verified encode | decode images/s | decode vs default |",
             "|---|---|---|---|---|---|"]
    base = next(row for row in r["rows"] if row["model"] == "default")["decode_images_per_s"]
    for row in r["rows"]:
        lines.append(f"| {row['model']} | {row['bits_per_dim']:.4f} | {row['encode_images_per_s']:.0f} | "
                     f"{row['verified_encode_images_per_s']:.0f} | {row['decode_images_per_s']:.0f} | "
                     f"{row['decode_images_per_s'] / base:.2f}x |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--quick", is_flag=True, help="The first 60 fixture digits.")
@click.option("--images", "count", type=int, default=1000, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(quick, count, out_dir):
    from threadpoolctl import threadpool_limits
    images, source = test_images(quick, limit=60 if quick else count)
    squares = images.reshape(-1, 28, 28)
    with threadpool_limits(limits=1):
        rows = [measure(model, squares) for model in MODELS]
    report = {"images": len(squares), "source": source, "cpu": cpu_name(), "rows": rows}
    write_results(out_dir, "model_speed_quick" if quick else "model_speed", report, render(report))
    click.echo(render(report))


if __name__ == "__main__":
    main()
