#!/usr/bin/env python
"""The whole command-line process against the library, in one run: start-up time, images/s of
`serecodec compress` / `decompress --npy` vs `Codec().compress` / `decompress` on the same
images, peak resident memory of each process, and the archive with default flags vs --no-names.

    python benchmarks/process.py                 # 10,000 test digits; memory also at 100,000
    python benchmarks/process.py --quick         # the 300 fixture digits (CI)
"""
from __future__ import annotations

import json
import os
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

from benchdata import test_images               # noqa: E402
from serecodec.codec import Codec               # noqa: E402


def timed_process(args: list) -> dict:
    """Run ``serecodec ARGS`` in a fresh process; wall seconds and peak RSS (MB, from wait4)."""
    tic = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "serecodec.cli", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tic
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"serecodec {' '.join(map(str, args))} failed: {err}")
    return {"seconds": wall, "peak_mb": usage.ru_maxrss / 1024}


@click.command()
@click.option("--quick", is_flag=True)
@click.option("--memory-images", type=int, default=100000, show_default=True,
              help="Images in the memory test (test digits repeated).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(quick, memory_images, out_dir):
    images, source = test_images(quick)
    squares = images.reshape(-1, 28, 28)
    if quick:
        memory_images = 3000
    report = {"images": len(squares), "source": source}
    startup = []
    for _ in range(5):
        startup.append(timed_process(["--help"])["seconds"])
    report["startup_seconds_median"] = float(np.median(startup))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", squares)
        codec = Codec()
        tic = time.perf_counter()
        data = codec.compress(squares)
        lib_encode = time.perf_counter() - tic
        tic = time.perf_counter()
        assert np.array_equal(codec.decompress(data), squares)
        lib_decode = time.perf_counter() - tic
        enc = timed_process(["compress", tmp / "x.npy", "-o", tmp / "x.sere", "-q"])
        dec = timed_process(["decompress", tmp / "x.sere", "--npy", "-o", tmp / "y.npy", "-q"])
        assert np.array_equal(np.load(tmp / "y.npy"), squares)
        timed_process(["compress", tmp / "x.npy", "-o", tmp / "n.sere", "--no-names", "-q"])
        report.update({
            "library": {"encode_images_per_s": len(squares) / lib_encode, "decode_images_per_s": len(squares) / lib_decode},
            "process": {"encode_images_per_s": len(squares) / enc["seconds"],
                        "decode_images_per_s": len(squares) / dec["seconds"],
                        "encode_peak_mb": enc["peak_mb"], "decode_peak_mb": dec["peak_mb"]},
            "default_bytes": (tmp / "x.sere").stat().st_size, "no_names_bytes": (tmp / "n.sere").stat().st_size,
        })
        report["process_over_library"] = {
            "encode": report["process"]["encode_images_per_s"] / report["library"]["encode_images_per_s"],
            "decode": report["process"]["decode_images_per_s"] / report["library"]["decode_images_per_s"]}
        many = np.resize(squares, (memory_images, 28, 28))
        np.save(tmp / "many.npy", many)
        del many
        big_enc = timed_process(["compress", tmp / "many.npy", "-o", tmp / "many.sere", "-q"])
        big_dec = timed_process(["decompress", tmp / "many.sere", "--npy", "-o", tmp / "many_out.npy", "-q"])
        report["memory"] = {"images": memory_images, "npy_mb": (tmp / "many.npy").stat().st_size / 1e6,
                            "compress_peak_mb": big_enc["peak_mb"], "decompress_peak_mb": big_dec["peak_mb"],
                            "compress_seconds": big_enc["seconds"], "decompress_seconds": big_dec["seconds"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "process_quick" if quick else "process"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(render(report))
    click.echo(render(report))


def render(r: dict) -> str:
    p, lib, m = r["process"], r["library"], r["memory"]
    return "\n".join([
        f"{r['source']}, {r['images']} images, measured in one run (`python benchmarks/process.py`).", "",
        "| | encode images/s | decode images/s |", "|---|---|---|",
        f"| library (`Codec().compress` / `decompress`) | {lib['encode_images_per_s']:.0f} | {lib['decode_images_per_s']:.0f} |",
        f"| whole process (`serecodec compress x.npy` / `decompress --npy`) | {p['encode_images_per_s']:.0f} | "
        f"{p['decode_images_per_s']:.0f} |",
        f"| process / library | {r['process_over_library']['encode']:.2f} | {r['process_over_library']['decode']:.2f} |",
        "",
        f"* start-up (`serecodec --help`, median of 5 fresh processes): {r['startup_seconds_median']:.2f} s.",
        f"* default flags (the .npy's name, dtype and shape kept) {r['default_bytes']} bytes vs `--no-names` "
        f"{r['no_names_bytes']} bytes "
        f"({100 * (r['default_bytes'] / r['no_names_bytes'] - 1):+.2f}%).",
        f"* {m['images']:,} images ({m['npy_mb']:.0f} MB .npy): compress peaks at {m['compress_peak_mb']:.0f} MB resident "
        f"({m['compress_seconds']:.0f} s), decompress --npy at {m['decompress_peak_mb']:.0f} MB ({m['decompress_seconds']:.0f} s).",
    ]) + "\n"


if __name__ == "__main__":
    main()
