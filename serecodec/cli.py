"""The ``serecodec`` command: compress, decompress, test, list, info (here), and bpd, export,
train, models (``cli_models``).

gzip/zstd habits: ``-`` is stdin, ``-c`` / ``-o -`` is stdout, ``compress FILE`` writes
``FILE.sere``, nothing is overwritten without ``-f``, an output never replaces an input, every
expected failure is one line on stderr naming the file with exit status 1, Ctrl-C exits 130.
Decoding imports neither torch nor matplotlib. The commands parse and report; what they do
lives in the library (``Codec``, ``images``, ``user_training``).
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click
import numpy as np

from . import cli_models
from .cli_support import (SUFFIX, cores, friendly_errors, read_input_bytes, refuse_existing, same_file,
                          write_stdout)
from .progress import progress_bar
from .bitsback import initial_word_count
from .codec import METHOD_CHOICES, Codec, as_images, default_workers, describe_range
from .errors import ArchiveError, InputError, SerecodecError
from .fileio import atomic_write_bytes, safe_output_paths, write_inside
from .images import SUFFIX_OF_FORMAT, collect_inputs, encode_image, encode_pages, npy_array, npy_groups


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="serecodec")
def main():
    """Learned lossless codec for bilevel images (SeRe-VAE + bits-back ANS)."""


@click.command()
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", default=None, help="Archive to write ('-': stdout). Default: INPUT.sere for one input.")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write the archive to stdout.")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Binarize grey/colour input at this level (0..1). Lossy.")
@click.option("--method", type=click.Choice(list(METHOD_CHOICES)), default="auto",
              show_default=True, help="auto keeps, chunk by chunk, the smallest of bits-back (learned model), the "
                                      "page model, the adaptive context model, lzma (halftones), the static digit "
                                      "model and deflate.")
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
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Chunks coded at once, each in a worker process that checks its own chunks (default: "
                   "every core); the archive is the same for any count.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--skip-other", is_flag=True, help="Leave out files of input directories that are not images "
                                                 "(each named in a warning); without it they stop the run.")
@click.option("-v", "--verbose", is_flag=True, help="Per chunk: the method kept, its size, and what the others "
                                                    "came to (or why they were not tried).")
@friendly_errors
def compress(inputs, output, to_stdout, model, threshold, method, no_names, unordered, particles, no_verify, force, keep,
             threads, skip_other, quiet, verbose):
    """Compress image files (any size), directories of them, .npy arrays (N, H, W) of 0/1, or '-'
    (stdin) into one archive."""

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
        refuse_existing(out_path, force)
        for given in inputs:
            if given != "-" and (same_file(out_path, Path(given)) or out_path.resolve() == Path(given).resolve()):
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
    codec = Codec(model, particles=particles, workers=threads or default_workers(cores(), not no_verify))
    report: list = []
    with progress_bar(len(images), "compress", quiet) as bar:
        data = codec.compress(images, names, progress=bar.update, method=method,
                              formats=None if only_arrays and not arrays else formats, ordered=not unordered,
                              verify=not no_verify, report=report, arrays=arrays or None,
                              headers=None if unordered else found.headers,
                              pages=None if unordered or no_names else found.pages)
    if out_path is None:
        write_stdout(data)
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


@click.command()
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
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Chunks decoded at once (default: every core).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@friendly_errors
def decompress(archive, output, to_stdout, as_npy, model, force, keep, salvage, threads, quiet):
    """Restore every image of an archive bit-exactly, each in its original file format under its
    stored name (PNG where the archive records none), or as one array with --npy."""

    data = read_input_bytes(archive)
    codec = Codec(model, workers=threads or cores())
    header = _parse(codec, archive, data)
    lost = []
    with progress_bar(header.count, "decompress", quiet) as bar:
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
            write_stdout(blob)
            return
        target = Path(output) if output else _default_target(archive, header.count).with_suffix(suffix)
        refuse_existing(target, force)
        _refuse_archive(target, archive)
        atomic_write_bytes(target, blob)
        written = target
    else:
        files = _output_files(header, kept, images, formats, names)
        if output == "-":
            if len(files) != 1:
                raise InputError(f"{archive}: holds {header.count} images in {len(files)} files; only one file goes "
                                 f"to stdout (or use --npy -c)")
            write_stdout(files[0][1])
            return
        if len(files) == 1 and not lost and (output is None or not Path(output).is_dir()):
            target = Path(output) if output else _default_target(archive, 1)
            refuse_existing(target, force)
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
                refuse_existing(outdir / rel, force)
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
    position = {index: n for n, index in enumerate(kept)}
    files, done = [], set()
    arrays = list(header.arrays or [])
    for (start, end), source in zip(npy_groups(header.names, header.formats, header.count), arrays):
        if all(i in position for i in range(start, end)):
            buffer = io.BytesIO()
            np.save(buffer, npy_array([images[position[i]] for i in range(start, end)], *source))
            files.append((header.names[start] + ".npy", buffer.getvalue()))
            done.update(range(start, end))
    for first, end in header.pages or []:           # a multi-page file whole, when every page survived
        if all(i in position for i in range(first, end)):
            files.append((names[position[first]] + SUFFIX_OF_FORMAT[formats[position[first]]],
                          encode_pages([images[position[i]] for i in range(first, end)],
                                       [formats[position[i]] for i in range(first, end)])))
            done.update(range(first, end))
    for n, index in enumerate(kept):
        if index not in done:
            file_header = header.headers[index] if header.headers else b""
            name = names[n] if formats[n] != "npy" or not arrays else f"{names[n]}_{index:05d}"
            files.append((name + SUFFIX_OF_FORMAT[formats[n]], encode_image(images[n], formats[n], file_header)))
    return files


def _refuse_archive(target: Path, archive: str) -> None:
    if archive != "-" and (same_file(target, Path(archive)) or target.resolve() == Path(archive).resolve()):
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


@click.command(name="test")
@click.argument("archives", nargs=-1, required=True)
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model (default: the shipped one).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Chunks decoded at once (default: every core).")
@click.option("-q", "--quiet", is_flag=True, help="Only the exit status tells.")
@friendly_errors
def test_archives(archives, model, threads, quiet):
    """Decode every archive and verify its checksums; write nothing. Names each damaged chunk and
    its images. Exit 1 if any fails."""

    codec, failed = Codec(model, workers=threads or cores()), 0
    for archive in archives:
        try:
            header = _parse(codec, archive, read_input_bytes(archive))
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
    data = read_input_bytes(archive)
    header = _parse(Codec(model), archive, data)
    for number, chunk in enumerate(header.chunks, 1):
        if chunk.damage and not chunk.unavailable:
            where = f"chunk {number} of {len(header.chunks)} ({describe_range(chunk.images)}): " \
                if len(header.chunks) > 1 else ""
            raise ArchiveError(f"{archive}: {where}{chunk.damage} (decompress --salvage restores the rest)")
    return data, header


@click.command(name="list")
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
    for first, end in header.pages or []:                   # the pages of one multi-page file
        for i in range(first, end):
            entries[i]["page"], entries[i]["pages"] = i - first + 1, end - first
    summary = {"archive": archive, "method": header.method, "images": header.count, "chunks": len(header.chunks),
               "bytes": len(data), "bits_per_dim": 8 * len(data) / header.pixels if header.pixels else None}
    if as_json:
        click.echo(json.dumps({**summary, "entries": entries}, indent=2))
        return
    for e in entries:
        page = f"  (page {e['page']} of {e['pages']})" if "page" in e else ""
        click.echo(f"{e['width']:>6d}x{e['height']:<6d} {e['format']:<8s} {e['name']}{page}")
    bpd = f"{summary['bits_per_dim']:.4f}" if summary["bits_per_dim"] is not None else "-"
    click.echo(f"{header.count} images, {len(data)} bytes, {bpd} bits/dim ({header.method})")


@click.command()
@click.argument("archive")
@click.option("--model", default=None, metavar="NAME|PATH", help="Coding model to compare with (default: the shipped one).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@friendly_errors
def info(archive, model, as_json):
    """Show an archive's header: format, method, chunks, model, count, sizes, and bits per dimension."""

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


for _command in (compress, decompress, test_archives, list_archive, info, cli_models.bpd, cli_models.export,
                 cli_models.train, cli_models.list_models):
    main.add_command(_command)

if __name__ == "__main__":
    main()
