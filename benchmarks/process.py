#!/usr/bin/env python
"""The whole command-line process against the library, in one run: start-up time, images/s of
`serecodec compress` / `decompress --npy` vs `Codec().compress` / `decompress` on the same
images, every core (the default: one worker process a core) against `--threads 1`, a
1728x2376 page against JBIG's whole process, peak resident memory of each process, and the
archive with default flags vs --no-names. Speeds move with the machine and its load; the
ratios, measured in one run, move less.

    python benchmarks/process.py                 # 10,000 test digits; memory also at 100,000
    python benchmarks/process.py --quick         # the 300 fixture digits (CI)
"""
from __future__ import annotations

import json
import os
import shutil
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


# A small process that runs the command and reports its wall time and peak memory: Linux keeps a
# forked process's peak RSS across exec, so a command started straight from this (large) process
# would report this one's peak as its own.
_LAUNCHER = """
import json, os, subprocess, sys, time
tic = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - tic
sys.stderr.buffer.write(err)
print(json.dumps({"seconds": wall, "peak_mb": usage.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status)}))
"""


def timed_process(args: list, env: dict = None) -> dict:
    """Run ``serecodec ARGS`` in a fresh process (``env``: added to the environment); wall seconds
    and peak RSS (MB, from wait4 in a small launcher process)."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "serecodec.cli", *map(str, args)],
                          capture_output=True, env={**os.environ, **(env or {})})
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"serecodec {' '.join(map(str, args))}: launcher failed: {done.stderr.decode()}")
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    if result.pop("code") != 0:
        raise RuntimeError(f"serecodec {' '.join(map(str, args))} failed: {done.stderr.decode()}")
    return result


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
        one_enc = timed_process(["compress", tmp / "x.npy", "-o", tmp / "x1.sere", "-q", "--threads", "1"])
        one_dec = timed_process(["decompress", tmp / "x1.sere", "--npy", "-o", tmp / "y1.npy", "-q", "--threads", "1"])
        assert np.array_equal(np.load(tmp / "y1.npy"), squares)
        report["cores"], report["cpu"] = os.cpu_count(), cpu_name()
        report["all_cores_over_one"] = {"encode": one_enc["seconds"] / enc["seconds"],
                                        "decode": one_dec["seconds"] / dec["seconds"],
                                        "archives_identical": (tmp / "x.sere").read_bytes() == (tmp / "x1.sere").read_bytes()}
        report["page"] = page_against_jbig(tmp, runs=1 if quick else 3)
        timed_process(["compress", tmp / "x.npy", "-o", tmp / "n.sere", "--no-names", "-q"])
        report.update({
            "library": {"encode_images_per_s": len(squares) / lib_encode, "decode_images_per_s": len(squares) / lib_decode},
            "process": {"encode_images_per_s": len(squares) / enc["seconds"],
                        "decode_images_per_s": len(squares) / dec["seconds"],
                        "encode_peak_mb": enc["peak_mb"], "decode_peak_mb": dec["peak_mb"]},
            "default_bytes": (tmp / "x.sere").stat().st_size, "no_names_bytes": (tmp / "n.sere").stat().st_size,
        })
        report["gemm_limit"] = gemm_limit(codec.model)
        report["decode_over_gemm_limit"] = report["library"]["decode_images_per_s"] / report["gemm_limit"]["images_per_s"]
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


def gemm_limit(model) -> dict:
    """What the networks' float64 products alone allow on one core: the multiply-adds of one pass
    through every network (a decode runs each once per image; a verified encode twice) against
    this machine's float64 GEMM rate on one thread (a 128x512 by 512x512 product, best of 20)."""
    from threadpoolctl import threadpool_limits
    macs = sum(layer.weight.size for net in model.nets.values() for layer in net.layers)
    a, b = np.random.default_rng(0).random((128, 512)), np.random.default_rng(1).random((512, 512))
    with threadpool_limits(limits=1, user_api="blas"):
        best = np.inf
        for _ in range(20):
            tic = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - tic)
    gflops = 2 * 128 * 512 * 512 / best / 1e9
    return {"macs_per_image": int(macs), "gflops_one_core": gflops, "images_per_s": gflops * 1e9 / (2 * macs)}


def cpu_name() -> str:
    """The processor's model name (Linux), so a table says which machine its speeds are from."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown processor"


def page_against_jbig(tmp: Path, runs: int = 3) -> dict:
    """A 1728x2376 page (our scanned-page generator: text, blur, speckle) through the whole
    ``serecodec`` process and through jbigkit's ``pbmtojbg`` / ``jbgtopbm`` when installed:
    median seconds of ``runs`` warm runs each way (the page-state cache filled), both outputs
    decoded and compared; the first run of a fresh install (empty numba and page-state caches: the
    page model's own kernel is compiled by pip);
    and in the library, ``Codec()`` (auto's trials and the verifying decode included) and the page
    model's kernel alone."""
    from PIL import Image

    from serecodec.methods.models import Models
    from serecodec.page_model import find_period
    from serecodec.synthetic import scanned_page
    page = scanned_page(np.random.default_rng(1), size=(1728, 2376))
    source = tmp / "page.pbm"
    Image.fromarray(((1 - page) * 255).astype(np.uint8)).convert("1").save(source)
    ours = {"encode": [], "decode": []}
    warm = {"SERECODEC_STATE_CACHE": str(tmp / "page-states")}
    timed_process(["compress", source, "-o", tmp / "page.sere", "-q", "-f"], warm)     # fills the state cache
    for _ in range(runs):
        ours["encode"].append(timed_process(["compress", source, "-o", tmp / "page.sere", "-q", "-f"], warm)["seconds"])
        ours["decode"].append(timed_process(["decompress", tmp / "page.sere", "-o", tmp / "back.pbm", "-q", "-f"],
                                            warm)["seconds"])
    assert (tmp / "back.pbm").read_bytes() == source.read_bytes()
    cold = {"NUMBA_CACHE_DIR": str(tmp / "empty-numba-cache"), "SERECODEC_STATE_CACHE": str(tmp / "empty-page-states")}
    first = {"encode": timed_process(["compress", source, "-o", tmp / "first.sere", "-q", "-f"], cold)["seconds"],
             "decode": timed_process(["decompress", tmp / "first.sere", "-o", tmp / "first.pbm", "-q", "-f"],
                                     cold)["seconds"]}
    assert (tmp / "first.pbm").read_bytes() == source.read_bytes()
    codec = Codec()
    library = {"encode": [], "decode": []}
    for _ in range(runs):
        tic = time.perf_counter()
        data = codec.compress([page])
        library["encode"].append(time.perf_counter() - tic)
        tic = time.perf_counter()
        assert np.array_equal(codec.decompress(data)[0], page)
        library["decode"].append(time.perf_counter() - tic)
    model, at = Models().pages[0], find_period(page)
    kernel = {"encode": [], "decode": []}
    for _ in range(runs):
        tic = time.perf_counter()
        payload, _ = model.encode([page], at)
        kernel["encode"].append(time.perf_counter() - tic)
        tic = time.perf_counter()
        assert np.array_equal(model.decode(payload, [page.shape], at), page.reshape(-1))
        kernel["decode"].append(time.perf_counter() - tic)
    result = {"shape": list(page.shape), "runs": runs, "serecodec_bytes": (tmp / "page.sere").stat().st_size,
              "serecodec_encode_s": float(np.median(ours["encode"])), "serecodec_decode_s": float(np.median(ours["decode"])),
              "first_run_encode_s": first["encode"], "first_run_decode_s": first["decode"],
              "library_encode_s": float(np.median(library["encode"])),
              "library_decode_s": float(np.median(library["decode"])),
              "kernel_encode_s": float(np.median(kernel["encode"])), "kernel_decode_s": float(np.median(kernel["decode"]))}
    if shutil.which("pbmtojbg") and shutil.which("jbgtopbm"):
        theirs = {"encode": [], "decode": []}
        for _ in range(runs):
            tic = time.perf_counter()
            subprocess.run(["pbmtojbg", "-q", source, tmp / "page.jbg"], check=True)
            theirs["encode"].append(time.perf_counter() - tic)
            tic = time.perf_counter()
            subprocess.run(["jbgtopbm", tmp / "page.jbg", tmp / "jback.pbm"], check=True)
            theirs["decode"].append(time.perf_counter() - tic)
        assert np.array_equal(np.asarray(Image.open(tmp / "jback.pbm")), np.asarray(Image.open(source)))
        result.update({"jbig_bytes": (tmp / "page.jbg").stat().st_size, "jbig_encode_s": float(np.median(theirs["encode"])),
                       "jbig_decode_s": float(np.median(theirs["decode"]))})
    return result


def render(r: dict) -> str:
    p, lib, m, ratio, page = r["process"], r["library"], r["memory"], r["all_cores_over_one"], r["page"]
    jbig = (f"; JBIG (jbigkit's whole process) {page['jbig_bytes']:,} bytes in {page['jbig_encode_s']:.2f} / "
            f"{page['jbig_decode_s']:.2f} s: we take {page['serecodec_encode_s'] / page['jbig_encode_s']:.0f}x / "
            f"{page['serecodec_decode_s'] / page['jbig_decode_s']:.0f}x its time for "
            f"{page['serecodec_bytes'] / page['jbig_bytes']:.2f}x its bytes") if "jbig_bytes" in page else \
        " (jbigkit not installed: no JBIG row)"
    return "\n".join([
        f"{r['source']}, {r['images']} images, measured in one run (`python benchmarks/process.py`) on "
        f"{r['cores']} cores ({r['cpu']}; speeds move with the machine, ratios less).", "",
        "| | encode images/s | decode images/s |", "|---|---|---|",
        f"| library (`Codec().compress` / `decompress`) | {lib['encode_images_per_s']:.0f} | {lib['decode_images_per_s']:.0f} |",
        f"| whole process (`serecodec compress x.npy` / `decompress --npy`) | {p['encode_images_per_s']:.0f} | "
        f"{p['decode_images_per_s']:.0f} |",
        f"| process / library | {r['process_over_library']['encode']:.2f} | {r['process_over_library']['decode']:.2f} |",
        f"| all {r['cores']} cores (default) over `--threads 1`, whole process | {ratio['encode']:.2f}x | "
        f"{ratio['decode']:.2f}x |",
        "",
        f"* archives identical for every core and `--threads 1`: {ratio['archives_identical']}.",
        f"* the float64 limit: one pass through every network is {r['gemm_limit']['macs_per_image'] / 1e6:.1f} M "
        f"multiply-adds an image; at this machine's {r['gemm_limit']['gflops_one_core']:.1f} GFLOP/s on one core "
        f"(float64 GEMM) the products alone allow {r['gemm_limit']['images_per_s']:.0f} images/s a core each way; the "
        f"library's one-worker decode runs at {100 * r['decode_over_gemm_limit']:.0f}% of that.",
        f"* a {page['shape'][1]}x{page['shape'][0]} page (generated scan), whole process, median of {page['runs']} runs: "
        f"{page['serecodec_bytes']:,} bytes, compress {page['serecodec_encode_s']:.2f} s, decompress "
        f"{page['serecodec_decode_s']:.2f} s{jbig}; the first run of a fresh install (no numba or page-state cache) "
        f"{page['first_run_encode_s']:.2f} / {page['first_run_decode_s']:.2f} s; in the library (`Codec()`, "
        f"one worker: auto's trials and the verifying decode, in a thread beside it, included) "
        f"{page['library_encode_s']:.2f} / {page['library_decode_s']:.2f} s, the page model's kernel alone "
        f"{page['kernel_encode_s']:.2f} / {page['kernel_decode_s']:.2f} s.",
        f"* start-up (`serecodec --help`, median of 5 fresh processes): {r['startup_seconds_median']:.2f} s.",
        f"* default flags (the .npy's name, dtype and shape kept) {r['default_bytes']} bytes vs `--no-names` "
        f"{r['no_names_bytes']} bytes "
        f"({100 * (r['default_bytes'] / r['no_names_bytes'] - 1):+.2f}%).",
        f"* {m['images']:,} images ({m['npy_mb']:.0f} MB .npy): compress peaks at {m['compress_peak_mb']:.0f} MB resident "
        f"({m['compress_seconds']:.0f} s), decompress --npy at {m['decompress_peak_mb']:.0f} MB ({m['decompress_seconds']:.0f} s).",
    ]) + "\n"


if __name__ == "__main__":
    main()
