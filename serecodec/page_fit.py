"""Fitting the page model's starting state: the model's own online learning run over training
pages, then the parts a profile keeps, with counts capped so a new page overrides them at once.
Used by ``training/fit_pages.py`` (the shipped states, on the document corpus) and by
``serecodec train --page-model`` (a user's pages)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from .page_model import RUN_MODELS, PageModel, PageState, bases, find_period, fresh_state, run, run_bases, save_state
from .page_tables import STATE_BITS

# Chosen by ``training/fit_pages.py --validate`` on a fifth of the corpus's training sources.
PROFILES = {
    "documents": {"categories": ("text", "scans"), "models": (0, 1, 2, 3), "apm": True, "apm2": True, "cap": 1},
    "scans": {"categories": ("scans",), "models": (0, 1, 2, 3), "apm": True, "apm2": True, "cap": 1},
    "halftones": {"categories": ("halftones",), "models": (0, 1, 2, 3, 4), "apm": False, "apm2": True, "cap": 2},
}


def learn(state: PageState, images: Iterable[np.ndarray], progress: Optional[Callable[[int], None]] = None) -> None:
    """Run the model over ``images`` (ink = 1) one at a time, carrying ``state`` (updated in place)."""
    for n, image in enumerate(images):
        pixels = np.ascontiguousarray(image, np.uint8).reshape(-1)
        run(state, False, pixels, np.array([image.shape[0]]), np.array([image.shape[1]]), np.zeros(0, np.uint8),
            find_period(image))
        if progress:
            progress(n)


def fitted_state(learned: PageState, profile: dict) -> PageState:
    """The fresh state with the profile's parts taken from ``learned``, counts capped."""
    state, edges = fresh_state(learned.layout), bases()
    for m in profile["models"]:
        state.tables[edges[m]:edges[m + 1]] = learned.tables[edges[m]:edges[m + 1]]
    state.tables[edges[-1]:] = learned.tables[edges[-1]:]        # the row-repeat flag, the run maps' tables
    run_edges = run_bases()
    for r, m in enumerate(RUN_MODELS):
        if m in profile["models"]:
            state.runs[run_edges[r]:run_edges[r + 1]] = learned.runs[run_edges[r]:run_edges[r + 1]]
    if profile["apm"]:
        state.apm[:] = learned.apm
    if profile.get("apm2") and state.layered:
        state.apm2[:] = learned.apm2
    counts = state.tables & np.uint32((1 << STATE_BITS) - 1)
    state.tables = state.tables - counts + np.minimum(counts, np.uint32(profile["cap"]))
    return state


def fit(images: Iterable[np.ndarray], profile: str = "documents", progress=None) -> PageState:
    learned = fresh_state()
    learn(learned, images, progress)
    return fitted_state(learned, PROFILES[profile])


def coded_bytes(state: PageState, images: list) -> int:
    return sum(len(PageModel(state, "probe").encode([image])[0]) for image in images)


def fit_and_save(images: list, output: Path, profile: str = "documents", progress=None) -> str:
    """Fit a state on ``images`` and write it to ``output``; returns its id."""
    return save_state(fit(images, profile, progress), output)
