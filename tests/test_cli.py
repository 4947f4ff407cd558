import json

import numpy as np
import pytest
from click.testing import CliRunner

from serecodec.checkpoint import DEFAULT_MODEL_PATH
from serecodec.cli import main
from serecodec.trainer import TrainConfig, train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, digits):
    run = tmp_path_factory.mktemp("run")
    train(tiny_config(), TrainConfig(epochs=1, batch_size=32, warmup_levels=0, threads=1, valid_limit=50),
          digits[:128], digits[128:], run, log=lambda _: None)
    return run / "checkpoint.pt"


@pytest.fixture()
def digits_npy(tmp_path, digits):
    path = tmp_path / "digits.npy"
    np.save(path, digits[:20].reshape(20, 28, 28))
    return path


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_bpd_json_on_npy(tiny_weights, digits_npy):
    result = run_cli("bpd", "--model", tiny_weights, "--data", digits_npy, "--iw-samples", 8, "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 20 and report["iw_images"] == 20 and report["iw_samples"] == 8
    assert report["neg_elbo_bpd"] == pytest.approx(report["neg_elbo_nats"] / (784 * np.log(2)))
    assert len(report["kl_per_layer_nats"]) == 3
    assert report["neg_elbo_nats"] > 0


def test_shipped_model_beats_independent_pixels(digits, tmp_path):
    """The default model must code digits far below a per-pixel Bernoulli model fitted to them."""
    assert DEFAULT_MODEL_PATH.exists()
    path = tmp_path / "d.npy"
    np.save(path, digits[:100])
    report = json.loads(run_cli("bpd", "--data", path, "--iw-samples", 0, "--json", "-q").output)
    p = digits.mean(0).clip(1e-6, 1 - 1e-6)
    independent = -(digits[:100] * np.log(p) + (1 - digits[:100]) * np.log(1 - p)).sum(1).mean()
    assert report["neg_elbo_nats"] < 0.6 * independent, (report["neg_elbo_nats"], independent)


@pytest.mark.parametrize("content,message", [
    (np.full((3, 28, 28), 0.5), "grey levels present"),
    (np.zeros((3, 32, 32)), "expected shape"),
    (np.zeros((0, 28, 28)), "no images"),
])
def test_bpd_rejects_bad_arrays(tmp_path, tiny_weights, content, message):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    result = run_cli("bpd", "--model", tiny_weights, "--data", path, "-q")
    assert result.exit_code == 1
    assert message in result.output and str(path) in result.output
    assert "Traceback" not in result.output


def test_bpd_rejects_non_npy_and_missing_model(tmp_path, digits_npy):
    text = tmp_path / "notes.npy"
    text.write_text("hello")
    result = run_cli("bpd", "--data", text, "-q")
    assert result.exit_code == 1 and "not a readable .npy" in result.output
    missing = tmp_path / "nope.pt"
    result = run_cli("bpd", "--model", missing, "--data", digits_npy, "-q")
    assert result.exit_code == 1 and "no such model file" in result.output
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    result = run_cli("bpd", "--model", garbage, "--data", digits_npy, "-q")
    assert result.exit_code == 1 and str(garbage) in result.output


def test_export_never_overwrites_without_force(tmp_path, tiny_weights):
    out = tmp_path / "w.pt"
    out.write_bytes(b"precious")
    result = run_cli("export", tiny_weights, "-o", out)
    assert result.exit_code == 1 and "already exists" in result.output
    assert out.read_bytes() == b"precious"
    assert run_cli("export", tiny_weights, "-o", out, "-f").exit_code == 0
    assert out.read_bytes() != b"precious"
