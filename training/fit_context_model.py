#!/usr/bin/env python
"""Fit the static context model used for small archives (serecodec/models/context.npz).

Counts come from the 60,000 MNIST training digits, each binarized ``--samples`` times
(the same stochastic binarization the VAE is trained with), so the table never sees a test
image. Deterministic: the same MNIST files give the same table.

    python training/fit_context_model.py
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from serecodec.context_model import DEFAULT_CONTEXT_MODEL, ContextModel, fit_table
from serecodec.data import fixed_test_set, load_mnist


@click.command()
@click.option("--samples", type=int, default=2, show_default=True, help="Binarizations of each training digit.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--data-dir", default=None)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONTEXT_MODEL, show_default=True)
def main(samples, seed, data_dir, out):
    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(seed)
    train = np.concatenate([(rng.random(mnist.train.shape) < mnist.train).astype(np.uint8) for _ in range(samples)])
    model = ContextModel(fit_table(train.reshape(-1, 28, 28)))
    model.save(out, meta=f"MNIST train, {samples} binarizations, seed {seed}")
    test = fixed_test_set(mnist).reshape(-1, 28, 28)
    click.echo(f"wrote {out} ({out.stat().st_size} bytes); fixed test set: "
               f"{model.expected_bits(test) / test.size:.4f} bits/dim ideal")


if __name__ == "__main__":
    main()
