#!/usr/bin/env python
"""Train a SeRe-VAE (or an ablation) from a JSON config; resumes from RUN_DIR/checkpoint.pt.

    python training/train.py --config training/configs/sere_cpu.json --run-dir runs/sere
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from serecodec.data import DataError, fixed_valid_set, load_mnist
from serecodec.distributed import leave
from serecodec.trainer import load_config_file, train


@click.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--run-dir", type=click.Path(file_okay=False), required=True, help="Checkpoint and log.jsonl go here.")
@click.option("--data-dir", type=click.Path(), default=None, help="MNIST cache or IDX directory.")
@click.option("--fresh", is_flag=True, help="Ignore an existing checkpoint instead of resuming.")
@click.option("--epochs", type=int, default=None, help="Override the config's epoch count.")
@click.option("--lr-decay-epochs", type=float, default=None, help="Override the cosine cool-down length.")
@click.option("--threads", type=int, default=None, help="Override torch's thread count.")
@click.option("--max-minutes", type=float, default=None, help="Stop (resumably) after this wall time.")
def main(config_path, run_dir, data_dir, fresh, epochs, lr_decay_epochs, threads, max_minutes):
    model_cfg, cfg = load_config_file(Path(config_path))
    if epochs is not None:
        cfg.epochs = epochs
    if lr_decay_epochs is not None:
        cfg.lr_decay_epochs = lr_decay_epochs
    if threads is not None:
        cfg.threads = threads
    if max_minutes is not None:
        cfg.max_minutes = max_minutes
    try:
        mnist = load_mnist(data_dir)
    except DataError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    train(model_cfg, cfg, mnist.train, fixed_valid_set(mnist), Path(run_dir), resume=not fresh,
          log=lambda msg: click.echo(msg, err=True))
    leave()   # under torchrun: exit without the teardown that can abort (see distributed.leave)


if __name__ == "__main__":
    main()
