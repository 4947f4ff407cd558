import json

import numpy as np
import torch

from serecodec.checkpoint import export_weights, load_checkpoint, load_model
from serecodec.trainer import TrainConfig, train, validate
from tests.conftest import tiny_config


def small_train_config(**overrides) -> TrainConfig:
    base = dict(epochs=2, batch_size=32, warmup_levels=2, warmup_unit=0.5, valid_limit=100, threads=1)
    base.update(overrides)
    return TrainConfig(**base)


def test_tiny_model_lowers_its_loss(digits, tmp_path):
    train_set, valid_set = digits[:250], digits[250:]
    cfg = small_train_config(epochs=40, learning_rate=3e-3, warmup_levels=0)   # 40 x 7 = 280 steps
    record = train(tiny_config(), cfg, train_set, valid_set, tmp_path, log=lambda _: None)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 40 and log[-1] == record and record["step"] == 280
    first, last = -log[0]["valid_elbo"], -log[-1]["valid_elbo"]
    assert last < first - 50, (first, last)                  # nats per image on held-out digits
    assert -log[-1]["train_elbo"] < -log[0]["train_elbo"]
    assert len(record["valid_kl_per_layer"]) == 3 and all(k >= 0 for k in record["valid_kl_per_layer"])


def test_log_records_warmup_beta(digits, tmp_path):
    cfg = small_train_config(epochs=3, warmup_levels=2, warmup_unit=1.0)   # levels: 1 epoch at 0, 2 at 0.1... then 1
    train(tiny_config(), cfg, digits[:64], digits[64:96], tmp_path, log=lambda _: None)
    betas = [json.loads(line)["beta"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert betas == [0.0, 0.1, 0.1] or np.allclose(betas, [0.0, 0.1, 0.1])


def test_resume_reaches_exactly_the_same_state(digits, tmp_path):
    data, valid = digits[:128], digits[128:160]
    train(tiny_config(), small_train_config(epochs=2), data, valid, tmp_path / "straight", log=lambda _: None)
    train(tiny_config(), small_train_config(epochs=1), data, valid, tmp_path / "resumed", log=lambda _: None)
    train(tiny_config(), small_train_config(epochs=2), data, valid, tmp_path / "resumed", log=lambda _: None)
    a, b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(state_a["exp_avg"], state_b["exp_avg"])


def test_exported_weights_are_compact_and_equivalent(digits, tmp_path):
    train(tiny_config(), small_train_config(epochs=1), digits[:64], digits[64:96], tmp_path, log=lambda _: None)
    out = export_weights(tmp_path / "checkpoint.pt", tmp_path / "weights.pt")
    assert out.stat().st_size < (tmp_path / "checkpoint.pt").stat().st_size / 2
    full, small = load_model(tmp_path / "checkpoint.pt"), load_model(out)
    x = torch.as_tensor(digits[:100]).float()
    a, b = validate(full, x)["elbo"], validate(small, x)["elbo"]
    assert abs(a - b) < 0.05 * abs(a)  # fp16 rounding of the weights only


def test_learning_rate_cools_down_in_the_last_epochs(digits, tmp_path):
    cfg = small_train_config(epochs=4, lr_decay_epochs=2, learning_rate=1e-3, warmup_levels=0)
    train(tiny_config(), cfg, digits[:64], digits[64:96], tmp_path, log=lambda _: None)
    rates = [json.loads(line)["learning_rate"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rates[:2] == [1e-3, 1e-3] and 1e-3 > rates[2] > rates[3] > 2e-5   # last step of each epoch
