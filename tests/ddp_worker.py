"""Run by tests/test_distributed.py under torchrun: trains a tiny model on the fixture digits."""
import json
import sys
from pathlib import Path

from serecodec.data import load_fixture
from serecodec.distributed import leave
from serecodec.trainer import TrainConfig, train
from tests.conftest import tiny_config

run_dir, epochs = Path(sys.argv[1]), int(sys.argv[2])
digits = load_fixture()
cfg = TrainConfig(epochs=epochs, batch_size=32, warmup_levels=0, valid_limit=44, threads=1,
                  learning_rate=3e-3, device="cpu")
record = train(tiny_config(), cfg, digits[:256], digits[256:], run_dir, log=lambda _: None)
print(json.dumps(record))
leave()
