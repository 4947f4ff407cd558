#!/usr/bin/env python
"""Train the codec on your own images: glyphs rendered from this machine's fonts (letters and
symbols, no digits), trained with exactly the command a user runs, then the held-out glyphs
coded with bits-back and compared with JBIG coding them as one stacked stream.

    python benchmarks/own_model.py                  # 20,000 train / 2,000 held out, --max-minutes 8
    python benchmarks/own_model.py --quick          # 2,000 / 300, --max-minutes 0.5 (CI)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serecodec.codec import Codec              # noqa: E402
from serecodec.synthetic import glyphs         # noqa: E402


def jbig_stream_bytes(images: np.ndarray):
    from classical import _jbig_codec, tile
    codec, why = _jbig_codec()
    if codec is None:
        return None, why
    encode, decode = codec
    stacked = tile(images)
    data = encode(stacked)
    assert np.array_equal(decode(data), stacked)
    return len(data), None


@click.command()
@click.option("--quick", is_flag=True)
@click.option("--train-images", type=int, default=20000, show_default=True)
@click.option("--test-images", type=int, default=2000, show_default=True)
@click.option("--max-minutes", type=float, default=8.0, show_default=True)
@click.option("--preset", default="paper", show_default=True)
@click.option("--particles", type=int, default=16, show_default=True,
              help="Also code the held-out glyphs with this many importance particles (1: skip).")
@click.option("--extra", default="", help="More `serecodec train` options, e.g. '--init none --threads 1'.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(quick, train_images, test_images, max_minutes, preset, particles, extra, out_dir):
    if quick:
        train_images, test_images, max_minutes, preset, particles = 2000, 300, 0.5, "tiny", 2
    train = glyphs(np.random.default_rng(1), train_images)
    test = glyphs(np.random.default_rng(2), test_images)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "train.npy", train)
        command = ["serecodec", "train", "train.npy", "-o", "glyphs.pt", "--max-minutes", str(max_minutes),
                   "--preset", preset, "-q", *extra.split()]
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "serecodec.cli", *command[1:]], cwd=tmp, check=True)
        train_s = time.perf_counter() - tic
        codec = Codec(str(Path(tmp) / "glyphs.coding.npz"))
        card = json.loads((Path(tmp) / "glyphs.json").read_text())
        rows = {}
        for method in ("bits-back", "adaptive"):
            data = codec.compress(test, method=method)
            assert np.array_equal(codec.decompress(data), test)
            rows[f"serecodec {method} (glyph model)"] = len(data)
        if particles > 1:
            many = Codec(str(Path(tmp) / "glyphs.coding.npz"), particles=particles)
            data = many.compress(test, method="bits-back")
            assert np.array_equal(many.decompress(data), test)
            rows[f"serecodec bits-back, {particles} particles (glyph model)"] = len(data)
    digit_data = Codec().compress(test, method="bits-back")
    rows["serecodec bits-back (shipped digit model)"] = len(digit_data)
    jbig, why = jbig_stream_bytes(test)
    pixels = test.size
    report = {"quick": quick, "train_images": train_images, "test_images": test_images, "max_minutes": max_minutes,
              "preset": preset, "command": " ".join(command), "train_wall_s": train_s, "model": card,
              "bits_per_dim": {k: 8 * v / pixels for k, v in rows.items()},
              "jbig_stream_bits_per_dim": 8 * jbig / pixels if jbig else None, "jbig_missing": why}
    if jbig:
        report["ratio_to_jbig"] = {k: v / jbig for k, v in rows.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "own_model_quick" if quick else "own_model"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(render(report))
    click.echo(render(report))


def render(r: dict) -> str:
    lines = [f"{r['train_images']:,} training glyphs and {r['test_images']:,} held-out ones (letters and symbols "
             f"rendered from the DejaVu fonts, `serecodec.synthetic.glyphs`), trained with `{r['command']}` "
             f"({r['train_wall_s'] / 60:.1f} min wall); the held-out glyphs coded as one archive, every image checked.",
             "", "| coder | bits/dim | × JBIG stream |", "|---|---|---|"]
    for name, bpd in r["bits_per_dim"].items():
        ratio = r.get("ratio_to_jbig", {}).get(name)
        lines.append(f"| {name} | {bpd:.4f} | {ratio:.3f} |" if ratio else f"| {name} | {bpd:.4f} | – |")
    if r["jbig_stream_bits_per_dim"]:
        lines.append(f"| JBIG (jbigkit), all glyphs stacked in one image | {r['jbig_stream_bits_per_dim']:.4f} | 1.000 |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
