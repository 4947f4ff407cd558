"""The ``serecodec`` command: compress, decompress, info, bpd, export (gzip/zstd-style flags)."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from .archive import ArchiveError
from .checkpoint import ModelFileError, export_weights, load_model, resolve_model
from .coding_model import CodingModelError
from .context_model import ContextModelError
from .data import DataError, fixed_test_set, load_mnist
from .images import InputError, read_npy


def friendly_errors(func):
    """Expected errors become one line on stderr and exit status 1, never a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, DataError, ModelFileError, CodingModelError, ContextModelError, ArchiveError) as exc:
            click.echo(f"serecodec: error: {exc}", err=True)
            sys.exit(1)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="serecodec")
def main():
    """Learned lossless codec for bilevel images (SeRe-VAE + bits-back ANS)."""


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=quiet or total < 512, file=sys.stderr)


def _refuse_existing(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"{path}: already exists (use -f to overwrite)")


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Archive to write.")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Binarize grey/colour input at this level (0..1). Lossy.")
@click.option("--method", type=click.Choice(["auto", "bits-back", "context", "deflate"]), default="auto", show_default=True,
              help="auto keeps the smallest: bits-back, or for a few dozen images or fewer the static context model (deflate for images unlike digits).")
@click.option("--no-names", is_flag=True, help="Do not store the input file names.")
@click.option("--no-verify", is_flag=True, help="Skip decoding the archive again before writing it.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing archive.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def compress(inputs, output, model, threshold, method, no_names, no_verify, force, quiet):
    """Compress image files, directories of them, or .npy arrays (N, 28, 28) of 0/1 into one archive."""
    from .codec import Codec
    from .fileio import atomic_write_bytes
    from .images import collect_inputs

    _refuse_existing(output, force)
    images, names = collect_inputs(list(inputs), threshold)
    if threshold is not None and not quiet:
        click.echo(f"serecodec: warning: --threshold {threshold} binarized the input; the archive is lossless "
                   f"only with respect to the binarized pixels", err=True)
    codec = Codec(model)
    with _progress(len(images), "compress", quiet) as bar:
        data = codec.compress(images, None if no_names else names, progress=bar.update, method=method)
    if not no_verify and not np.array_equal(codec.decompress(data), images):
        raise RuntimeError("verification failed: the archive does not decode to the input (please report)")
    atomic_write_bytes(output, data)
    if not quiet:
        used = codec.read(data).method
        click.echo(f"{len(images)} images -> {output}: {len(data)} bytes, "
                   f"{8 * len(data) / images.size:.4f} bits/dim ({used})")


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: ARCHIVE without its suffix); with --npy, the .npy file.")
@click.option("--npy", "as_npy", is_flag=True, help="Write one (N, 28, 28) uint8 array instead of PNG files.")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def decompress(archive, output, as_npy, model, force, quiet):
    """Restore every image of an archive bit-exactly (PNG under its stored name, or one .npy)."""
    from .codec import Codec
    from .fileio import atomic_write_bytes
    from .images import png_bytes, safe_relative

    data = _read_archive_bytes(archive)
    codec = Codec(model)
    header = _parse(codec, archive, data)
    with _progress(header.count, "decompress", quiet) as bar:
        try:
            images = codec.decompress_archive(header, progress=bar.update)
        except ArchiveError as exc:
            raise ArchiveError(f"{archive}: {exc}") from None
    if as_npy:
        target = output or archive.with_suffix(".npy")
        _refuse_existing(target, force)
        import io

        buffer = io.BytesIO()
        np.save(buffer, images)
        atomic_write_bytes(target, buffer.getvalue())
        written = [target]
    else:
        outdir = output or archive.with_suffix("")
        names = header.names or [f"image_{i:05d}" for i in range(header.count)]
        targets = [outdir / (str(safe_relative(name)) + ".png") for name in names]
        if len(set(targets)) != len(targets):
            raise ArchiveError(f"{archive}: holds the same file name twice; use --npy to get every image")
        for target in targets:
            _refuse_existing(target, force)
        written = []
        for target, image in zip(targets, images):
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, png_bytes(image))
            written.append(target)
    if not quiet:
        where = written[0] if as_npy else (output or archive.with_suffix(""))
        click.echo(f"{archive}: {header.count} images restored -> {where}")


def _read_archive_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _parse(codec, path: Path, data: bytes):
    try:
        return codec.read(data)
    except ArchiveError as exc:
        raise ArchiveError(f"{path}: {exc}") from None


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model to compare with (default: the shipped one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def info(archive, model, as_json):
    """Show an archive's header: model, count, shape, size and bits per dimension."""
    from .archive import Archive
    from .bitsback import initial_word_count
    from .codec import Codec, resolve_coding_model

    data = _read_archive_bytes(archive)
    try:
        header = Archive.from_bytes(data)
    except ArchiveError as exc:
        raise ArchiveError(f"{archive}: {exc}") from None
    dims = header.count * header.height * header.width
    known = Codec(model).model if resolve_coding_model(model).is_file() else None
    matches = (known is not None and header.made_with(known.hash)) if header.method == "bits-back" else None
    report = {
        "archive": str(archive), "format_version": header.version, "method": header.method,
        "coding_model": header.model_hash or None,
        "model_matches": matches, "images": header.count, "shape": [header.height, header.width],
        "bytes": len(data), "payload_bits": header.payload_bits, "batches": len(header.batch_sizes),
        "names": header.names is not None,
        **({"context_table": header.context_table} if header.method == "context" else {}), "bits_per_dim": 8 * len(data) / dims if dims else None,
    }
    if matches and header.method == "bits-back":   # the initial bits are a property of the coding model
        initial = 32 * initial_word_count(known)
        report.update(initial_bits=initial, net_bits_per_dim=(header.payload_bits - initial) / dims)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        click.echo(f"{key:<18s}{value:.4f}" if isinstance(value, float) else f"{key:<18s}{value}")


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
@click.option("--code/--no-code", default=True, show_default=True,
              help="Also run the real coder: coding-model -ELBO, coded rate net and total, decode check.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bpd(model_path, data_path, data_dir, limit, iw_samples, iw_limit, code, threads, as_json, quiet):
    """Model -ELBO, IW log-likelihood and real coded rate, in nats/image and bits/dim."""
    import torch

    from .evaluate import evaluate

    if threads:
        torch.set_num_threads(threads)
    if data_path is not None:
        images, source = read_npy(data_path).reshape(-1, 784), str(data_path)
    else:
        images, source = fixed_test_set(load_mnist(data_dir)), "mnist-test-binarized-rng0"
    if limit:
        images = images[:limit]
    model = load_model(model_path)
    n_iw = min(iw_limit, len(images))
    with _progress(n_iw if iw_samples else 0, f"IW-{iw_samples}", quiet) as bar:
        result = evaluate(model, images, iw_samples=iw_samples, iw_limit=iw_limit, progress=bar.update)
    result = {"model": str(resolve_model(model_path)), "data": source, "model_meta": getattr(model, "meta", {}),
              **result}
    if code:
        result["coding"] = _coded_rates(model_path, model, images, quiet)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    row = lambda label, nats, bpd_: click.echo(f"{label:<22s}{nats:8.2f} nats/image  {bpd_:.4f} bits/dim")  # noqa: E731
    click.echo(f"{'model':<22s}{result['model']}")
    click.echo(f"{'data':<22s}{source} ({result['images']} images)")
    row("-ELBO (float model)", result["neg_elbo_nats"], result["neg_elbo_bpd"])
    if iw_samples:
        row(f"-log p(x), IW-{iw_samples}", result["neg_iw_nats"], result["neg_iw_bpd"])
        click.echo(f"{'':<22s}(IW on the first {result['iw_images']} images; float -ELBO on them "
                   f"{result['neg_elbo_nats_same_images']:.2f})")
    if code:
        c = result["coding"]
        row("-ELBO (coding model)", c["neg_elbo_nats"], c["neg_elbo_bpd"])
        row("coded rate, net", c["net_nats"], c["net_bpd"])
        row("coded rate, total", c["total_nats"], c["total_bpd"])
        click.echo(f"{'net / coding -ELBO':<22s}{c['net_over_coding_elbo']:.4f}   decoded bit-exactly: "
                   f"{c['bit_exact']}   encode {c['encode_images_per_s']:.0f} img/s, "
                   f"decode {c['decode_images_per_s']:.0f} img/s")
    click.echo(f"{'KL per layer (nats)':<22s}" + " ".join(f"{v:.2f}" for v in result["kl_per_layer_nats"]))


def _coded_rates(model_path, model, images: np.ndarray, quiet: bool) -> dict:
    """Run the real bits-back coder over ``images`` and report its rates (and a decode check)."""
    import math
    import time

    from .bitsback import initial_word_count
    from .codec import Codec, resolve_coding_model
    from .coding_model import CodingModel, export_coding_model
    from .evaluate import nats_to_bpd

    shipped = resolve_coding_model(model_path if model_path is not None else None)
    if (model_path is None or "/" not in str(model_path)) and shipped.is_file():
        codec, origin = Codec(shipped), str(shipped)
    else:
        codec, origin = Codec(CodingModel(export_coding_model(model))), "exported on the fly (8 bucket bits)"
    n = len(images)
    squares = images.reshape(n, 28, 28)
    expected = codec.model.expected_rate(images)
    tic = time.perf_counter()
    with _progress(n, "encode", quiet) as bar:
        data = codec.compress(squares, progress=bar.update, method="bits-back")
    encode_s = time.perf_counter() - tic
    tic = time.perf_counter()
    with _progress(n, "decode", quiet) as bar:
        decoded = codec.decompress(data, progress=bar.update)
    decode_s = time.perf_counter() - tic
    archive = codec.read(data)
    net_bits = archive.payload_bits - 32 * initial_word_count(codec.model)
    net_nats, total_nats = net_bits * math.log(2) / n, 8 * len(data) * math.log(2) / n
    return {
        "coding_model": origin, "coding_model_hash": codec.model.hash,
        "bucket_bits": codec.model.bucket_bits,
        "neg_elbo_nats": expected["neg_elbo_nats"], "neg_elbo_bpd": nats_to_bpd(expected["neg_elbo_nats"]),
        "net_nats": net_nats, "net_bpd": nats_to_bpd(net_nats),
        "total_nats": total_nats, "total_bpd": nats_to_bpd(total_nats), "archive_bytes": len(data),
        "net_over_coding_elbo": net_nats / expected["neg_elbo_nats"],
        "bit_exact": bool(np.array_equal(decoded, squares)),
        "encode_images_per_s": n / encode_s, "decode_images_per_s": n / decode_s,
    }


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Weight file NAME.pt; the coding model goes beside it as NAME.coding.npz.")
@click.option("--bucket-bits", type=click.IntRange(4, 12), default=8, show_default=True,
              help="log2 of the number of equal-prior-mass buckets per latent.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@friendly_errors
def export(checkpoint, output, bucket_bits, force):
    """Freeze a training checkpoint: fp16 weights and the integer coding model."""
    from .coding_model import export_coding_model, save_coding_model

    coding = output.with_name(output.name.removesuffix(".pt") + ".coding.npz")
    for path in (output, coding):
        if path.exists() and not force:
            raise InputError(f"{path}: already exists (use -f to overwrite)")
    export_weights(checkpoint, output)
    digest = save_coding_model(export_coding_model(load_model(output), bucket_bits, source=output.name), coding)
    click.echo(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")
    click.echo(f"wrote {coding} ({os.path.getsize(coding) / 1e6:.1f} MB, coding model {digest[:16]})")


if __name__ == "__main__":
    main()
