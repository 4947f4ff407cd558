"""The ``serecodec`` command: compress, decompress, test, list, info, bpd, export.

gzip/zstd habits: ``-`` is stdin, ``-c`` / ``-o -`` is stdout, ``compress FILE`` writes
``FILE.sere``, nothing is overwritten without ``-f``, an output never replaces an input, every
expected failure is one line on stderr naming the file with exit status 1, Ctrl-C exits 130.
Decoding imports neither torch nor matplotlib.
"""
from __future__ import annotations

import functools
import io
import json
import os
import signal
import sys
from pathlib import Path

import click
import numpy as np

from .errors import ArchiveError, InputError, SerecodecError

SUFFIX = ".sere"


def friendly_errors(func):
    """Expected errors become one line on stderr and exit status 1, never a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
        try:
            return func(*args, **kwargs)
        except SerecodecError as exc:
            _fail(str(exc))
        except MemoryError:
            _fail("out of memory (try a smaller input, or raise the machine's memory)")
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            click.echo("serecodec: interrupted", err=True)
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _terminate(signum, frame):
    raise KeyboardInterrupt      # runs the same clean-up (temporary files removed) as Ctrl-C


def _fail(message: str) -> None:
    click.echo(f"serecodec: error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="serecodec")
def main():
    """Learned lossless codec for bilevel images (SeRe-VAE + bits-back ANS)."""


def _progress(total: int, desc: str, quiet: bool):
    """A progress bar on a terminal only (never in pipes or logs)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=quiet or total < 512 or not sys.stderr.isatty(),
                file=sys.stderr, leave=False)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_existing(path: Path, force: bool) -> None:
    if (path.exists() or path.is_symlink()) and not force:
        raise InputError(f"{path}: already exists (use -f to overwrite)")


def _read_input_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an archive") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def _write_stdout(data: bytes) -> None:
    if sys.stdout.isatty():
        raise InputError("refusing to write binary data to a terminal (use -o FILE or a pipe)")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@main.command()
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", default=None, help="Archive to write ('-': stdout). Default: INPUT.sere for one input.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write the archive to stdout.")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Binarize grey/colour input at this level (0..1). Lossy.")
@click.option("--method", type=click.Choice(["auto", "bits-back", "adaptive", "context", "deflate"]), default="auto",
              show_default=True, help="auto keeps the smallest of bits-back (learned model), the adaptive context "
                                      "model, the static digit model and deflate.")
@click.option("--no-names", is_flag=True, help="Do not store the input file names.")
@click.option("--unordered", is_flag=True, help="The order does not matter (a data set): save ~log2(N!) bits; "
                                                "decompress restores the images in canonical order. Needs --no-names "
                                                "for named files.")
@click.option("--particles", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Bits-back with K importance particles: codes at the IW-K bound, below the ELBO, at K times "
                   "the work each way.")
@click.option("--no-verify", is_flag=True, help="Skip decoding the archive again before writing it.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing archive.")
@click.option("-k", "--keep", is_flag=True, help="Keep the inputs (always the case; accepted for gzip habits).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--skip-other", is_flag=True, help="Leave out files of input directories that are not images "
                                                 "(each named in a warning); without it they stop the run.")
@click.option("-v", "--verbose", is_flag=True, help="Per chunk: the method kept, its size, and what the others "
                                                    "came to (or why they were not tried).")
@friendly_errors
def compress(inputs, output, to_stdout, model, threshold, method, no_names, unordered, particles, no_verify, force, keep,
             skip_other, quiet, verbose):
    """Compress image files (any size), directories of them, .npy arrays (N, H, W) of 0/1, or '-'
    (stdin) into one archive."""
    from .codec import Codec, as_images
    from .fileio import atomic_write_bytes
    from .images import collect_inputs

    if to_stdout:
        output = "-"
    if output is None:
        if len(inputs) != 1 or inputs[0] == "-" or Path(inputs[0]).is_dir():
            raise InputError("give -o ARCHIVE (or -c) when compressing several inputs, a directory or stdin")
        output = inputs[0] + SUFFIX
    elif output != "-" and Path(output).is_dir():
        if len(inputs) != 1 or inputs[0] == "-" or Path(inputs[0]).is_dir():
            raise InputError(f"{output}: is a directory; give the archive's file name")
        output = str(Path(output) / (Path(inputs[0]).name + SUFFIX))      # like cp FILE DIR/
    out_path = None if output == "-" else Path(output)
    if out_path is not None:
        _refuse_existing(out_path, force)
        for given in inputs:
            if given != "-" and (_same_file(out_path, Path(given)) or out_path.resolve() == Path(given).resolve()):
                raise InputError(f"{out_path}: is also an input; choose another output")
    stdin = sys.stdin.buffer.read() if "-" in inputs else None
    found = collect_inputs(list(inputs), threshold, stdin)
    for other in found.others:
        click.echo(f"serecodec: {'warning' if skip_other else 'error'}: {other}: not an image file"
                   + (" (left out)" if skip_other else ""), err=True)
    if found.others and not skip_other:
        raise InputError(f"{len(found.others)} input file(s) are not images; nothing written "
                         f"(--skip-other leaves them out)")
    if threshold is not None and not quiet:
        click.echo(f"serecodec: warning: --threshold {threshold} binarized the input; the archive is lossless "
                   f"only with respect to the binarized pixels", err=True)
    images, names, formats, arrays = as_images(found.images), found.names, found.formats, found.arrays
    only_arrays = set(formats) == {"npy"}
    if no_names or (unordered and only_arrays):
        names, arrays = None, []
    if unordered and names is not None:
        raise InputError("--unordered restores images in canonical order, so it cannot keep file names; "
                         "add --no-names")
    codec = Codec(model, particles=particles)
    report: list = []
    with _progress(len(images), "compress", quiet) as bar:
        data = codec.compress(images, names, progress=bar.update, method=method,
                              formats=None if only_arrays and not arrays else formats, ordered=not unordered,
                              verify=not no_verify, report=report, arrays=arrays or None,
                              headers=None if unordered else found.headers)
    if out_path is None:
        _write_stdout(data)
    else:
        atomic_write_bytes(out_path, data)
    pixels = sum(image.size for image in images)
    if verbose:
        _report_chunks(report, images)
    if not quiet and out_path is not None:
        used = codec.read(data).method
        click.echo(f"{len(images)} images -> {out_path}: {len(data)} bytes, "
                   f"{8 * len(data) / pixels:.4f} bits/dim ({used})", err=True)


def _report_chunks(report: list, images) -> None:
    """-v: per chunk the method kept, its rate, and the other candidates' sizes or reasons."""
    from .codec import describe_range
    for number, chunk in enumerate(report, 1):
        pixels = sum(images[i].size for i in range(chunk.first, chunk.first + chunk.count))
        others = ", ".join(f"{name} {value:,} bytes" if isinstance(value, int) else f"{name} {value}"
                           for name, value in chunk.candidates.items() if name != chunk.method)
        click.echo(f"chunk {number} ({describe_range(range(chunk.first, chunk.first + chunk.count))}, "
                   f"{pixels:,} pixels): {chunk.method} {chunk.bytes:,} bytes = {8 * chunk.bytes / pixels:.4f} "
                   f"bits/dim, {chunk.bytes / chunk.count:,.1f} bytes/image" + (f"; {others}" if others else ""),
                   err=True)


def _default_target(archive: str, count: int) -> Path:
    if archive == "-":
        raise InputError("give -o OUTPUT (or -c) when the archive comes from stdin")
    path = Path(archive)
    if path.suffix != SUFFIX:
        raise InputError(f"{path}: has no {SUFFIX} suffix, so the output name is unclear; give -o OUTPUT")
    return path.with_suffix("")


@main.command()
@click.argument("archive")
@click.option("-o", "--output", default=None,
              help="Output directory (one-image archives: the file; '-': stdout). Default: ARCHIVE without .sere.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write the one image (or the --npy array) to stdout.")
@click.option("--npy", "as_npy", is_flag=True, help="Write one (N, H, W) uint8 array (.npz of arrays for mixed sizes).")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("-k", "--keep", is_flag=True, help="Keep the archive (always the case; accepted for gzip habits).")
@click.option("--salvage", is_flag=True, help="Restore every image of every intact chunk of a damaged archive, "
                                             "name the lost ones, exit 1 if any were lost.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def decompress(archive, output, to_stdout, as_npy, model, force, keep, salvage, quiet):
    """Restore every image of an archive bit-exactly, each in its original file format under its
    stored name (PNG where the archive records none), or as one array with --npy."""
    from .codec import Codec, describe_range
    from .fileio import atomic_write_bytes, safe_output_paths, write_inside

    data = _read_input_bytes(archive)
    codec = Codec(model)
    header = _parse(codec, archive, data)
    lost = []
    with _progress(header.count, "decompress", quiet) as bar:
        if salvage:
            result = codec.salvage(header, progress=bar.update)
            kept = [i for i, image in enumerate(result.images) if image is not None]
            images, lost = [result.images[i] for i in kept], result.lost
        else:
            try:
                images = codec.decompress_archive(header, progress=bar.update)
            except SerecodecError as exc:
                raise type(exc)(f"{archive}: {exc}") from None
            kept = list(range(header.count))
    if to_stdout:
        output = "-"
    if header.names and not header.names_verified and not quiet:
        click.echo(f"serecodec: warning: {archive}: a format-2 archive; no checksum covers its file names "
                   f"(the pixels are verified); re-compress it to protect them", err=True)
    for number, span, reason in lost:
        click.echo(f"serecodec: error: {archive}: chunk {number} ({describe_range(span)}) is lost: {reason}", err=True)
    if lost and not kept:
        raise InputError(f"{archive}: no intact chunk; nothing restored")
    formats = [(header.formats or ["png"] * header.count)[i] for i in kept]
    stored = header.names or [f"image_{i:05d}" for i in range(header.count)]
    names = [stored[i] for i in kept]
    if as_npy:
        blob = _npy_bytes(images if not lost else list(images), names)
        suffix = ".npy" if not lost and isinstance(images, np.ndarray) else ".npz"
        if output == "-":
            _write_stdout(blob)
            return
        target = Path(output) if output else _default_target(archive, header.count).with_suffix(suffix)
        _refuse_existing(target, force)
        _refuse_archive(target, archive)
        atomic_write_bytes(target, blob)
        written = target
    else:
        files = _output_files(header, kept, images, formats, names)
        if output == "-":
            if len(files) != 1:
                raise InputError(f"{archive}: holds {header.count} images in {len(files)} files; only one file goes "
                                 f"to stdout (or use --npy -c)")
            _write_stdout(files[0][1])
            return
        if len(files) == 1 and not lost and (output is None or not Path(output).is_dir()):
            target = Path(output) if output else _default_target(archive, 1)
            _refuse_existing(target, force)
            _refuse_archive(target, archive)
            atomic_write_bytes(target, files[0][1])
            written = target
        else:
            outdir = Path(output) if output else _default_target(archive, header.count)
            _refuse_archive(outdir, archive)
            if outdir.exists() and not outdir.is_dir():
                raise InputError(f"{outdir}: exists and is not a directory")
            try:
                relative = safe_output_paths([name for name, _ in files], [""] * len(files), archive)
            except InputError as exc:
                raise InputError(f"{archive}: {str(exc).removeprefix(f'{archive}: ')}") from None
            for rel in relative:
                _refuse_existing(outdir / rel, force)
            for rel, (_, blob) in zip(relative, files):
                write_inside(outdir, rel, blob)
            written = outdir
    if lost:
        click.echo(f"serecodec: {archive}: {len(kept)} of {header.count} images restored -> {written}; "
                   f"{header.count - len(kept)} lost", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(f"{archive}: {header.count} images restored -> {written}", err=True)


def _output_files(header, kept: list, images, formats: list, names: list) -> list:
    """[(file name, bytes)] to write: each .npy source whole (its dtype and shape as recorded),
    every other image in its own format, with its own PBM/PGM header where one was kept."""
    from .images import SUFFIX_OF_FORMAT, encode_image, npy_array, npy_groups
    position = {index: n for n, index in enumerate(kept)}
    files, done = [], set()
    arrays = list(header.arrays or [])
    for (start, end), source in zip(npy_groups(header.names, header.formats, header.count), arrays):
        if all(i in position for i in range(start, end)):
            buffer = io.BytesIO()
            np.save(buffer, npy_array([images[position[i]] for i in range(start, end)], *source))
            files.append((header.names[start] + ".npy", buffer.getvalue()))
            done.update(range(start, end))
    for n, index in enumerate(kept):
        if index not in done:
            file_header = header.headers[index] if header.headers else b""
            name = names[n] if formats[n] != "npy" or not arrays else f"{names[n]}_{index:05d}"
            files.append((name + SUFFIX_OF_FORMAT[formats[n]], encode_image(images[n], formats[n], file_header)))
    return files


def _refuse_archive(target: Path, archive: str) -> None:
    if archive != "-" and (_same_file(target, Path(archive)) or target.resolve() == Path(archive).resolve()):
        raise InputError(f"{target}: is the archive itself; choose another output")


def _npy_bytes(images, names: list) -> bytes:
    """One .npy for an array of one size; else an .npz keyed by the stored names."""
    buffer = io.BytesIO()
    if isinstance(images, np.ndarray):
        np.save(buffer, images)
    else:
        keys = names if len(set(names)) == len(names) else [f"image_{i:05d}" for i in range(len(images))]
        np.savez(buffer, **dict(zip(keys, images)))
    return buffer.getvalue()


def _parse(codec, path, data: bytes):
    try:
        return codec.read(data)
    except SerecodecError as exc:
        raise type(exc)(f"{path}: {exc}") from None


@main.command(name="test")
@click.argument("archives", nargs=-1, required=True)
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("-q", "--quiet", is_flag=True, help="Only the exit status tells.")
@friendly_errors
def test_archives(archives, model, quiet):
    """Decode every archive and verify its checksums; write nothing. Names each damaged chunk and
    its images. Exit 1 if any fails."""
    from .codec import Codec, describe_range

    codec, failed = Codec(model), 0
    for archive in archives:
        try:
            header = _parse(codec, archive, _read_input_bytes(archive))
            lost = codec.salvage(header).lost
        except SerecodecError as exc:
            failed += 1
            click.echo(f"serecodec: error: {archive}: {str(exc).removeprefix(f'{archive}: ')}", err=True)
            continue
        if lost:
            failed += 1
            for number, span, reason in lost:
                where = f"chunk {number} of {len(header.chunks)} ({describe_range(span)})"
                click.echo(f"serecodec: error: {archive}: {where}: {reason}", err=True)
            continue
        if not quiet:
            click.echo(f"{archive}: OK ({header.count} images, {len(header.chunks)} chunks, {header.method})")
    if failed:
        sys.exit(1)


def _read_header(archive: str, model=None):
    """(bytes, parsed archive) through the one reading path (``Codec.read``); a chunk whose
    model is missing still lists, its reason kept in ``chunk.damage``."""
    from .codec import Codec, describe_range
    data = _read_input_bytes(archive)
    header = _parse(Codec(model), archive, data)
    for number, chunk in enumerate(header.chunks, 1):
        if chunk.damage and not chunk.unavailable:
            where = f"chunk {number} of {len(header.chunks)} ({describe_range(chunk.images)}): " \
                if len(header.chunks) > 1 else ""
            raise ArchiveError(f"{archive}: {where}{chunk.damage} (decompress --salvage restores the rest)")
    return data, header


@main.command(name="list")
@click.argument("archive")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def list_archive(archive, as_json):
    """List an archive's images: name, format and size, with the method and bits/dim."""
    data, header = _read_header(archive)
    names = header.names or [f"image_{i:05d}" for i in range(header.count)]
    formats = header.formats or ["png"] * header.count
    entries = [{"name": n, "format": f, "height": h, "width": w}
               for n, f, (h, w) in zip(names, formats, header.shapes)]
    summary = {"archive": archive, "method": header.method, "images": header.count, "chunks": len(header.chunks),
               "bytes": len(data), "bits_per_dim": 8 * len(data) / header.pixels if header.pixels else None}
    if as_json:
        click.echo(json.dumps({**summary, "entries": entries}, indent=2))
        return
    for e in entries:
        click.echo(f"{e['width']:>6d}x{e['height']:<6d} {e['format']:<8s} {e['name']}")
    bpd = f"{summary['bits_per_dim']:.4f}" if summary["bits_per_dim"] is not None else "-"
    click.echo(f"{header.count} images, {len(data)} bytes, {bpd} bits/dim ({header.method})")


@main.command()
@click.argument("archive")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model to compare with (default: the shipped one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def info(archive, model, as_json):
    """Show an archive's header: format, method, chunks, model, count, sizes, and bits per dimension."""
    from .codec import describe_range

    data, header = _read_header(archive, model)
    dims = header.pixels
    shapes = sorted({(h, w) for h, w, _ in header.sizes})
    bits_back = [c for c in header.chunks if c.method == "bits-back" and c.fields]
    hashes = sorted({c.fields["model_hash"] for c in bits_back})
    missing = [c.damage for c in header.chunks if c.unavailable]
    report = {
        "archive": archive, "format_version": header.version, "method": header.method,
        "coding_model": hashes[0] if len(hashes) == 1 else (hashes or None),
        "model_matches": (not missing) if hashes else None, "images": header.count,
        "shape": list(shapes[0]) if len(shapes) == 1 else None,
        "sizes": [list(s) for s in shapes[:20]], "pixels": dims,
        "bytes": len(data), "payload_bits": header.payload_bits, "chunks": len(header.chunks),
        "batches": sum(len(c.fields["batch_sizes"]) for c in bits_back),
        "names": header.names is not None, "formats": sorted(set(header.formats)) if header.formats else None,
        "unordered": header.unordered,
        **({"particles": bits_back[0].fields["particles"]} if bits_back else {}),
        **({"context_table": next(c.fields["table"] for c in header.chunks if "table" in c.fields)}
           if any("table" in c.fields for c in header.chunks) else {}),
        "bits_per_dim": 8 * len(data) / dims if dims else None,
    }
    if bits_back and not missing:   # the initial bits are a property of the coding model (none with a warm start)
        from .bitsback import initial_word_count
        from .codec import Codec
        known = Codec(model).models.coding_for(hashes[0])
        initial = sum(0 if c.fields["warm_images"] else 32 * initial_word_count(known, c.fields["particles"])
                      for c in bits_back)
        report.update(initial_bits=initial, warm_start_images=sum(c.fields["warm_images"] for c in bits_back),
                      net_bits_per_dim=(header.payload_bits - initial) / dims)
    report["chunk_table"] = [{"images": describe_range(c.images), "method": c.method, "payload_bytes": len(c.payload),
                              **({"damage": c.damage} if c.damage else {})} for c in header.chunks]
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = report.pop("chunk_table")
    for key, value in report.items():
        click.echo(f"{key:<18s}{value:.4f}" if isinstance(value, float) else f"{key:<18s}{value}")
    if len(table) > 1 or any("damage" in row for row in table):
        for number, row in enumerate(table, 1):
            click.echo(f"  chunk {number:<6d}{row['images']:<22s}{row['method']:<10s}{row['payload_bytes']:>10d} bytes"
                       + (f"  DAMAGED: {row['damage']}" if "damage" in row else ""))


@main.command()
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
@click.option("--iw-limit", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Images used for the IW estimate (it costs k forward passes per image).")
@click.option("--code/--no-code", default=True, show_default=True,
              help="Also run the real coder: coding-model -ELBO, coded rate net and total, decode check.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bpd(model_path, data_path, data_dir, limit, iw_samples, particles, iw_limit, code, threads, as_json, quiet):
    """Model -ELBO, IW log-likelihood and real coded rate, in nats/image and bits/dim."""
    import torch

    from .checkpoint import load_model, resolve_model
    from .data import fixed_test_set, load_mnist
    from .evaluate import evaluate
    from .images import read_npy

    if threads:
        torch.set_num_threads(threads)
    if data_path is not None:
        images = read_npy(data_path)
        if images.shape[1:] != (28, 28):
            raise InputError(f"{data_path}: expected shape (N, 28, 28) for bpd, got {images.shape}")
        images, source = images.reshape(-1, 784), str(data_path)
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
        from .evaluate import coded_rates
        result["coding"] = coded_rates(model_path, model, images, particles,
                                       progress=lambda total, desc: _progress(total, desc, quiet))
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
        if particles > 1:
            row(f"IW-{particles} (coding model)", c["iw_nats"], c["iw_bpd"])
        row(f"coded rate, net, K={particles}", c["net_nats"], c["net_bpd"])
        row("coded rate, total", c["total_nats"], c["total_bpd"])
        click.echo(f"{'net / coding bound':<22s}{c['net_over_bound']:.4f}   decoded bit-exactly: "
                   f"{c['bit_exact']}   encode {c['encode_images_per_s']:.0f} img/s, "
                   f"decode {c['decode_images_per_s']:.0f} img/s")
    click.echo(f"{'KL per layer (nats)':<22s}" + " ".join(f"{v:.2f}" for v in result["kl_per_layer_nats"]))


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
    from .checkpoint import export_weights, load_model
    from .coding_model import save_coding_model
    from .export import export_coding_model

    coding = output.with_name(output.name.removesuffix(".pt") + ".coding.npz")
    for path in (output, coding):
        if path.exists() and not force:
            raise InputError(f"{path}: already exists (use -f to overwrite)")
    export_weights(checkpoint, output)
    digest = save_coding_model(export_coding_model(load_model(output), bucket_bits, source=output.name), coding)
    click.echo(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")
    click.echo(f"wrote {coding} ({os.path.getsize(coding) / 1e6:.1f} MB, coding model {digest[:16]})")



@main.command()
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
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def train(data, output, tile, preset, epochs, max_minutes, valid_spec, threads, device, seed, learning_rate, batch_size,
          init_spec, run_dir, install_name, force, quiet):
    """Train a SeRe-VAE on your own bilevel images and export its coding model.

    DATA: .npy arrays (N, H, W) of 0/1 or grey levels (read as Bernoulli probabilities and
    binarized afresh each epoch), directories of image files, or IDX files."""
    from .data import binarize_fixed
    from .model import PRESETS, ModelConfig
    from .trainer import TrainConfig, train as run_training
    from .userdata import parse_tile, read_training_images, split_valid, to_tile_probabilities

    out = Path(output)
    if out.suffix != ".pt":
        raise InputError(f"{out}: the model file must end in .pt")
    coding = out.with_name(out.name[:-3] + ".coding.npz")
    for path in (out, coding):
        _refuse_existing(path, force)
    height, width = parse_tile(tile)
    if preset == "resnet" and (height % 4 or width % 4):
        raise InputError(f"--tile {tile}: the resnet preset halves the tile twice, so its sides must be "
                         f"divisible by 4")
    tiles = to_tile_probabilities(read_training_images(list(data)), (height, width))
    try:
        fraction = float(valid_spec)
        if not 0 < fraction < 1:
            raise InputError(f"--valid {valid_spec}: a fraction must lie strictly between 0 and 1")
        train_tiles, valid_tiles = split_valid(tiles, fraction, seed)
    except ValueError:
        train_tiles = tiles
        valid_tiles = to_tile_probabilities(read_training_images([valid_spec]), (height, width))
    valid_bits = binarize_fixed(valid_tiles, seed=1)
    model_cfg = ModelConfig(image_pixels=height * width, tile_height=height, tile_width=width, **PRESETS[preset])
    init = _initial_weights(init_spec, model_cfg)
    budget = _budget_epochs(epochs, max_minutes, len(train_tiles), 200 if preset == "resnet" else 2000)
    warmup = {"warmup_levels": 0} if init else (
        {"warmup_levels": 0, "warmup_linear_epochs": 0.256 * budget} if preset == "resnet"   # appendix 8: 256 of 1000
        else {"warmup_levels": 10, "warmup_unit": min(1.0, budget / 4 / 1023)})             # a quarter of the budget
    cfg = TrainConfig(epochs=epochs, max_minutes=max_minutes, learning_rate=learning_rate,
                      time_cooldown=0.4 if max_minutes else 0.0, init_weights=str(init or ""), **warmup,
                      l2=0.0 if preset == "resnet" else 1e-5, threads=threads or 0, device=device, seed=seed,
                      valid_limit=min(len(valid_bits), 5000), batch_size=min(batch_size, max(8, len(train_tiles) // 4)))
    run_path = Path(run_dir) if run_dir else out.with_name(out.name[:-3] + ".run")
    if not quiet:
        click.echo(f"training on {len(train_tiles)} tiles of {height}x{width} ({preset} preset), "
                   f"validating on {len(valid_bits)}; run directory {run_path}"
                   + (f"; starting from {init.name}" if init else ""), err=True)
    bar = _training_bar(epochs, max_minutes, quiet)
    with bar:
        run_training(model_cfg, cfg, train_tiles, valid_bits, run_path, log=lambda msg: None,
                     on_epoch=lambda record: _advance(bar, record, max_minutes))
    _export(run_path / "checkpoint.pt", out, coding)
    summary = _validation_rates(coding, valid_bits, (height, width))
    from .registry import write_card
    write_card(coding, valid_bits_per_dim=summary["bits-back"], tiles_trained=len(train_tiles), preset=preset)
    if install_name:
        from .registry import install
        click.echo(f"installed as {install_name}: {install(out, install_name, force)}", err=True)
    if not quiet:
        click.echo(f"wrote {out} and {coding}", err=True)
        click.echo("validation bits/dim: " + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()), err=True)


def _initial_weights(spec: str, model_cfg) -> "Path | None":
    """The weight file a run starts from (``auto``: the shipped default when it has this architecture)."""
    from .checkpoint import load_model
    from .registry import resolve_weights
    if spec == "none":
        return None
    path = resolve_weights(None if spec == "auto" else spec)
    import dataclasses
    other = load_model(path).config
    if (dataclasses.replace(other, tile_height=0, tile_width=0) != dataclasses.replace(model_cfg, tile_height=0, tile_width=0)
            or other.tile_shape != model_cfg.tile_shape):
        if spec == "auto":
            return None
        raise InputError(f"--init {spec}: its architecture or tile size differs from the model being trained")
    return path


def _budget_epochs(epochs: int, max_minutes: float, tiles: int, tiles_per_s: float) -> float:
    """The epochs a run will get: ``epochs``, or those that fit the time at a CPU core's pace."""
    if not max_minutes:
        return epochs
    return min(epochs, max(8, int(max_minutes * 60 * tiles_per_s / max(tiles, 1))))


def _training_bar(epochs: int, max_minutes: float, quiet: bool):
    from tqdm import tqdm
    total, unit = (max_minutes * 60, "s") if max_minutes else (epochs, "epoch")
    return tqdm(total=total, unit=unit, desc="train", disable=quiet or not sys.stderr.isatty(), file=sys.stderr,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]{postfix}")


def _advance(bar, record: dict, max_minutes: float) -> None:
    bar.set_postfix_str(f"valid -ELBO {-record['valid_elbo']:.2f} nats")
    bar.update(record["seconds"] if max_minutes else 1)


def _export(checkpoint: Path, out: Path, coding: Path) -> None:
    from .checkpoint import export_weights, load_model
    from .coding_model import save_coding_model
    from .export import export_coding_model
    export_weights(checkpoint, out)
    save_coding_model(export_coding_model(load_model(out), source=out.name), coding)


def _validation_rates(coding: Path, images: np.ndarray, tile: tuple) -> dict:
    """Bits/dim of the whole validation set as one archive, per method."""
    from .codec import Codec
    codec = Codec(str(coding))
    squares = images.reshape(-1, *tile).astype(np.uint8)
    rates = {}
    for method in ("bits-back", "adaptive", "deflate"):
        data = codec.compress(squares, method=method)
        rates[method] = 8 * len(data) / squares.size
    return rates


@main.command(name="models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@friendly_errors
def list_models(as_json):
    """List the shipped and installed coding models (name, tile, hash, size, bits/dim)."""
    from .registry import models, user_models_dir
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


if __name__ == "__main__":
    main()
