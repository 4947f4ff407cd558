#!/usr/bin/env python
"""Fuzz the decoders: mutate archives of every kind and count what happens.

Each mutant (bit flips, byte overwrites, truncation, insertion, deletion, huge varints, splices)
is decoded twice through the API: as mutated, and with its archive checksum re-sealed (what a
hostile file would carry, so the parser and the payload decoders are reached). Every outcome
must be a clean ``SerecodecError`` or the original images with their original names and
formats; anything else is counted as a traceback, a silently wrong output, or (above
``--slow-seconds``) a hang. Format 2 put no checksum over names: a mutant whose pixels verify
but whose names changed is counted apart ("unverified-names"; ``decompress`` warns about such
archives), not as intact. ``--cli`` also runs mutants through ``serecodec decompress``.

    python benchmarks/fuzz.py --mutants 100000          # writes results/fuzz.json
"""
from __future__ import annotations

import json
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serecodec.codec import Codec                     # noqa: E402
from serecodec.data import load_fixture               # noqa: E402
from serecodec.errors import SerecodecError           # noqa: E402


def old_version(archive_bytes: bytes, codec: Codec, version: int, crc_flip: int = 0) -> bytes:
    """Re-write a one-size format-3 archive (initial words, no warm start) in the format-1/2
    layout, as earlier releases wrote it; ``crc_flip`` corrupts the stored pixel CRC."""
    import struct

    from serecodec.container.wire import raw_deflate, run_lengths, varints
    archive = codec.read(archive_bytes)
    (chunk,) = archive.chunks
    a = _OneChunk(archive, chunk)
    images = codec.decompress(archive_bytes)
    crc = (zlib.crc32(np.ascontiguousarray(images).tobytes()) & 0xFFFFFFFF) ^ crc_flip
    deflate = a.method == "deflate"
    flags = (1 if a.names is not None else 0) | (2 if deflate else 0)
    if version == 1:
        sizes = zlib.compress(np.asarray(a.batch_sizes, dtype="<u2").tobytes(), 9)
        parts = [struct.pack("<4sBB32sIHHII", b"SeRe", 1, flags, bytes.fromhex(codec.model.hash), a.count,
                             a.height, a.width, crc, len(a.batch_sizes)), struct.pack("<I", len(sizes)), sizes]
        if a.names is not None:
            blob = zlib.compress(json.dumps(a.names).encode(), 9)
            parts += [struct.pack("<I", len(blob)), blob]
        return b"".join(parts + [struct.pack("<I", len(a.payload) // (1 if deflate else 4)), a.payload])
    parts = [b"SeRe", bytes([2, flags])] + ([] if deflate else [bytes.fromhex(codec.model.hash)[:16]])
    parts += [varints(a.count, a.height, a.width), struct.pack("<I", crc)]
    if not deflate:
        runs = run_lengths(a.batch_sizes)
        parts.append(varints(len(runs), *(v for run in runs for v in run)))
    if a.names is not None:
        blob = raw_deflate(json.dumps(a.names).encode())
        parts += [varints(len(blob)), blob]
    return b"".join(parts + [varints(len(a.payload) // (1 if deflate else 4)), a.payload])


class _OneChunk:
    """The fields of a one-chunk archive as the format-1/2 writer wants them."""

    def __init__(self, archive, chunk) -> None:
        self.names, self.count, self.payload = archive.names, archive.count, chunk.payload
        self.height, self.width = archive.shapes[0]
        self.method, self.batch_sizes = chunk.method, chunk.fields.get("batch_sizes", [])


def _halftone(rng) -> np.ndarray:
    """A small ordered-dither halftone (the page model's period pixel and halftone state in play)."""
    grey = np.add.outer(np.linspace(0, 1, 48), np.linspace(0, 0.5, 64)) / 1.5 + rng.normal(0, 0.05, (48, 64))
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]])
    return (grey > (np.tile(bayer, (12, 16)) + 0.5) / 16).astype(np.uint8)


def corpus(codec: Codec) -> dict:
    """{kind: (archive bytes, images, names, formats)} covering every method, size mix and version."""
    digits = load_fixture().reshape(-1, 28, 28)
    rng = np.random.default_rng(0)
    mixed = [np.ones((1, 1), np.uint8), digits[0], rng.integers(0, 2, (27, 29)).astype(np.uint8),
             np.zeros((3, 57), np.uint8), digits[1][:20, :11]]
    cases = {
        "bits-back-1": (digits[:1], None, None, "bits-back"),
        "bits-back-warm-40": (digits[:40], None, None, "bits-back"),
        "bits-back-unordered": (digits[:12], None, None, "bits-back-unordered"),
        "bits-back-many-names": (digits[:6], [f"d/{i}" for i in range(6)], ["png"] * 3 + ["pbm"] * 3, "bits-back"),
        "bits-back-mixed": (mixed[:3], None, None, "bits-back"),
        "bits-back-particles-3": (digits[:16], None, None, "bits-back-particles"),
        "pixel-bits-back-warm-40": (digits[:40], None, None, "pixel-bits-back"),     # raster-order pops
        "pixel-bits-back-mixed": (mixed[:3], None, None, "pixel-bits-back"),         # padded tiles
        "adaptive-1": (digits[:1], ["one"], ["tiff-g4"], "adaptive"),
        "adaptive-mixed-names": (mixed, list("abcde"), None, "adaptive"),
        "context-many": (digits[:8], None, None, "context"),
        "deflate-1": (digits[:1], None, None, "deflate"),
        "lzma-mixed": (mixed, None, None, "lzma"),
        "pages-mixed": (mixed, None, None, "pages"),
        "pages-halftone": ([_halftone(rng)], ["h"], None, "pages"),
        "pages-multipage": (mixed[1:4], ["fax"] * 3, ["tiff-g4"] * 3, "pages-multipage"),
        "deflate-mixed-names": (mixed, ["x", "y", "z", "w", "v"], ["png", "gif", "bmp", "webp", "pgm"], "deflate"),
    }
    out = {}
    for kind, (images, names, formats, method) in cases.items():
        if method == "bits-back-unordered":
            data = codec.compress(images, method="bits-back", ordered=False)
            images = codec.decompress(data)                   # restored in canonical order
        elif method == "pages-multipage":                    # the pages of one file (header flag bit 6)
            data = codec.compress(images, names=names, formats=formats, method="pages", pages=[(0, len(images))])
        elif method == "bits-back-particles":
            data = Codec(codec.model, particles=3).compress(images, method="bits-back")
        elif method == "pixel-bits-back":                    # the shipped pixel-regressive model
            data = Codec("pixel").compress(images, method="bits-back")
        else:
            data = codec.compress(images, names=names, formats=formats, method=method)
        out[kind] = (data, images, names, formats)
    cold = Codec(codec.model, warm_start=False)          # formats 1-2 knew only initial words
    for version in (1, 2):
        for kind in ("bits-back-many-names", "deflate-1"):
            images, names, formats, method = cases[kind]
            data = old_version(cold.compress(images, names=names, method=method), cold, version)
            out[f"v{version}-{kind}"] = (data, out[kind][1], out[kind][2], None)
    chunked = Codec(codec.model, chunk_pixels=20 * 784)  # format 4 with several chunks, cheaply
    out["chunks-bits-back"] = (chunked.compress(digits[:50], method="bits-back"), digits[:50], None, None)
    varied = [digits[i] for i in range(25)] + [mixed[2], mixed[3]] + [np.zeros((28, 28), np.uint8)] * 25
    out["chunks-auto-named"] = (chunked.compress(varied, names=[f"n{i}" for i in range(len(varied))]), varied,
                                [f"n{i}" for i in range(len(varied))], None)
    out.update(legacy_fixtures())
    return out


def legacy_fixtures() -> dict:
    """Format-3 archives written by the release before format 4 (tests/data/legacy), with what
    they decoded to then."""
    folder = ROOT / "tests" / "data" / "legacy"
    meta = json.loads((folder / "expected.json").read_text())
    pixels = np.load(folder / "expected.npz")
    out = {}
    for kind, m in meta.items():
        if m["version"] != 3:
            continue
        images = [pixels[f"{kind}/{i}"] for i in range(m["count"])]
        out[f"v3-{kind}"] = ((folder / f"{kind}.sere").read_bytes(), images, m["names"], m["formats"])
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = int(rng.integers(8))
    if kind == 0:                                   # flip 1-4 bits
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(len(buf)))
            buf[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:                                 # overwrite a byte
        buf[int(rng.integers(len(buf)))] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
    elif kind == 2:                                 # truncate
        buf = buf[:int(rng.integers(len(buf)))]
    elif kind == 3:                                 # insert random bytes
        pos = int(rng.integers(len(buf) + 1))
        buf[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
    elif kind == 4:                                 # delete a run
        pos = int(rng.integers(len(buf)))
        del buf[pos:pos + int(rng.integers(1, 9))]
    elif kind == 5:                                 # a huge varint somewhere in the header
        pos = int(rng.integers(4, min(len(buf), 48)))
        buf[pos:pos + 1] = bytes([0xFF] * int(rng.integers(1, 9)) + [int(rng.integers(1, 128))])
    elif kind == 6:                                 # duplicate a chunk
        a = int(rng.integers(len(buf)))
        chunk = buf[a:a + int(rng.integers(1, 33))]
        pos = int(rng.integers(len(buf) + 1))
        buf[pos:pos] = chunk
    else:                                           # random bytes over a span
        a = int(rng.integers(len(buf)))
        n = min(len(buf) - a, int(rng.integers(1, 17)))
        buf[a:a + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(buf)


def reseal(data: bytes) -> bytes:
    """``data`` with its checksums over stored bytes recomputed (format 3: the archive checksum;
    format 4: the header's and every chunk's): what a hostile file would carry. The checksums of
    what decoding restores cannot be forged without decoding, and are left alone."""
    if len(data) < 9 or data[4] not in (3, 4):
        return data
    crc = lambda part: (zlib.crc32(part) & 0xFFFFFFFF).to_bytes(4, "little")  # noqa: E731
    if data[4] == 3:
        return data[:-4] + crc(data[:-4])
    from serecodec.container.wire import Reader
    from serecodec.container.archive import parse_header
    try:
        reader = Reader(data[6:16])
        end = 6 + reader.varint("header")
        end += reader.pos
    except SerecodecError:
        return data
    if end + 4 > len(data):
        return data
    buf = bytearray(data)
    buf[end:end + 4] = crc(buf[:end])
    try:
        _, spans = parse_header(bytes(buf))
    except SerecodecError:
        return bytes(buf)
    for start, stop in spans:
        if stop > len(buf):
            break
        buf[stop - 4:stop] = crc(buf[start:stop - 4])
    return bytes(buf)


def same(decoded, images) -> bool:
    if len(decoded) != len(images):
        return False
    return all(np.array_equal(a, b) for a, b in zip(decoded, images))


def check(codec: Codec, data: bytes, expected) -> str:
    """One of: rejected, intact, wrong, traceback:<type>."""
    _, images, names, formats = expected
    try:
        archive = codec.read(data)
        decoded = codec.decompress_archive(archive)
    except SerecodecError:
        return "rejected"
    except Exception as exc:   # anything else is a bug the fuzzer exists to find
        return f"traceback:{type(exc).__name__}:{str(exc)[:80]}"
    try:
        rescued = codec.salvage(data)
    except SerecodecError:
        rescued = None
    except Exception as exc:
        return f"traceback:salvage:{type(exc).__name__}:{str(exc)[:80]}"
    if rescued is not None and any(got is not None and (i >= len(images) or not np.array_equal(got, images[i]))
                                   for i, got in enumerate(rescued.images)):
        return "wrong:salvage"
    if same(decoded, images) and archive.names == names and (archive.formats or None) == (formats or None):
        return "intact"
    if same(decoded, images) and not archive.names_verified:
        return "unverified-names"      # format 2 has no checksum over names; decompress warns about it
    return "wrong"


def run(codec: Codec, mutants: int, seed: int, slow_seconds: float, progress=None) -> dict:
    rng = np.random.default_rng(seed)
    cases = corpus(codec)
    tally: dict = {kind: Counter() for kind in cases}
    slowest = 0.0
    examples: list = []
    for i in range(mutants):
        kind = list(cases)[i % len(cases)]
        data = mutate(cases[kind][0], rng)
        for variant in {data, reseal(data)}:
            tic = time.perf_counter()
            outcome = check(codec, variant, cases[kind])
            took = time.perf_counter() - tic
            slowest = max(slowest, took)
            if took > slow_seconds:
                outcome = "hang"
            tally[kind][outcome.split(":")[0]] += 1
            if outcome not in ("rejected", "intact", "unverified-names") and len(examples) < 20:
                examples.append({"kind": kind, "outcome": outcome, "hex": variant.hex()[:400]})
        if progress:
            progress(1)
    totals = Counter()
    for counts in tally.values():
        totals.update(counts)
    return {"mutants": mutants, "seed": seed, "decodes": sum(totals.values()), "totals": dict(totals),
            "per_kind": {k: dict(v) for k, v in tally.items()}, "slowest_seconds": slowest,
            "failures": sum(v for k, v in totals.items() if k not in ("rejected", "intact", "unverified-names")),
            "examples": examples}


def run_cli(cases: dict, count: int, seed: int, workdir: Path) -> dict:
    """Mutants through ``serecodec decompress``: exit 0 with intact files, or exit 1 with one line."""
    from click.testing import CliRunner

    from serecodec.cli import main
    rng = np.random.default_rng(seed)
    tally = Counter()
    for i in range(count):
        kind = list(cases)[i % len(cases)]
        data = reseal(mutate(cases[kind][0], rng)) if i % 2 else mutate(cases[kind][0], rng)
        path = workdir / f"m{i}.sere"
        path.write_bytes(data)
        result = CliRunner().invoke(main, ["decompress", str(path), "--npy", "-o", str(workdir / f"m{i}.out"), "-q"])
        lines = [line for line in result.output.splitlines() if line.strip()]
        if result.exit_code == 1 and len(lines) == 1 and str(path) in lines[0]:
            tally["rejected"] += 1
        elif result.exit_code == 0:
            tally["intact"] += 1
        else:
            tally[f"bad-exit-{result.exit_code}"] += 1
    return dict(tally)


@click.command()
@click.option("--mutants", type=int, default=100000, show_default=True, help="Mutants (each decoded raw and re-sealed).")
@click.option("--cli-mutants", type=int, default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--slow-seconds", type=float, default=5.0, show_default=True, help="A decode slower than this is a hang.")
@click.option("--quick", is_flag=True, help="2,000 mutants, 60 through the CLI.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(mutants, cli_mutants, seed, slow_seconds, quick, out_dir):
    import tempfile

    from tqdm import tqdm
    if quick:
        mutants, cli_mutants = 2000, 60
    codec = Codec()
    with tqdm(total=mutants, desc="fuzz", disable=not sys.stderr.isatty()) as bar:
        report = run(codec, mutants, seed, slow_seconds, bar.update)
    with tempfile.TemporaryDirectory() as tmp:
        report["cli"] = run_cli(corpus(codec), cli_mutants, seed + 1, Path(tmp))
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "fuzz_quick" if quick else "fuzz"
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    click.echo(json.dumps({k: report[k] for k in ("mutants", "decodes", "totals", "failures", "slowest_seconds", "cli")}))
    sys.exit(1 if report["failures"] or set(report["cli"]) - {"rejected", "intact"} else 0)


if __name__ == "__main__":
    main()
