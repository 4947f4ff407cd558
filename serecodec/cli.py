"""Command-line interface: ``serecodec bpd`` (rates of a model) and ``serecodec export``."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from .checkpoint import ModelFileError, export_weights, load_model, resolve_model
from .data import NUM_PIXELS, DataError, fixed_test_set, load_mnist


class InputError(RuntimeError):
    """Bad user input; the message names the file and the problem."""


def friendly_errors(func):
    """Expected errors become one line on stderr and exit status 1, never a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, DataError, ModelFileError) as exc:
            click.echo(f"serecodec: error: {exc}", err=True)
            sys.exit(1)
    return wrapper


def load_binary_npy(path: Path) -> np.ndarray:
    """A .npy array of 0/1 images shaped (N, 28, 28) or (N, 784), as uint8 (N, 784)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    if array.ndim not in (2, 3) or array.shape[1:] not in ((28, 28), (NUM_PIXELS,)):
        raise InputError(f"{path}: expected shape (N, 28, 28) or (N, 784), got {array.shape}")
    if len(array) == 0:
        raise InputError(f"{path}: contains no images")
    if not np.isin(array, (0, 1)).all():
        raise InputError(f"{path}: pixels must be 0 or 1 (binarize the images first)")
    return array.reshape(len(array), NUM_PIXELS).astype(np.uint8)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="serecodec")
def main():
    """Learned lossless codec for bilevel images (SeRe-VAE + bits-back ANS)."""


@main.command()
@click.option("--model", "model_path", default=None, metavar="NAME|PATH",
              help="A shipped model's name (default, dlgm) or a weight file / checkpoint (default: default).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=".npy of binary images (default: the fixed binarized MNIST test set).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="MNIST cache directory or directory of IDX files (default: $SERECODEC_DATA_DIR or ~/.cache/serecodec).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--iw-samples", "-k", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Importance samples for the log-likelihood estimate (0: skip).")
@click.option("--iw-limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images used for the IW estimate (it costs k forward passes per image).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bpd(model_path, data_path, data_dir, limit, iw_samples, iw_limit, threads, as_json, quiet):
    """Negative ELBO and IW log-likelihood of a model, in nats/image and bits/dim."""
    import torch
    from tqdm import tqdm

    from .evaluate import evaluate

    if threads:
        torch.set_num_threads(threads)
    if data_path is not None:
        images, source = load_binary_npy(data_path), str(data_path)
    else:
        images, source = fixed_test_set(load_mnist(data_dir)), "mnist-test-binarized-rng0"
    model = load_model(model_path)
    if limit:
        images = images[:limit]
    n_iw = min(iw_limit, len(images))
    bar = tqdm(total=n_iw, desc=f"IW-{iw_samples}", unit="img", disable=quiet or iw_samples == 0, file=sys.stderr)
    result = evaluate(model, images, iw_samples=iw_samples, iw_limit=iw_limit, progress=bar.update)
    bar.close()
    result = {"model": str(resolve_model(model_path)), "data": source, "model_meta": getattr(model, "meta", {}),
              **result}
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"{'model':<9s}{result['model']}")
    click.echo(f"{'data':<9s}{source} ({result['images']} images)")
    click.echo(f"{'-ELBO':<9s}{result['neg_elbo_nats']:.2f} nats/image  {result['neg_elbo_bpd']:.4f} bits/dim")
    if iw_samples:
        click.echo(f"{'-IW-' + str(iw_samples):<9s}{result['neg_iw_nats']:.2f} nats/image  {result['neg_iw_bpd']:.4f} bits/dim"
                   f"  (first {result['iw_images']} images; -ELBO on them {result['neg_elbo_nats_same_images']:.2f})")
    click.echo(f"{'KL/layer':<9s}" + " ".join(f"{v:.2f}" for v in result["kl_per_layer_nats"]))


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@friendly_errors
def export(checkpoint, output, force):
    """Write the compact fp16 weight file of a training checkpoint."""
    if output.exists() and not force:
        raise InputError(f"{output}: already exists (use -f to overwrite)")
    export_weights(checkpoint, output)
    click.echo(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
