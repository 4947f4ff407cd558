"""Training on your own images: a tiny folder of non-28 PNGs trains, exports, codes exactly;
models are found by hash among shipped and installed ones; a missing one is one line."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from serecodec.cli import main
from serecodec.codec import Codec
from serecodec.synthetic import line_art
from serecodec.trainer import TrainConfig, TrainingDiverged, train
from tests.conftest import tiny_config


def run(*args, env=None):
    return CliRunner(env=env).invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [line_art(rng, (36, 20)) for _ in range(24)]
    for i, image in enumerate(images):
        Image.fromarray(image == 0).save(folder / f"g{i:02d}.png")       # black ink on white paper
    result = run("train", folder, "-o", root / "m.pt", "--tile", "16x16", "--preset", "tiny", "--epochs", "2",
                 "--threads", "1", "-q")
    assert result.exit_code == 0, result.output
    return root, folder, images


def test_train_exports_a_model_that_codes_its_own_tiles_exactly(trained):
    root, folder, images = trained
    card = json.loads((root / "m.json").read_text())
    assert card["tile"] == [16, 16] and card["preset"] == "tiny" and card["valid_bits_per_dim"] > 0
    archive = root / "a.sere"
    assert run("compress", folder, "-o", archive, "--model", root / "m.pt", "--method", "bits-back", "-q").exit_code == 0
    header = Codec(str(root / "m.coding.npz")).read(archive.read_bytes())
    assert header.method == "bits-back" and header.shapes == [(20, 36)] * 24
    out = root / "out"
    assert run("decompress", archive, "-o", out, "--model", root / "m.pt", "-q").exit_code == 0
    for i, image in enumerate(images):
        back = np.array(Image.open(out / f"g{i:02d}.png").convert("L")) > 127
        assert np.array_equal(back, image == 0)


def test_models_are_found_by_hash_and_a_missing_one_is_named(trained, tmp_path):
    root, folder, _ = trained
    env = {"SERECODEC_MODELS": str(tmp_path / "models")}
    archive = tmp_path / "a.sere"
    assert run("compress", folder, "-o", archive, "--model", root / "m.pt", "--method", "bits-back", "-q").exit_code == 0
    digest = Codec(str(root / "m.coding.npz")).model.hash
    missing = run("decompress", archive, "-o", tmp_path / "o1", "-q", env=env)
    assert missing.exit_code == 1 and digest[:16] in missing.output and len(missing.output.strip().splitlines()) == 1
    assert not (tmp_path / "o1").exists()
    from serecodec import registry
    import os
    os.environ["SERECODEC_MODELS"] = env["SERECODEC_MODELS"]
    try:
        registry.install(root / "m.pt", "glyphs")
        listing = run("models", "--json", env=env)
        names = {card["name"]: card for card in json.loads(listing.output)}
        assert names["glyphs"]["hash"] == digest and names["glyphs"]["tile"] == [16, 16] and not names["glyphs"]["shipped"]
        assert names["default"]["shipped"]
        assert run("decompress", archive, "-o", tmp_path / "o2", "-q", env=env).exit_code == 0   # found by hash
        assert len(list((tmp_path / "o2").iterdir())) == 24
        assert run("compress", folder, "-o", tmp_path / "b.sere", "--model", "glyphs", "-q", env=env).exit_code == 0
    finally:
        del os.environ["SERECODEC_MODELS"]


def test_non_finite_losses_are_skipped_then_stop_training(digits, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=32, warmup_levels=0, threads=1, valid_limit=20, learning_rate=1e12,
                      max_bad_steps=3)
    with pytest.raises(TrainingDiverged, match="non-finite"):   # losses skipped, then the weights checked
        train(tiny_config(), cfg, digits[:128], digits[128:160], tmp_path, log=lambda _: None)
    if (tmp_path / "checkpoint.pt").exists():           # a saved state is never poisoned
        state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_time_limited_runs_cool_down_and_stop(digits, tmp_path):
    from serecodec.trainer import time_factor
    cfg = TrainConfig(max_minutes=10, time_cooldown=0.4)
    assert time_factor(0, cfg) == 1.0 and time_factor(6, cfg) == 1.0
    assert time_factor(8, cfg) < 1.0 and time_factor(10, cfg) == pytest.approx(0.02)
    short = TrainConfig(epochs=1000, batch_size=32, warmup_levels=0, threads=1, valid_limit=20, max_minutes=0.001,
                        time_cooldown=0.4)
    record = train(tiny_config(), short, digits[:64], digits[64:96], tmp_path, log=lambda _: None)
    assert record["epoch"] < 1000                 # the clock stopped it, not the epoch count
