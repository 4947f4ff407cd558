"""The context-mixing page model: which contexts it mixes, where its halftone pixel goes, and its
learned starting state (the C kernel that runs it is ``_page_kernel.c``).

Five context models look at the causal neighbourhood (templates from ``causal``): JBIG2's
16-pixel generic template plus an adaptive pixel, a 10-pixel one (also the APM's context), a
38-pixel one over five rows and a 25-pixel wide one (hashed), and one placed around the
halftone period that the encoder finds by autocorrelation and stores in the chunk. A match
model (layout 3) predicts that the pixels after the last place the same large context occurred
in the image follow again, which is what repeated glyphs in a text page do; a small context
model over its state and the 10-pixel context learns how far to trust it. Layout 4 gives the
mixers each context model's probability twice, as its stretch and as itself (paq8px's image
models do the same), so a mixer weighs a confident context differently from a hesitant one.
The state every chunk starts from (context probabilities and counts, mixer weights, APM) is fitted offline
on the training pages of the real-document corpus (``training/fit_pages.py``) and shipped as a
model file that the archive names by its hash, so one page codes well from its first row.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import _page_kernel, state_cache
from ._page_kernel import Pipe, code_images
from .causal import JBIG2_16, check_causal
from .errors import ArchiveError, SerecodecError
from .fileio import atomic_write_bytes
from .inputs import require_bilevel
from .page_tables import (APM_STEP, LAYERED_SETS, NEAR_SETS, PAD, RECIPROCAL, SQUASH, STATE_BITS, STRETCH,
                          STRETCH_LIMIT)
from .paths import MODELS_DIR
from .registry import search_dirs

MAX_PERIOD = 16                # the adaptive pixel's reach: dy in -16..0, dx in -16..16
NEAR_10 = ((-2, -1), (-2, 0), (-2, 1), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-1, 2), (0, -2), (0, -1))
LARGE_38 = tuple((-4, dx) for dx in range(-2, 3)) + tuple((-3, dx) for dx in range(-3, 4)) + \
    tuple((-2, dx) for dx in range(-4, 5)) + tuple((-1, dx) for dx in range(-5, 6)) + \
    tuple((0, dx) for dx in range(-6, 0))
WIDE_25 = tuple((-1, dx) for dx in range(-8, 9)) + tuple((0, dx) for dx in range(-8, 0))
TABLE_BITS = (17, 10, 22, 22, 20)        # per model: direct when the template fits, else hashed
# Count limits per model, then the row-repeat flag's, by layout: 1 and 2 keep theirs so their
# archives decode as they did; layout 3's slower hashed models won 0.3% on the held-out corpus
# (layout 4 keeps them).
LIMITS = {1: (255, 1023, 255, 255, 255, 255), 2: (255, 1023, 255, 255, 255, 255),
          3: (1023, 1023, 1023, 1023, 255, 255), 4: (1023, 1023, 1023, 1023, 255, 255)}
LAYOUT = 4                     # what fresh_state and the fits make: 1 one mixer, 2 layered, 3 layered + match,
                               # 4 the same with linear inputs beside the stretched ones
LAYOUTS = (1, 2, 3, 4)
MATCH_BITS = 18                # the match model's table of positions: at most 2^18 per image
MATCH_STATES = 3               # final mixer weight sets per match state: none, short, long
MATCH_CONTEXTS = 33            # the match context model's states (no match; predicted bit x length 0..15),
                               # each beside the 10-pixel context
APM_MODEL = 1
RUN_MODELS = (2, 3)                       # the hashed models that keep a run map
MIXER_SETS = 16
FINAL_INPUTS = 3                          # the final mixer's inputs: the three mixers' logits
APM2_CONTEXTS = 1 << 16                   # the second APM's context: the 16-pixel template
MIXER_RATE, APM_RATE = 6, 6
# The fitted starting states shipped (training/fit_pages.py), in the order the encoder tries them;
# a user's refit is NAME.pages.npz in the user model directory.
SHIPPED_STATES = ("documents", "halftones", "scans")
SAMPLE_PIXELS = 1 << 15        # the encoder picks a state by coding about this many pixels with each
PERIOD_CANDIDATES = 4          # ... and then the adaptive pixel among this many autocorrelation peaks


# The compiled kernel's own copy of the layout constants must be these (one place defines them).
_KERNEL_CONSTANTS = {"PAD": PAD, "STATE_BITS": STATE_BITS, "APM_STEP": APM_STEP, "NEAR_SETS": NEAR_SETS,
                     "LAYERED_SETS": LAYERED_SETS, "STRETCH_LIMIT": STRETCH_LIMIT, "MIXER_SETS": MIXER_SETS,
                     "FINAL_INPUTS": FINAL_INPUTS, "APM2_CONTEXTS": APM2_CONTEXTS,
                     "MATCH_STATES": MATCH_STATES, "MATCH_CONTEXTS": MATCH_CONTEXTS}
if any(getattr(_page_kernel, name) != value for name, value in _KERNEL_CONSTANTS.items()):
    raise ImportError("serecodec._page_kernel was built for another page-model layout: reinstall serecodec")


class PageModelError(SerecodecError):
    """The page model's state file is missing or damaged; the message names the file."""


def templates(at: tuple) -> list:
    """The five templates for adaptive pixel ``at`` (dy, dx)."""
    dy, dx = at
    period = [(dy + j, dx + i) for j in (-1, 0, 1) for i in (-1, 0, 1)] + [(2 * dy, 2 * dx), (0, -1), (-1, 0),
                                                                          (-1, -1), (-1, 1)]
    period = [o for o in dict.fromkeys(period) if _causal(o) and -PAD <= o[0] and abs(o[1]) <= PAD]
    return [JBIG2_16 + (at,), NEAR_10, LARGE_38, WIDE_25, tuple(period)]


def _causal(offset) -> bool:
    return offset[0] < 0 or (offset[0] == 0 and offset[1] < 0)


def check_at(at) -> tuple:
    dy, dx = int(at[0]), int(at[1])
    if not (-MAX_PERIOD <= dy <= 0 and -MAX_PERIOD <= dx <= MAX_PERIOD and _causal((dy, dx))):
        raise ArchiveError(f"corrupted archive: adaptive pixel {dy},{dx} is out of range")
    return dy, dx


def period_candidates(image: np.ndarray, count: int = 1, crop: int = 512) -> list:
    """The ``count`` causal offsets (outside the 16-pixel template) where the image best repeats
    itself, best first: the peaks of its autocorrelation over a central crop (a halftone screen's
    period; on text, some nearby offset). Computed by the encoder only and stored, so floats are
    fine here."""
    height, width = image.shape
    top, left = max(0, (height - crop) // 2), max(0, (width - 2 * crop) // 2)
    sample = image[top:top + crop, left:left + 2 * crop].astype(np.float64) * 2 - 1
    h, w = sample.shape
    if h < 2 or w < 2:
        return [(0, -5) if w > 5 else (-1, 0)]
    size = (2 * h, 2 * w)
    spectrum = np.fft.rfft2(sample, size)
    corr = np.fft.irfft2(spectrum * np.conj(spectrum), size)
    taken = set(JBIG2_16)
    scored = []
    for dy in range(-MAX_PERIOD, 1):
        for dx in range(-MAX_PERIOD, MAX_PERIOD + 1):
            if not _causal((dy, dx)) or (dy, dx) in taken or -dy >= h or abs(dx) >= w:
                continue
            overlap = (h + dy) * (w - abs(dx))
            scored.append((round(corr[dy % size[0], dx % size[1]] / overlap, 9), (dy, dx)))
    ranked = sorted(scored, key=lambda entry: -entry[0])        # stable: scan order breaks ties
    return [at for _, at in ranked[:count]] or [(0, -5)]


def find_period(image: np.ndarray, crop: int = 512) -> tuple:
    """The best of ``period_candidates``: where the fitting run places the adaptive pixel."""
    return period_candidates(image, 1, crop)[0]


@dataclass
class PageState:
    """Everything the kernel updates while coding: a chunk starts from a copy of the fitted one.

    The layout follows from the shapes: the first (one mixer, one APM) has empty ``weights2``,
    ``final`` and ``apm2``; the third has two more mixer inputs (the match model and its context
    model), their slots at the end of ``tables`` and MATCH_STATES times the final mixer's weight
    sets; the fourth one more input per context model (its linear probability). Files of every
    layout (the archives that name them) decode as they always did."""

    tables: np.ndarray       # uint32 slots of every context model, the row-repeat flag, the run maps [, the match's]
    weights: np.ndarray      # int64 (MIXER_SETS, models + run maps [+ match, its context model]
                             #        [+ models, linear] + 1)
    apm: np.ndarray          # int64 (contexts of the APM model * 33)
    runs: np.ndarray         # uint8 per context of each run-map model: run length << 1 | last value
    weights2: np.ndarray     # int64 (LAYERED_SETS, inputs) or (0, inputs)
    final: np.ndarray        # int64 ([MATCH_STATES *] MIXER_SETS, FINAL_INPUTS) or (0, FINAL_INPUTS)
    apm2: np.ndarray         # int64 (APM2_CONTEXTS * 33) or (0,)

    DTYPES = {"tables": np.uint32, "weights": np.int64, "apm": np.int64, "runs": np.uint8,
              "weights2": np.int64, "final": np.int64, "apm2": np.int64}
    ARRAYS = tuple(DTYPES)

    def copy(self) -> "PageState":
        return PageState(*(getattr(self, name).copy() for name in self.ARRAYS))

    def copy_into(self, other: Optional["PageState"]) -> "PageState":
        """``other`` overwritten with this state (reusing its memory, several times cheaper than
        ``copy`` for the encoder's probes), or a fresh copy if its layout differs."""
        if other is None or any(getattr(other, n).shape != getattr(self, n).shape for n in self.ARRAYS):
            return self.copy()
        for name in self.ARRAYS:
            np.copyto(getattr(other, name), getattr(self, name))
        return other

    @property
    def layered(self) -> bool:
        return self.final.size > 0

    @property
    def layout(self) -> int:
        """The layout whose mixer width this state has (the first: no layered mixers); 2 when
        none fits, which ``load_page_model``'s shape check then refuses."""
        if not self.layered:
            return 1
        return next((layout for layout in LAYOUTS[1:] if _inputs(layout) + 1 == self.weights.shape[1]), 2)


class Scratch:
    """One working state, reused: coding starts from a copy of the fitted state, and writing it
    over the last copy's memory took ~6 ms here where fresh memory took ~0.15 s (the system
    zeroes 62 MB of pages first). The encoder's probes (``choose``) and its coding share one."""

    def __init__(self) -> None:
        self.state: Optional[PageState] = None

    def fresh(self, model: "PageModel") -> PageState:
        """``model``'s fitted state, in this scratch's memory where the layouts agree."""
        self.state = model.working_state(self.state)
        return self.state


def _inputs(layout: int) -> int:
    """The mixers' inputs before the bias: the context models, the run maps, the match model
    and its context model, the context models' linear probabilities."""
    return len(TABLE_BITS) + len(RUN_MODELS) + 2 * (layout >= 3) + len(TABLE_BITS) * (layout >= 4)


def bases() -> np.ndarray:
    return np.concatenate([[0], np.cumsum([1 << b for b in TABLE_BITS])]).astype(np.int64)


def run_bases() -> np.ndarray:
    return np.concatenate([[0], np.cumsum([1 << TABLE_BITS[m] for m in RUN_MODELS])]).astype(np.int64)


def _identity_apm(contexts: int) -> np.ndarray:
    knots = np.arange(33, dtype=np.int64) * APM_STEP - 3072
    return np.tile(SQUASH[np.clip(knots, -3071, 3071) + 3071], contexts).astype(np.int64)


def state_shapes(layout: int = LAYOUT) -> dict:
    """Each state array's shape in a layout (what a loaded file is checked against)."""
    layered, inputs = layout > 1, _inputs(layout) + 1
    final_sets = (MATCH_STATES if layout >= 3 else 1) * MIXER_SETS if layered else 0
    match_slots = 64 + (MATCH_CONTEXTS << TABLE_BITS[1]) if layout >= 3 else 0     # (beside the 10-pixel context)
    return {"tables": (int(bases()[-1]) + 1 + 64 * len(RUN_MODELS) + match_slots,),
            "weights": (MIXER_SETS, inputs), "apm": (33 << TABLE_BITS[APM_MODEL],), "runs": (int(run_bases()[-1]),),
            "weights2": (LAYERED_SETS if layered else 0, inputs), "final": (final_sets, FINAL_INPUTS),
            "apm2": (33 * APM2_CONTEXTS if layered else 0,)}


def fresh_state(layout: int = LAYOUT) -> PageState:
    """The untrained state of a layout: every context at P = 1/2, no runs, equal mixer weights,
    identity APMs (layout 1: without the extra mixers and second APM; 2: without the match model;
    3: without the linear inputs)."""
    shapes = state_shapes(layout)
    tables = np.full(shapes["tables"], (1 << 21) << STATE_BITS, dtype=np.uint32)
    inputs = _inputs(layout)
    weights = np.full(shapes["weights"], (1 << 16) // inputs, dtype=np.int64)
    weights[:, -1] = 0
    weights2 = np.repeat(weights[:1], shapes["weights2"][0], axis=0)
    final = np.full(shapes["final"], (1 << 16) // FINAL_INPUTS, dtype=np.int64)
    apm2 = _identity_apm(shapes["apm2"][0] // 33)
    return PageState(tables, weights, _identity_apm(1 << TABLE_BITS[APM_MODEL]),
                     np.zeros(run_bases()[-1], dtype=np.uint8), weights2, final, apm2)


def _kernel_templates(at: tuple):
    temps = templates(at)
    kmax = max(len(t) for t in temps)
    offsets = np.zeros((len(temps), kmax, 2), dtype=np.int64)
    for m, t in enumerate(temps):
        check_causal(t)
        offsets[m, :len(t)] = t
    if offsets[..., 0].min() < -PAD or np.abs(offsets[..., 1]).max() > PAD:
        raise ValueError("a template reaches past the kernel's padding")
    return offsets, np.array([len(t) for t in temps], dtype=np.int64)


def _flat(images):
    heights = np.array([im.shape[0] for im in images], dtype=np.int64)
    widths = np.array([im.shape[1] for im in images], dtype=np.int64)
    pixels = np.concatenate([np.ascontiguousarray(im, dtype=np.uint8).reshape(-1) for im in images]
                            or [np.zeros(0, np.uint8)])
    return pixels, heights, widths


def run(state: PageState, decoding: bool, pixels, heights, widths, payload, at, pipe: Optional[Pipe] = None) -> tuple:
    """One call of the kernel with this model's layout (``state`` updated in place): (payload, bytes
    read) as uint8 array and int. With ``pipe``, an encoder also writes its bytes there as it goes
    and a decoder reads them from there instead of ``payload``."""
    require_bilevel(pixels, "page model input")
    offsets, lengths = _kernel_templates(at)
    edges, layout = bases(), state.layout

    def int64(values):
        return np.ascontiguousarray(values, dtype=np.int64)
    coded, read = code_images(
        bool(decoding), pixels, int64(heights), int64(widths), np.ascontiguousarray(payload, dtype=np.uint8),
        offsets, offsets.shape[1], lengths, edges[:-1], int64(TABLE_BITS), int64(LIMITS[layout]), state.tables,
        state.weights, state.apm, APM_MODEL, MIXER_RATE, APM_RATE, int(edges[-1]), SQUASH, STRETCH, RECIPROCAL,
        state.runs, int64(RUN_MODELS), run_bases()[:-1], int(edges[-1]) + 1, state.weights2, state.final,
        state.apm2, MATCH_BITS if layout >= 3 else 0, int(layout >= 4), pipe)
    return np.frombuffer(coded, dtype=np.uint8), read


class PageModel:
    """Codes runs of bilevel images of any size, starting each run from the fitted state."""

    def __init__(self, state: PageState, state_id: str, mapped: bool = False) -> None:
        self.state, self.state_id, self.mapped = state, state_id, mapped   # mapped: from its cache file

    def working_state(self, reuse: Optional[PageState] = None) -> PageState:
        """A working copy of the fitted state (the kernel changes the state it codes with),
        written over ``reuse``'s memory where the layouts agree, else a copy. (Always in
        anonymous memory: coding in a copy-on-write mapping of the cache file took 0.15 s longer
        on a page than in a copy, its 4 KB pages missing the TLB where a copy gets huge pages.)"""
        return self.state.copy_into(reuse)

    def encode(self, images, at: Optional[tuple] = None, scratch: Optional[Scratch] = None) -> tuple:
        """(payload, adaptive pixel) for a list of 0/1 images (coded in ``scratch``'s memory)."""
        if at is None:
            largest = max(images, key=lambda im: im.size)
            at = find_period(largest)
        pixels, heights, widths = _flat(images)
        payload, _ = run((scratch or Scratch()).fresh(self), False, pixels, heights, widths, np.zeros(0, np.uint8), at)
        return payload.tobytes(), at

    def encode_checked(self, images, at: tuple, threads, scratch: Optional[Scratch] = None) -> tuple:
        """(payload, check) for a list of 0/1 images: ``encode``'s payload, and a callable that
        says whether it decodes back to ``images``. The encoder runs in a thread of ``threads``
        (an executor), in ``scratch``'s memory, while the decoder runs here, reading the
        encoder's bytes through a pipe as they are written, so on two cores the check costs
        about no time. (This way round, an
        executor that runs its tasks at once in the caller, as a worker process's does, codes
        first and decodes after; the encoder never waits for anything.)"""
        pixels, heights, widths = _flat(images)
        pipe = Pipe(2 * (pixels.size + int(heights.sum())) + 64)    # the most the range coder can write
        empty = np.zeros(0, np.uint8)

        def encode() -> np.ndarray:
            try:
                return run((scratch or Scratch()).fresh(self), False, pixels, heights, widths, empty, at, pipe)[0]
            finally:
                pipe.close()                  # however it ended, the decoder finishes
        encoding = threads.submit(encode)
        back = np.zeros_like(pixels)
        _, read = run(self.working_state(), True, back, heights, widths, empty, at, pipe)
        payload = encoding.result()
        decodes_back = abs(read - len(payload)) <= 4 and np.array_equal(back, pixels)
        return payload.tobytes(), lambda: decodes_back

    def decode(self, payload: bytes, shapes, at, in_place: bool = False) -> np.ndarray:
        """Flat pixels of ``shapes``; ArchiveError if the payload does not hold them exactly.
        ``in_place``: decode in this model's own state (which then is spent), unless it is
        mapped from the cache file (see ``working_state``)."""
        heights = np.array([h for h, _ in shapes], dtype=np.int64)
        widths = np.array([w for _, w in shapes], dtype=np.int64)
        pixels = np.zeros(int((heights * widths).sum()), dtype=np.uint8)
        data = np.frombuffer(payload, dtype=np.uint8)
        state = self.state if in_place and not self.mapped else self.working_state()
        _, read = run(state, True, pixels, heights, widths, data, check_at(at))
        if read > len(payload) + 4 or read < len(payload) - 4:
            raise ArchiveError("corrupted archive: the page-model payload does not match the images")
        return pixels


def state_bytes(state: PageState) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: getattr(state, name) for name in PageState.ARRAYS})
    return buffer.getvalue()


def state_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def save_state(state: PageState, path: Path) -> str:
    raw = state_bytes(state)
    atomic_write_bytes(Path(path), raw)
    return state_id(raw)


def installed_states() -> list:
    """The user's fitted states (``NAME.pages.npz`` in the user model directory), sorted."""
    directory = search_dirs()[-1]
    return sorted(directory.glob("*.pages.npz")) if directory.is_dir() else []


def find_page_state(wanted: str) -> Optional[Path]:
    """The page-model file (shipped or in the user model directory) whose id is ``wanted``. Each
    candidate is hashed, so the current shipped states, which most archives name, go first (the
    earlier layouts' six would cost a decoder ~50 MB of reading before them)."""
    current = {state_path(name) for name in SHIPPED_STATES}
    for directory in search_dirs():
        paths = sorted(directory.glob("*.pages.npz")) if directory.is_dir() else []
        for path in sorted(paths, key=lambda p: p not in current):
            if state_id(path.read_bytes()) == wanted:
                return path
    return None


def state_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.pages.npz"


def sample(images: list) -> list:
    """What the encoder codes with each state to choose one: a band of rows from the middle of
    the largest image, or the first small images, about SAMPLE_PIXELS in all."""
    largest = max(images, key=lambda im: im.size)
    if largest.size >= SAMPLE_PIXELS:
        rows = max(1, SAMPLE_PIXELS // largest.shape[1])
        top = (largest.shape[0] - rows) // 2
        return [largest[top:top + rows]]
    out, total = [], 0
    for image in images:
        if total >= SAMPLE_PIXELS:
            break
        out.append(image)
        total += image.size
    return out


def _probe_bytes(model: "PageModel", probe: tuple, at: tuple, scratch: Scratch) -> int:
    """Bytes of the flat ``probe`` coded from ``model``'s state at adaptive pixel ``at``."""
    return len(run(scratch.fresh(model), False, *probe, np.zeros(0, np.uint8), at)[0])


def sample_size(model: "PageModel", images: list) -> tuple:
    """(bytes, pixels) of ``sample(images)`` coded from ``model``'s state, the adaptive pixel at
    the sample's own period (what ``auto`` estimates the page model's size of a chunk by)."""
    probe = sample(images)
    at = period_candidates(max(probe, key=lambda im: im.size), 1)[0]
    return _probe_bytes(model, _flat(probe), at, Scratch()), sum(im.size for im in probe)


def choose(models: list, images: list, candidates: list, scratch: Optional[Scratch] = None) -> tuple:
    """(model, adaptive pixel) that code a sample of ``images`` smallest: the fitted state at the
    first candidate, then that state's best candidate (the first one on a tie). On the corpus's
    held-out halftones the best of four autocorrelation peaks codes 1.2% smaller than the first.
    The probes run in ``scratch`` (for the coding to reuse)."""
    if len(models) == 1 and len(candidates) == 1:
        return models[0], candidates[0]
    probe, scratch = _flat(sample(images)), scratch or Scratch()
    sizes = [_probe_bytes(model, probe, candidates[0], scratch) for model in models]
    model = models[int(np.argmin(sizes))]
    by_at = [min(sizes)] + [_probe_bytes(model, probe, at, scratch) for at in candidates[1:]]
    return model, candidates[int(np.argmin(by_at))]


def _state(arrays: dict) -> PageState:
    """A state from its arrays by name (a first-layout file lacks the layered ones); ValueError
    if they do not make a state of one of the layouts."""
    if "final" not in arrays or arrays["final"].size == 0:      # the first layout: no extra mixers, no second APM
        arrays = dict(arrays, weights2=np.zeros((0, arrays["weights"].shape[1])),
                      final=np.zeros((0, FINAL_INPUTS)), apm2=np.zeros(0))
    state = PageState(*(np.asarray(arrays[name]).astype(dtype, copy=False) for name, dtype in PageState.DTYPES.items()))
    if state.weights.ndim != 2 or any(getattr(state, name).shape != shape
                                      for name, shape in state_shapes(state.layout).items()):
        raise ValueError("page-model state of the wrong layout")
    return state


def _cached_state(wanted: str) -> Optional[PageState]:
    """The state ``wanted`` from its cache file (``state_cache``), mapped copy-on-write; None
    without a sound one."""
    arrays = state_cache.load(wanted)
    try:
        return None if arrays is None else _state(arrays)
    except (ValueError, KeyError, IndexError):
        return None


def load_page_model(path: Path, cache: bool = True) -> PageModel:
    """The page model of a fitted state file: from its cache file when there is one, else
    inflated from the npz (and cached for the next process). ``cache=False``: inflated, for a
    caller that codes in the state itself (``PageModel.decode(in_place=True)``), where a mapped
    state would still need a copy."""
    path = Path(path)
    if not path.exists():
        raise PageModelError(f"{path}: no such page-model file")
    raw = path.read_bytes()
    wanted = state_id(raw)
    state = _cached_state(wanted) if cache else None
    if state is not None:
        return PageModel(state, wanted, mapped=True)
    try:
        with np.load(io.BytesIO(raw)) as blob:
            arrays = {name: blob[name] for name in blob.files if name in PageState.DTYPES}
    except Exception as exc:                    # noqa: BLE001 (any damage reads as one message)
        raise PageModelError(f"{path}: not a page-model file ({exc})") from None
    try:
        state = _state(arrays)
    except (ValueError, KeyError, IndexError) as exc:
        raise PageModelError(f"{path}: {exc}" if isinstance(exc, ValueError) else
                             f"{path}: not a page-model file ({exc})") from None
    if cache:
        state_cache.store_later(wanted, {name: getattr(state, name) for name in PageState.ARRAYS})
    return PageModel(state, wanted)
