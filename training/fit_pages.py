#!/usr/bin/env python
"""Fit the page model's starting states (serecodec/models/{documents,halftones}.pages.npz).

A state is the model's own online learning run over training pages of the document corpus
(``benchmarks/documents.py build``; the train split only, never held-out) in a fixed
interleaved order: the context probabilities (and the APM) then hold what those pages taught.
Counts are capped afterwards (``cap``), so a fitted context is a first guess that a new page
overrides at once. Two profiles, because text statistics hurt halftones (and the other way):
the encoder codes a sample with each and keeps the smaller (``page_model.choose``). A third,
fitted on the scans alone, codes the held-out scans 1.6% smaller than the documents state.

``--validate`` fits on four fifths of the training sources and reports bytes on the other fifth
against the untrained state; the profiles below were chosen with it (cap 1 vs 2 vs 4 vs 12;
which models and whether APM and mixer weights are kept: kept mixer weights cost 4-37%).

    python training/fit_pages.py [--corpus DIR] [--profile documents|halftones|scans] [-o FILE]
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import click
import numpy as np
from PIL import Image

from serecodec.data import default_cache_dir
from serecodec.inputs import background_is_one, with_polarity
from serecodec.page_fit import PROFILES, coded_bytes, fitted_state, learn
from serecodec.page_model import fresh_state, save_state, state_path


def load_page(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path)).astype(np.uint8)
    return with_polarity([image], background_is_one([image]))[0]        # ink = 1, as the codec codes it


def interleaved(entries: list) -> list:
    """Entries in a fixed order in which the categories alternate."""
    by_category: dict = {}
    for entry in sorted(entries, key=lambda e: hashlib.sha256(e["path"].encode()).hexdigest()):
        by_category.setdefault(entry["category"], []).append(entry)
    out, queues = [], list(by_category.values())
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop())
    return out


def _progress(total: int):
    if not sys.stderr.isatty():
        return None
    return lambda n: print(f"\rfitted {n + 1}/{total} pages", end="\n" if n + 1 == total else "", file=sys.stderr)


@click.command()
@click.option("--corpus", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The document corpus (default: the serecodec cache's documents/).")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="documents", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Default: serecodec/models/PROFILE.pages.npz.")
@click.option("--validate", is_flag=True, help="Fit on 4/5 of the training sources, report bytes on the rest.")
def main(corpus, profile, output, validate):
    corpus = corpus or default_cache_dir() / "documents"
    settings = PROFILES[profile]
    manifest = json.loads((corpus / "manifest.json").read_text())
    train = [e for e in manifest if e["split"] == "train" and e["category"] in settings["categories"]]
    if validate:
        check = [e for e in train if int(hashlib.sha256(e["source"].encode()).hexdigest(), 16) % 5 == 1]
        train = [e for e in train if e not in check]
    entries = interleaved(train)
    learned = fresh_state()
    learn(learned, (load_page(corpus / e["path"]) for e in entries), _progress(len(entries)))
    state = fitted_state(learned, settings)
    if validate:
        for category in settings["categories"]:
            images = [load_page(corpus / e["path"]) for e in check if e["category"] == category]
            fresh, fitted = coded_bytes(fresh_state(), images), coded_bytes(state, images)
            click.echo(f"{category}: {len(images)} pages, untrained {fresh:,} bytes, fitted {fitted:,} "
                       f"({fitted / fresh:.3f})")
        return
    output = output or state_path(profile)
    click.echo(f"wrote {output}: state {save_state(state, output)} from {len(entries)} training pages")


if __name__ == "__main__":
    main()
