"""Every benchmark runs end to end in its --quick mode (the 300 committed digits, no download)
and writes results whose key claims hold; the full runs write the README's numbers."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_benchmark(name: str, out_dir: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", "--out-dir",
                           str(out_dir), *args], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    for name in ("codec", "online", "classical"):
        run_benchmark(name, out)
    run_benchmark("likelihood", out, "--models", "default", "--iw-samples", "20")
    return out


def load(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def test_codec_benchmark(results):
    report = load(results, "codec_quick")
    main = report["main"]
    assert main["bit_exact"] and main["images"] == 300
    assert 0.99 < main["net_over_coding_elbo"] < 1.02
    assert {row["max_batch"] for row in report["batch_sweep"]} == {16, 64, 256, 1024}
    assert all(row["bit_exact"] for row in report["bucket_sweep"] + report["batch_sweep"] + report["thread_sweep"])
    assert (results / "codec_quick.md").read_text().count("|") > 20


def test_online_benchmark(results):
    report = load(results, "online_quick")
    curve = report["curve_total_bpd"]
    assert len(curve) == 200 and curve[-1] < curve[9] < curve[0]        # the initial bits amortize
    assert report["single_image_auto_method"] == "context"
    assert report["single_image_auto_bpd"] < min(report["per_image_classical_bpd"].values())
    assert (results / "online_quick.png").stat().st_size > 10_000


def test_classical_benchmark(results):
    report = load(results, "classical_quick")
    codecs = {row["codec"] for row in report["rows"]}
    assert {"serecodec", "gzip -9", "bzip2 -9", "xz -9e", "PNG (Pillow, optimize)"} <= codecs
    for expected in ("zstd --ultra -22", "brotli -q 11", "JBIG (jbigkit pbmtojbg)"):
        assert expected in codecs or expected in " ".join(report["missing"]), expected   # never dropped silently
    assert report["ours_over_best_classical"] < 1.0
    ours = [r for r in report["rows"] if r["codec"] == "serecodec"]
    assert all(r["encode_speed_vs_ours"] == 1.0 for r in ours)


def test_likelihood_benchmark(results):
    result = load(results, "likelihood_quick_default")["result"]
    assert result["images"] == 300 and result["iw_samples"] == 20
    assert result["neg_iw_nats"] < result["neg_elbo_nats"] < 100


def test_training_speed_benchmark(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "training_speed.py"), "--quick", "--steps", "2",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "training_speed_quick.json").read_text())["rows"]
    assert [r["batch"] for r in rows] == [256, 256, 256, 512, 1024] and rows[0]["speed_vs_per_tensor_adam"] == 1.0
    assert all(r["seconds_per_step"] > 0 for r in rows)


@pytest.fixture(scope="module")
def new_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results_new")
    for name in ("bilevel", "process", "fuzz", "own_model"):
        run_benchmark(name, out)
    return out


def test_bilevel_benchmark(new_results):
    report = load(new_results, "bilevel_quick")
    assert set(report["categories"]) == {"text", "scan", "qr", "lineart", "dither", "digits"}
    for row in report["categories"].values():
        assert row["ours"]["bytes"] > 0 and "JBIG (jbigkit pbmtojbg)" in row["others"] or not report.get("ratio_to_jbig")
    if "all_ratio_to_jbig" in report:            # jbigkit installed: the bar
        assert report["all_ratio_to_jbig"] <= 0.92 and max(report["ratio_to_jbig"].values()) <= 1.0


def test_process_benchmark(new_results):
    report = load(new_results, "process_quick")
    assert report["startup_seconds_median"] < 1.0
    # the default keeps the .npy's name, dtype and shape (so decompress gives the same file back):
    # a few dozen bytes whatever the image count
    assert report["default_bytes"] <= report["no_names_bytes"] + 48
    assert report["memory"]["compress_peak_mb"] < 600 and report["memory"]["decompress_peak_mb"] < 600
    # every core (worker processes) and one give the same archive; the page round trip was compared
    assert report["all_cores_over_one"]["archives_identical"] and report["page"]["serecodec_bytes"] > 0
    # the page also timed as a fresh install's first run, through the library and through its kernel alone
    assert all(report["page"][f"{kind}_{way}_s"] > 0 for kind in ("first_run", "library", "kernel")
               for way in ("encode", "decode"))


def test_fuzz_benchmark(new_results):
    report = load(new_results, "fuzz_quick")
    assert report["failures"] == 0 and report["mutants"] == 2000
    assert set(report["cli"]) <= {"rejected", "intact"}


def test_own_model_benchmark(new_results):
    report = load(new_results, "own_model_quick")
    assert report["model"]["tile"] == [28, 28] and report["train_images"] == 2000
    assert all(v > 0 for v in report["bits_per_dim"].values())


def test_below_elbo_benchmark(tmp_path):
    run_benchmark("below_elbo", tmp_path)
    report = load(tmp_path, "below_elbo_quick")
    rows = {row["n"]: row for row in report["curve"]}
    for n in (5, 20, 50):                          # the default never loses to the context model alone
        assert rows[n]["default_bpd"] <= rows[n]["context_bpd"]
    assert all(r["warm_bits_back_bpd"] < r["initial_bits_bits_back_bpd"] for r in report["curve"])
    assert report["unordered_bpd"] < report["ordered_bpd"]


def test_particles_benchmark(tmp_path):
    run_benchmark("particles", tmp_path, "--no-whole")
    rows = load(tmp_path, "particles_quick")["rows"]
    assert [r["particles"] for r in rows] == [1, 2, 4] and all(r["bit_exact"] for r in rows)
    assert all(r["net_over_bound"] < 1.01 for r in rows)            # the coder pays its bound
    assert rows[-1]["iw_nats"] < rows[0]["iw_nats"]                 # the IW-K bound falls with K


def test_model_speed_benchmark(tmp_path):
    run_benchmark("model_speed", tmp_path)
    rows = load(tmp_path, "model_speed_quick")["rows"]
    assert [r["model"] for r in rows] == ["default", "pixel", "resnet"]
    assert all(r["decode_images_per_s"] > 0 and r["verified_encode_images_per_s"] > 0 for r in rows)
    assert all(0 < r["bits_per_dim"] < 1 for r in rows)            # every archive decoded and compared
