"""The model commands of ``serecodec``: bpd (likelihoods and the real coded rate), export, train
(on a user's images; the policy lives in ``user_training``) and models. The modules that need
torch (checkpoint, evaluate, user_training) are imported inside the commands that use them, so
the archive commands, which import this module, never load torch."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from .cli_support import friendly_errors, refuse_existing
from .progress import progress_bar
from .data import fixed_test_set, load_mnist
from .errors import InputError
from .images import read_npy
from .registry import models, user_models_dir


@click.command()
@click.option("--model", "model_path", default=None, metavar="NAME|PATH",
              help="A shipped model's name (default, dlgm) or a weight file / checkpoint (default: default).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=".npy of binary images (default: the fixed binarized MNIST test set).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="MNIST cache directory or directory of IDX files (default: $SERECODEC_DATA_DIR or ~/.cache/serecodec).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--iw-samples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Importance samples for the float model's log-likelihood estimate (0: skip).")
@click.option("-k", "--particles", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Code with K importance particles (BB-IS) and report the coding model's IW-K bound beside it.")
@click.option("--iw-limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Images used for the IW estimate (it costs k forward passes per image).")
@click.option("--full", is_flag=True, help="The full IW evaluation: IW on 1,000 images (the expected time is "
                                           "printed first).")
@click.option("--code/--no-code", default=True, show_default=True,
              help="Also run the real coder: coding-model -ELBO, coded rate net and total, decode check.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bpd(model_path, data_path, data_dir, limit, iw_samples, particles, iw_limit, full, code, threads, as_json, quiet):
    """Model -ELBO, IW log-likelihood and real coded rate, in nats/image and bits/dim: the cheap
    figures first (float -ELBO), then the coder's, then the IW estimate."""
    import torch

    from .checkpoint import load_model, resolve_model          # (torch: only when bpd runs)
    from .evaluate import elbo_figures, iw_figures

    if threads:
        torch.set_num_threads(threads)
    model = load_model(model_path)
    if hasattr(model, "flow_config"):                # a flow model: grey levels, log-likelihood in logit space
        given = click.get_current_context().get_parameter_source("iw_limit") is not ParameterSource.DEFAULT
        return _flow_bpd(model, model_path, data_dir, limit, iw_samples, iw_limit if given else None, full, as_json,
                         quiet)
    if data_path is not None:
        images = read_npy(data_path)
        if images.shape[1:] != (28, 28):
            raise InputError(f"{data_path}: expected shape (N, 28, 28) for bpd, got {images.shape}")
        images, source = images.reshape(-1, 784), str(data_path)
    else:
        images, source = fixed_test_set(load_mnist(data_dir)), "mnist-test-binarized-rng0"
    if limit:
        images = images[:limit]
    iw_limit = 1000 if full else iw_limit
    show = not as_json
    row = lambda label, nats, bpd_: click.echo(f"{label:<22s}{nats:8.2f} nats/image  {bpd_:.4f} bits/dim")  # noqa: E731
    result = {"model": str(resolve_model(model_path)), "data": source, "model_meta": getattr(model, "meta", {}),
              **elbo_figures(model, images)}
    if show:
        click.echo(f"{'model':<22s}{result['model']}")
        click.echo(f"{'data':<22s}{source} ({result['images']} images)")
        row("-ELBO (float model)", result["neg_elbo_nats"], result["neg_elbo_bpd"])
        click.echo(f"{'KL per layer (nats)':<22s}" + " ".join(f"{v:.2f}" for v in result["kl_per_layer_nats"]))
    if code:
        from .evaluate import coded_rates
        c = result["coding"] = coded_rates(model_path, model, images, particles,
                                           progress=lambda total, desc: progress_bar(total, desc, quiet))
        if show:
            row("-ELBO (coding model)", c["neg_elbo_nats"], c["neg_elbo_bpd"])
            if particles > 1:
                row(f"IW-{particles} (coding model)", c["iw_nats"], c["iw_bpd"])
            row(f"coded rate, net, K={particles}", c["net_nats"], c["net_bpd"])
            row("coded rate, total", c["total_nats"], c["total_bpd"])
            click.echo(f"{'net / coding bound':<22s}{c['net_over_bound']:.4f}   decoded bit-exactly: "
                       f"{c['bit_exact']}   encode {c['encode_images_per_s']:.0f} img/s, "
                       f"decode {c['decode_images_per_s']:.0f} img/s")
    if iw_samples:
        n_iw = min(iw_limit, len(images))
        tic = time.perf_counter()
        iw_figures(model, images[:1], iw_samples)                  # one image: the pace of the rest
        if not quiet:
            click.echo(f"IW-{iw_samples} on {n_iw} images: about {(time.perf_counter() - tic) * n_iw:.0f} s"
                       + ("" if full else " (--full: on 1,000)"), err=True)
        with progress_bar(n_iw, f"IW-{iw_samples}", quiet, least=1) as bar:
            result.update(iw_figures(model, images, iw_samples, iw_limit, progress=bar.update))
        if show:
            row(f"-log p(x), IW-{iw_samples}", result["neg_iw_nats"], result["neg_iw_bpd"])
            click.echo(f"{'':<22s}(IW on the first {result['iw_images']} images; float -ELBO on them "
                       f"{result['neg_elbo_nats_same_images']:.2f})")
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))


def _flow_bpd(model, model_path, data_dir, limit, iw_samples, iw_limit, full, as_json, quiet) -> None:
    """bpd of a flow model (SeRe-MAF, MAF): test log-likelihood in nats per image in logit space
    (−ELBO, and the IW-k bound for the SeRe-MAF) and bits/dim of the 8-bit grey levels, on the
    MNIST test set or the IDX test images of --data-dir. The IW bound is taken on the same images
    as the −ELBO (up to 1,000, or --iw-limit), so that it compares with a MAF's exact figure over
    the same --limit: per-image log-likelihoods spread by about 100 nats, and two different
    subsets of 100 images differ by more than the models do."""
    from .checkpoint import resolve_model
    from .flow_data import grey_levels
    from .flow_training import evaluate

    levels = grey_levels(None if data_dir is None else str(data_dir))[2][:limit]
    result = {"model": str(resolve_model(model_path)), "data": str(data_dir or "mnist-test-grey"),
              "model_meta": getattr(model, "meta", {}), **evaluate(model, levels)}
    variational = bool(len(result["kl_per_layer"]))
    if iw_samples and variational:
        n_iw = 1000 if full else (iw_limit or 1000)
        k = min(iw_samples, 1000)
        if not (quiet or as_json):
            tic = time.perf_counter()
            evaluate(model, levels[:1], iw_samples=k)                # one image: the pace of the rest
            click.echo(f"IW-{k} on {min(n_iw, len(levels))} images: about "
                       f"{(time.perf_counter() - tic) * min(n_iw, len(levels)):.0f} s", err=True)
        iw = evaluate(model, levels[:n_iw], iw_samples=k)
        result.update({"iw_images": iw["images"], "log_likelihood": iw["log_likelihood"],
                       "log_likelihood_bound": iw["log_likelihood_bound"], "bits_per_dim": iw["bits_per_dim"]})
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"{'model':<22s}{result['model']}")
    click.echo(f"{'data':<22s}{result['data']} ({result['images']} images, dequantized, logit space)")
    click.echo(f"{'-ELBO' if variational else '-log p(x)':<22s}{result['neg_elbo_nats']:9.2f} nats/image  "
               f"{result['bits_per_dim_elbo']:.4f} bits/dim")
    if variational:
        click.echo(f"{'log-likelihood':<22s}{result['log_likelihood']:9.2f} nats/image  {result['bits_per_dim']:.4f} "
                   f"bits/dim ({result['log_likelihood_bound']} bound on {result.get('iw_images', result['images'])} images)")
        click.echo(f"{'KL per layer (nats)':<22s}" + " ".join(f"{v:.2f}" for v in result["kl_per_layer"]))


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Weight file NAME.pt; the coding model goes beside it as NAME.coding.npz.")
@click.option("--bucket-bits", type=click.IntRange(4, 12), default=8, show_default=True,
              help="log2 of the number of equal-prior-mass buckets per latent.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@friendly_errors
def export(checkpoint, output, bucket_bits, force):
    """Freeze a training checkpoint: fp16 weights and the integer coding model."""
    from .user_training import coding_path, export_model

    coding = coding_path(output)
    for path in (output, coding):
        refuse_existing(path, force)
    digest = export_model(checkpoint, output, bucket_bits)
    click.echo(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")
    if digest is None:
        click.echo("(a flow model: no coding model; `serecodec bpd --model` measures it)")
        return
    click.echo(f"wrote {coding} ({os.path.getsize(coding) / 1e6:.1f} MB, coding model {digest[:16]})")


@click.command()
@click.argument("data", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Model file NAME.pt; NAME.coding.npz and NAME.json go beside it.")
@click.option("--tile", default="28x28", show_default=True, help="Model input HxW; larger images are cut into tiles.")
@click.option("--preset", type=click.Choice(["paper", "small", "tiny", "resnet"]), default="paper", show_default=True,
              help="paper: the MLP of the paper; small/tiny: narrower nets, faster and weaker; resnet: the "
                   "paper's ResNet SeRe-VAE (tile sides divisible by 4; ~10x slower per step). See README.")
@click.option("--epochs", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--max-minutes", type=click.FloatRange(min=0), default=0, help="Stop after this much training time "
              "(the learning rate cools over the last 40%); 0: no limit.")
@click.option("--valid", "valid_spec", default="0.1", show_default=True,
              help="Validation: a FRACTION of the tiles, or DATA (a file or directory).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Adam's step size (the paper's 1e-3).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Tiles per step (fewer than a quarter of the training tiles: a quarter of them).")
@click.option("--init", "init_spec", default="auto", show_default=True, metavar="auto|none|NAME|PATH",
              help="Start from a trained model's weights (fine-tuning; no KL warm-up). auto: the shipped "
              "digit model when the preset and tile match it (paper, 28x28); none: from scratch.")
@click.option("--run-dir", default=None, help="Checkpoint and log (resumes if present). Default: NAME.run/")
@click.option("--install", "install_name", default=None, metavar="NAME",
              help="Also install the model as NAME in the user model directory (see `serecodec models`).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing model files.")
@click.option("--page-model", is_flag=True, help="Fit the page model's starting state on DATA (bilevel page images) "
              "instead: writes NAME.pages.npz into the user model directory, which compress then tries beside the "
              "shipped states (the VAE options do not apply).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def train(data, output, tile, preset, epochs, max_minutes, valid_spec, threads, device, seed, learning_rate, batch_size,
          init_spec, run_dir, install_name, force, page_model, quiet):
    """Train a SeRe-VAE on your own bilevel images and export its coding model.

    DATA: .npy arrays (N, H, W) of 0/1 or grey levels (read as Bernoulli probabilities and
    binarized afresh each epoch), directories of image files, or IDX files."""
    if page_model:
        _fit_page_state(data, output, force, quiet)
        return
    from .user_training import TrainingRequest, train_user_model

    request = TrainingRequest(list(data), Path(output), tile, preset, epochs, max_minutes, valid_spec, learning_rate,
                              batch_size, init_spec, threads, device, seed, Path(run_dir) if run_dir else None,
                              install_name, force)

    def started(info: dict) -> None:
        if not quiet:
            height, width = info["tile"]
            click.echo(f"training on {info['tiles']} tiles of {height}x{width} ({preset} preset), validating on "
                       f"{info['valid']}; run directory {info['run_dir']}"
                       + (f"; starting from {info['init'].name}" if info["init"] else ""), err=True)

    bar = _training_bar(epochs, max_minutes, quiet)
    with bar:
        summary = train_user_model(request, started, lambda record: _advance(bar, record, max_minutes))
    if summary["installed"]:
        click.echo(f"installed as {install_name}: {summary['installed']}", err=True)
    if not quiet:
        click.echo(f"wrote {summary['weights']} and {summary['coding']}", err=True)
        click.echo("validation bits/dim: " + ", ".join(f"{k} {v:.4f}" for k, v in
                                                       summary["validation_bits_per_dim"].items()), err=True)


def _fit_page_state(data, output: str, force: bool, quiet: bool) -> None:
    """``train --page-model``: the page model's own learning run over the user's pages."""
    from .images import collect_inputs
    from .inputs import background_is_one, with_polarity
    from .page_fit import fit_and_save

    target = Path(output) if output.endswith(".pages.npz") else user_models_dir() / f"{Path(output).name}.pages.npz"
    refuse_existing(target, force)
    found = collect_inputs(list(data))
    images = with_polarity(list(found.images), background_is_one(list(found.images)))
    with progress_bar(len(images), "fit", quiet) as bar:
        state = fit_and_save(images, target, progress=lambda n: bar.update(1))
    if not quiet:
        click.echo(f"wrote {target} (page-model state {state}, fitted on {len(images)} images); compress now "
                   f"tries it beside the shipped states", err=True)


def _training_bar(epochs: int, max_minutes: float, quiet: bool):
    from tqdm import tqdm
    total, unit = (max_minutes * 60, "s") if max_minutes else (epochs, "epoch")
    return tqdm(total=total, unit=unit, desc="train", disable=quiet or not sys.stderr.isatty(), file=sys.stderr,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]{postfix}")


def _advance(bar, record: dict, max_minutes: float) -> None:
    bar.set_postfix_str(f"valid -ELBO {-record['valid_elbo']:.2f} nats")
    bar.update(record["seconds"] if max_minutes else 1)


@click.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def list_models(as_json):
    """List the shipped and installed coding models (name, tile, hash, size, bits/dim)."""
    cards = models()
    if as_json:
        click.echo(json.dumps(cards, indent=2))
        return
    for card in cards:
        rate = card.get("test_bits_per_dim") or card.get("valid_bits_per_dim")
        click.echo(f"{card['name']:<16s} {'x'.join(map(str, card['tile'])):<7s} {card['hash'][:16]}  "
                   f"{card['bytes'] / 1e6:6.1f} MB  {('%.4f bits/dim' % rate) if rate else '':<16s} "
                   f"{'shipped' if card['shipped'] else 'installed'}")
    click.echo(f"(user model directory: {user_models_dir()})")
