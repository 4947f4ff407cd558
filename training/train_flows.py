#!/usr/bin/env python
"""Train a SeRe-MAF or the MAF baseline (``serecodec.flow_model``) from a JSON config on grey
MNIST, an IDX directory (Fashion-MNIST) or CIFAR-10 python batches; resumes from RUN_DIR.

    python training/train_flows.py --config training/configs/sere_maf_cpu.json --run-dir runs/sere-maf
    python training/train_flows.py --config training/configs/maf_cpu.json --run-dir runs/maf
    python training/train_flows.py --config training/configs/sere_maf_cifar.json --cifar DIR --run-dir runs/cifar
    python training/train_flows.py --config training/configs/sere_maf_cpu_continue.json --init sere-maf --run-dir runs/more
    serecodec export runs/sere-maf/checkpoint.pt -o serecodec/models/sere-maf.pt
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from serecodec.data import DataError
from serecodec.errors import SerecodecError
from serecodec.flow_data import grey_levels, load_cifar
from serecodec.flow_model import FlowConfig
from serecodec.flow_training import FlowTrainConfig, train_flow


def load_config(path: Path) -> tuple:
    raw = json.loads(Path(path).read_text())
    return FlowConfig(**raw.get("model", {})), FlowTrainConfig(**raw.get("train", {}))


@click.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--run-dir", type=click.Path(file_okay=False), required=True)
@click.option("--data-dir", default=None, help="MNIST pickle or an IDX directory (e.g. /usr/share/fashion-mnist).")
@click.option("--cifar", default=None, help="A directory of CIFAR-10 python batches (data_batch_1..5, test_batch).")
@click.option("--max-minutes", type=float, default=None, help="Override the config's time budget.")
@click.option("--init", default=None, help="Start from these trained weights (a model name, weight file or "
              "checkpoint of the same config) with a fresh optimizer: a continuation, its budget added to theirs.")
def main(config_path, run_dir, data_dir, cifar, max_minutes, init):
    model_cfg, cfg = load_config(Path(config_path))
    if max_minutes is not None:
        cfg.max_minutes = max_minutes
    try:
        if cifar:
            train, _ = load_cifar(cifar)
            train, valid = train[:-5000], train[-5000:]
        else:
            train, valid, _ = grey_levels(data_dir)
    except DataError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if train.shape[1] != model_cfg.image_pixels:
        click.echo(f"error: the data has {train.shape[1]} values per image, the config {model_cfg.image_pixels}", err=True)
        sys.exit(2)
    try:
        train_flow(model_cfg, cfg, train, valid, Path(run_dir), log=lambda msg: click.echo(msg, err=True), init=init)
    except (ValueError, SerecodecError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
