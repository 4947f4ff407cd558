#!/usr/bin/env python
"""Our coded rate against classical lossless codecs, on the same binarized MNIST pixels.

Each classical codec is measured two ways, in this run, and every output is decoded again and
compared with the input:
  * per image: one file per 28x28 digit (container headers counted; for codecs with a raw mode
    also without the container);
  * one stream: the packed bits of all digits in one stream (byte codecs), or all digits tiled
    into one image (image codecs).
Codecs that could not be run are listed with the reason, never dropped.
Writes results/classical.json and results/classical.md.

    python benchmarks/classical.py            # all 10,000 test images
    python benchmarks/classical.py --quick    # the 300 committed fixture digits

Needs `pip install -e '.[bench]'` (zstandard, brotli) and Debian's jbigkit-bin, optipng, zopfli
(and dataset-fashion-mnist for --dataset fashion); a codec whose tool is absent is listed as not
measured, with the reason.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import click
import numpy as np
from PIL import Image

from serecodec.codec import Codec
from benchdata import test_images
from serecodec.data import binarize_fixed, read_idx

PIXELS = 784
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


# ---- byte-stream codecs on packed bits: name -> (encode, decode, raw encode or None) ------------
def _deflate_raw(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return packer.compress(data) + packer.flush()


def _byte_codecs() -> tuple[dict, dict]:
    codecs = {
        "gzip -9": (lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress, _deflate_raw),
        "bzip2 -9": (lambda b: bz2.compress(b, 9), bz2.decompress, None),
        "xz -9e": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress,
                   lambda b: lzma.compress(b, format=lzma.FORMAT_RAW,
                                           filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])),
    }
    missing = {}
    try:
        import zstandard

        def zstd_raw(b: bytes) -> bytes:
            params = zstandard.ZstdCompressionParameters.from_level(22, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                                                                    write_checksum=0, write_content_size=0,
                                                                    write_dict_id=0)
            return zstandard.ZstdCompressor(compression_params=params).compress(b)

        codecs["zstd --ultra -22"] = (zstandard.ZstdCompressor(level=22).compress,
                                      zstandard.ZstdDecompressor().decompress, zstd_raw)
    except ImportError as exc:
        missing["zstd --ultra -22"] = f"python package zstandard not installed ({exc})"
    try:
        import brotli

        codecs["brotli -q 11"] = (lambda b: brotli.compress(b, quality=11), brotli.decompress, None)
    except ImportError as exc:
        missing["brotli -q 11"] = f"python package brotli not installed ({exc})"
    return codecs, missing


# ---- image codecs: name -> (encode(image) -> bytes, decode(bytes) -> image) --------------------
def _pil_codec(fmt: str, **options):
    def encode(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        pil = Image.fromarray(image.astype(bool))
        if fmt == "WEBP":
            pil = pil.convert("L")
        pil.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    def decode(blob: bytes) -> np.ndarray:
        return (np.array(Image.open(io.BytesIO(blob)).convert("L")) > 127).astype(np.uint8)

    return encode, decode


def _jbig_codec():
    enc, dec = shutil.which("pbmtojbg"), shutil.which("jbgtopbm")
    if not (enc and dec):
        return None, "jbigkit not installed (Debian package jbigkit-bin: pbmtojbg, jbgtopbm)"

    def encode(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray((1 - image).astype(bool)).save(buffer, format="PPM")  # PBM: 1 = black ink
        return subprocess.run([enc], input=buffer.getvalue(), capture_output=True, check=True).stdout

    def decode(blob: bytes) -> np.ndarray:
        pbm = subprocess.run([dec], input=blob, capture_output=True, check=True).stdout
        return 1 - (np.array(Image.open(io.BytesIO(pbm)).convert("L")) > 127).astype(np.uint8)

    return (encode, decode), None


def _png_tool_codec(argv: list, tool: str):
    """A PNG optimizer run on Pillow's PNG; decoded back with Pillow."""
    if not shutil.which(tool):
        return None, f"{tool} not installed (Debian package {'zopfli' if tool == 'zopflipng' else tool})"
    encode_png, decode = _pil_codec("PNG", optimize=True)

    def encode(image: np.ndarray) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.png", Path(tmp) / "out.png"
            src.write_bytes(encode_png(image))
            subprocess.run([a.format(src=src, dst=dst) for a in argv], capture_output=True, check=True)
            return dst.read_bytes()

    return (encode, decode), None


def _image_codecs() -> tuple[dict, dict]:
    codecs = {
        "PNG (Pillow, optimize)": _pil_codec("PNG", optimize=True),
        "WebP lossless (Pillow, method 6)": _pil_codec("WEBP", lossless=True, quality=100, method=6),
        "TIFF CCITT G4 (Pillow)": _pil_codec("TIFF", compression="group4"),
    }
    missing = {}
    jbig, why = _jbig_codec()
    if jbig:
        codecs["JBIG (jbigkit pbmtojbg)"] = jbig
    else:
        missing["JBIG (jbigkit pbmtojbg)"] = why
    for name, argv, tool in (("optipng -o7", ["optipng", "-quiet", "-o7", "-out", "{dst}", "{src}"], "optipng"),
                             ("zopflipng", ["zopflipng", "-y", "{src}", "{dst}"], "zopflipng")):
        made, why = _png_tool_codec(argv, tool)
        if made:
            codecs[name] = made
        else:
            missing[name] = why
    missing["JBIG2 generic region"] = ("no encoder installable: Debian 12 ships only the decoder jbig2dec, "
                                       "jbig2enc is not packaged")
    return codecs, missing


def tile(images: np.ndarray) -> np.ndarray:
    """All digits in one image, row-major on a near-square grid (blank padding)."""
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * cols, 28, 28), np.uint8)
    grid[:n] = images
    return grid.reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)


def bpd(total_bytes: int, count: int) -> float:
    return 8 * total_bytes / (count * PIXELS)


@click.command()
@click.option("--limit", type=int, default=None, help="Test images (default: all 10,000).")
@click.option("--per-image-limit", type=int, default=2000, show_default=True,
              help="Images coded as separate files by the slow per-file codecs (xz -9e sets up a 674 MB "
                   "dictionary per file; jbigkit runs one process per image).")
@click.option("--quick", is_flag=True, help="The 300 fixture digits, no download.")
@click.option("--dataset", type=click.Choice(["mnist", "fashion"]), default="mnist", show_default=True,
              help="fashion: Fashion-MNIST test images (Debian dataset-fashion-mnist), out of the model's domain.")
@click.option("--data-dir", default=None)
@click.option("--model", default=None, metavar="NAME|PATH", help="Our coding model (default: the shipped digit model).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
def main(limit, per_image_limit, quick, dataset, data_dir, model, out_dir):
    if dataset == "fashion":
        path = Path(data_dir or FASHION_DIR) / "t10k-images-idx3-ubyte.gz"
        if not path.is_file():
            raise SystemExit(f"classical.py: {path}: no Fashion-MNIST test images (apt-get install dataset-fashion-mnist, "
                             f"or --data-dir DIR)")
        grey = read_idx(path).reshape(-1, PIXELS) / 255.0
        images = binarize_fixed(grey)[:limit].reshape(-1, 28, 28)
        source = ("Fashion-MNIST test set, binarized with default_rng(0) "
                  + (f"(coding model: {model})" if model else "(out of domain: the model saw only digits)"))
    else:
        images, source = test_images(quick, limit, data_dir)
        images = images.reshape(-1, 28, 28)
    n = len(images)
    rows = []
    codec = Codec(model)
    ours_stream = _stream("serecodec", lambda: codec.compress(images, method="bits-back"), codec.decompress,
                          images, n)
    rows.append(ours_stream)
    auto = codec.compress(images)              # what `serecodec compress` writes: the smallest method
    auto_row = {"bpd": bpd(len(auto), n), "method": codec.read(auto).method}
    assert np.array_equal(codec.decompress(auto), images)
    # one archive per image, as a user compressing single files gets (--method auto picks the smaller
    # of bits-back and deflate), and the latency of one image on its own
    subset = images[:per_image_limit]
    rows.append(_per_image("serecodec", lambda im: codec.compress(im[None]),
                           lambda blob: codec.decompress(blob)[0], subset))

    # the static context model alone (our small-archive method; trained on MNIST, no VAE)
    name = "static context model (serecodec --method context)"
    rows.append(_per_image(name, lambda im: codec.compress(im[None], method="context"),
                           lambda blob: codec.decompress(blob)[0], subset))
    rows.append(_stream(name, lambda: codec.compress(images, method="context"), codec.decompress, images, n))

    byte_codecs, missing = _byte_codecs()
    packed = [np.packbits(im).tobytes() for im in images]
    for name, (enc, dec, raw) in byte_codecs.items():
        few = packed[:per_image_limit] if name.startswith("xz") else packed
        row = _per_image(name, enc, dec, few, compare=lambda a, b: a == b)
        if raw is not None:
            row["bpd_without_container"] = bpd(sum(len(raw(p)) for p in few), len(few))
        rows.append(row)
        stream = b"".join(packed)
        rows.append(_stream(name, lambda: enc(stream), dec, stream, n, compare=lambda a, b: a == b))

    image_codecs, missing_images = _image_codecs()
    missing.update(missing_images)
    big = tile(images)
    for name, (enc, dec) in image_codecs.items():
        slow = "jbigkit" in name or "optipng" in name or "zopfli" in name
        rows.append(_per_image(name, enc, dec, images[:per_image_limit] if slow else images))
        rows.append(_stream(name, lambda: enc(big), dec, big, n))

    for row in rows:   # speed relative to ours, same mode, same run
        mine = next(r for r in rows if r["codec"] == "serecodec" and r["mode"] == row["mode"])
        row["encode_speed_vs_ours"] = row["encode_images_per_s"] / mine["encode_images_per_s"]
        row["decode_speed_vs_ours"] = row["decode_images_per_s"] / mine["decode_images_per_s"]
    classical = [r for r in rows if not r["codec"].startswith(("serecodec", "static context"))]
    best_stream = min((r for r in classical if r["mode"] == "stream"), key=lambda r: r["bpd"])
    best_file = min((r for r in classical if r["mode"] == "per image"), key=lambda r: r["bpd"])
    ours_file = rows[1]
    report = {"benchmark": "classical", "data": source, "images": n,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or "unknown",
                          "cpus": os.cpu_count()},
              "rows": rows, "missing": missing, "ours_auto": auto_row,
              "best_classical_stream": best_stream["codec"],
              "ours_over_best_classical": ours_stream["bpd"] / best_stream["bpd"],
              "best_classical_per_image": best_file["codec"],
              "ours_per_image_over_best_classical_per_image": ours_file["bpd"] / best_file["bpd"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ("_fashion" if dataset == "fashion" else "") + (f"_{model}" if model else "") + ("_quick" if quick else "")
    (out_dir / f"classical{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (out_dir / f"classical{suffix}.md").write_text(text)
    click.echo(text)


def _stream(name, encode, decode, original, count, compare=np.array_equal) -> dict:
    """All images in one file: encode once, decode and check; bits/dim and images/s both ways."""
    tic = time.perf_counter()
    blob = encode()
    enc_s = time.perf_counter() - tic
    tic = time.perf_counter()
    back = decode(blob)
    dec_s = time.perf_counter() - tic
    assert compare(back, original), f"{name}: round trip failed"
    return {"codec": name, "mode": "stream", "images": count, "bpd": bpd(len(blob), count),
            "encode_images_per_s": count / enc_s, "decode_images_per_s": count / dec_s}


def _per_image(name, encode, decode, items, compare=np.array_equal) -> dict:
    """One file per image: bits/dim with each file's container, images/s and median latency."""
    blobs, enc_ms, dec_ms = [], [], []
    for item in items:
        tic = time.perf_counter()
        blob = encode(item)
        enc_ms.append(1e3 * (time.perf_counter() - tic))
        tic = time.perf_counter()
        back = decode(blob)
        dec_ms.append(1e3 * (time.perf_counter() - tic))
        assert compare(back, item), f"{name}: round trip failed"
        blobs.append(blob)
    m = len(items)
    return {"codec": name, "mode": "per image", "images": m, "bpd": bpd(sum(map(len, blobs)), m),
            "encode_images_per_s": 1e3 * m / sum(enc_ms), "decode_images_per_s": 1e3 * m / sum(dec_ms),
            "encode_ms_p50": float(np.median(enc_ms)), "decode_ms_p50": float(np.median(dec_ms))}


def markdown(report: dict) -> str:
    rows, n = report["rows"], report["images"]
    stream = {r["codec"]: r for r in rows if r["mode"] == "stream"}
    files = {r["codec"]: r for r in rows if r["mode"] == "per image"}
    ours_s, ours_f = stream["serecodec"], files["serecodec"]
    m = report["machine"]
    lines = [
        f"{report['data']}, {n} images; every output decoded and compared with the input. Measured in one run "
        f"on {m['platform']} ({m['cpus']} CPUs), our coder on one BLAS thread.",
        "",
        f"* Rate: our archive (all headers and initial bits counted) **{ours_s['bpd']:.4f}** bits/dim = "
        f"**{report['ours_over_best_classical']:.3f} ×** the best classical stream, "
        f"{report['best_classical_stream']} ({stream[report['best_classical_stream']]['bpd']:.4f}). "
        f"`compress --method auto` (the default) writes a {report['ours_auto']['method']} archive of "
        f"{report['ours_auto']['bpd']:.4f} bits/dim here.",
        f"* One file per image: ours (`--method auto`) **{ours_f['bpd']:.4f}** bits/dim = "
        f"**{report['ours_per_image_over_best_classical_per_image']:.3f} ×** the best classical per-image files, "
        f"{report['best_classical_per_image']} ({files[report['best_classical_per_image']]['bpd']:.4f}).",
        "* Speed columns: the codec's images/s divided by ours in the same mode (above 1: faster than ours); "
        f"ours: stream {ours_s['encode_images_per_s']:.0f} / {ours_s['decode_images_per_s']:.0f} images/s "
        f"encode / decode, one image alone {ours_f['encode_ms_p50']:.2f} / {ours_f['decode_ms_p50']:.2f} ms.",
        "",
        "| codec | stream bits/dim | stream encode ×ours | stream decode ×ours | per-image files bits/dim "
        "| without container | per image encode ms | per image decode ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in files.items():
        s = stream[name]
        raw = f"{f['bpd_without_container']:.4f}" if "bpd_without_container" in f else "–"
        note = f" ({f['images']} images)" if f["images"] != n else ""
        lines.append(f"| {name} | {s['bpd']:.4f} | {s['encode_speed_vs_ours']:.2f} | {s['decode_speed_vs_ours']:.2f} "
                     f"| {f['bpd']:.4f}{note} | {raw} | {f['encode_ms_p50']:.3f} | {f['decode_ms_p50']:.3f} |")
    if report["missing"]:
        lines += ["", "Not measured:", ""] + [f"* {k}: {v}" for k, v in report["missing"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
