#!/usr/bin/env python
"""Bilevel images of every kind (serecodec.synthetic, seed 0): ours vs JBIG, TIFF G4, PNG, WebP
lossless, gzip and zstd on PBM, one file per image, per category; every output decoded and
compared. Writes results/bilevel.json and .md.

    python benchmarks/bilevel.py            # full-size pages (1240x1754)
    python benchmarks/bilevel.py --quick    # half-size pages, for CI
"""
from __future__ import annotations

import gzip
import io
import json
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serecodec.codec import Codec                 # noqa: E402
from serecodec.data import load_fixture           # noqa: E402
from serecodec.synthetic import image_set         # noqa: E402


def pbm(image: np.ndarray) -> bytes:
    """Raw PBM (P4): 1 = black ink, as our arrays hold it."""
    h, w = image.shape
    return f"P4\n{w} {h}\n".encode() + np.packbits(image.astype(np.uint8), axis=1).tobytes()


def from_pbm(data: bytes) -> np.ndarray:
    return (np.array(Image.open(io.BytesIO(data)).convert("L")) < 128).astype(np.uint8)


def stream_codec(compress, decompress):
    return (lambda image: compress(pbm(image))), (lambda data: from_pbm(decompress(data)))


def codecs() -> dict:
    """The classical benchmark's image codecs (one implementation of each), plus PBM streams."""
    import zstandard

    from classical import _jbig_codec, _pil_codec, _png_tool_codec
    out = {
        "JBIG (jbigkit pbmtojbg)": _jbig_codec()[0],
        "TIFF CCITT G4 (Pillow)": _pil_codec("TIFF", compression="group4"),
        "PNG (optipng -o7)": _png_tool_codec(["optipng", "-quiet", "-o7", "{src}", "-out", "{dst}"], "optipng")[0],
        "WebP lossless (Pillow, method 6)": _pil_codec("WEBP", lossless=True, method=6),
        "gzip -9 (PBM)": stream_codec(lambda d: gzip.compress(d, 9, mtime=0), gzip.decompress),
        "zstd -19 (PBM)": stream_codec(zstandard.ZstdCompressor(level=19).compress,
                                       zstandard.ZstdDecompressor().decompress),
    }
    return {name: pair for name, pair in out.items() if pair is not None}


def measure(encode, decode, images) -> dict:
    total, enc_s, dec_s = 0, 0.0, 0.0
    for image in images:
        tic = time.perf_counter()
        data = encode(image)
        enc_s += time.perf_counter() - tic
        tic = time.perf_counter()
        back = decode(data)
        dec_s += time.perf_counter() - tic
        if not np.array_equal(back, image):
            raise AssertionError("a codec did not round-trip")
        total += len(data)
    return {"bytes": total, "encode_s": enc_s, "decode_s": dec_s}


@click.command()
@click.option("--quick", is_flag=True, help="Half-size pages (CI).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(quick, out_dir):
    codec = Codec()
    sets = image_set(0, load_fixture().reshape(-1, 28, 28)[200:], scale=0.5 if quick else 1.0)
    ours_pair = (lambda image: codec.compress(image), lambda data: codec.decompress(data)[0])
    others = codecs()
    rows = {}
    for category, images in sets.items():
        row = {"images": len(images), "pixels": int(sum(i.size for i in images)),
               "sizes": sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images}),
               "ours": measure(*ours_pair, images),
               "methods": sorted({codec.read(codec.compress(i)).method for i in images})}
        row["others"] = {name: measure(*pair, images) for name, pair in others.items()}
        rows[category] = row
    page = sets["text"][1]
    tic = time.perf_counter()
    data = codec.compress(page)
    page_encode = time.perf_counter() - tic
    tic = time.perf_counter()
    assert np.array_equal(codec.decompress(data)[0], page)
    page_decode = time.perf_counter() - tic
    jbig_name = "JBIG (jbigkit pbmtojbg)"
    report = {"quick": quick, "machine": f"{platform.platform()} ({__import__('os').cpu_count()} CPUs)",
              "categories": rows, "page": {"size": list(page.shape), "encode_s": page_encode, "decode_s": page_decode,
                                           "bytes": len(data)}}
    if jbig_name in others:
        ratios = {c: r["ours"]["bytes"] / r["others"][jbig_name]["bytes"] for c, r in rows.items()}
        report["ratio_to_jbig"] = ratios
        report["all_ratio_to_jbig"] = (sum(r["ours"]["bytes"] for r in rows.values())
                                       / sum(r["others"][jbig_name]["bytes"] for r in rows.values()))
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "bilevel_quick" if quick else "bilevel"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(render(report))
    click.echo(render(report))


def render(report: dict) -> str:
    names = list(next(iter(report["categories"].values()))["others"])
    lines = [f"Synthetic bilevel images (`serecodec.synthetic`, seed 0{', half-size pages' if report['quick'] else ''}), "
             f"one file per image, every output decoded and compared; bytes per category "
             f"(ratio to JBIG in brackets). Measured on {report['machine']}.", "",
             "| category | images | sizes | serecodec (method) | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for category, row in report["categories"].items():
        jb = row["others"].get("JBIG (jbigkit pbmtojbg)", {}).get("bytes")
        cell = lambda b: f"{b}" + (f" ({b / jb:.2f})" if jb else "")  # noqa: E731
        lines.append(f"| {category} | {row['images']} | {', '.join(row['sizes'][:3])} | "
                     f"{cell(row['ours']['bytes'])} {'/'.join(row['methods'])} | "
                     + " | ".join(cell(row["others"][n]["bytes"]) for n in names) + " |")
    if "all_ratio_to_jbig" in report:
        lines += ["", f"* All categories together: ours **{report['all_ratio_to_jbig']:.3f} ×** JBIG's bytes; "
                  f"worst category {max(report['ratio_to_jbig'].values()):.3f} ×."]
    enc = sum(r["ours"]["encode_s"] for r in report["categories"].values())
    dec = sum(r["ours"]["decode_s"] for r in report["categories"].values())
    speed = []
    for n in names:
        e = sum(r["others"][n]["encode_s"] for r in report["categories"].values())
        d = sum(r["others"][n]["decode_s"] for r in report["categories"].values())
        speed.append(f"{n} {enc / e:.1f}× / {dec / d:.1f}×")
    lines += ["* Speed, the others' relative to ours in the same run (encode / decode, above 1: faster than ours): "
              + "; ".join(speed) + ".",
              f"* One {report['page']['size'][1]}×{report['page']['size'][0]} text page: encode "
              f"{report['page']['encode_s']:.2f} s, decode {report['page']['decode_s']:.2f} s on one core "
              f"({report['page']['bytes']} bytes)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
