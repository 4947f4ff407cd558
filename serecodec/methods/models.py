"""The models the payload methods share, each loaded on first use, and the model lookup in one
place: the coding model an archive names by hash is found here (shipped, installed, or the
one the caller gave), never swapped into a codec behind its back."""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from threadpoolctl import threadpool_limits

from ..adaptive import load_adaptive_model
from ..bitsback import MAX_PARTICLES
from ..coding_model import CodingModel, load_coding_model
from ..context_model import load_context_model
from ..page_model import (SHIPPED_STATES, PageModel, PageModelError, find_page_state, installed_states,
                          load_page_model, state_path)
from ..errors import InputError, ModelUnavailable, SerecodecError
from ..registry import find_by_hash, resolve_coding_model
from ..warm_start import WarmStart


class Models:
    """Settings and lazily loaded models for coding: the caller's coding model (``spec``: a
    shipped name, a ``.coding.npz`` path or a ``CodingModel``; None: the default), the adaptive
    and static context models, and the bits-back knobs."""

    def __init__(self, spec=None, engine: str = "numpy", max_batch: int = 256, threads: int = 1,
                 warm_start: bool = True, particles: int = 1) -> None:
        if not 1 <= max_batch <= 65535:
            raise InputError(f"max_batch must be in 1..65535, not {max_batch}")
        if not 1 <= particles <= MAX_PARTICLES:
            raise InputError(f"particles must be in 1..{MAX_PARTICLES}, not {particles}")
        self.spec, self.engine = spec, engine
        self.max_batch, self.threads, self.warm_start, self.particles = max_batch, threads, warm_start, particles
        self._coding: dict = {}          # full hash -> CodingModel
        self._default = None
        self._adaptive = None
        self._context = None
        self._pages: dict = {}           # state id -> PageModel
        self._page_choices = None
        self._page_files: dict = {}       # state id -> its file (found by hash)
        self.pages_paths = None          # the caller's page-model files (None: the shipped ones)
        self._pools: dict = {}            # name -> (executor, pid that made it)
        self.verify_workers = 1

    @property
    def coding(self):
        """The caller's coding model (bits-back encoding)."""
        if self._default is None:
            spec = self.spec
            self._default = spec if isinstance(spec, CodingModel) else load_coding_model(
                resolve_coding_model(spec), self.engine)
            self._coding[self._default.hash] = self._default
        return self._default

    def coding_for(self, prefix: str):
        """The coding model whose hash starts with ``prefix`` (what an archive names): the caller's
        when it matches, else (if the caller named none) a shipped or installed one."""
        if self.spec is not None:
            self.coding                  # noqa: B018 (loads the caller's model into the cache)
        for full, model in self._coding.items():
            if full.startswith(prefix):
                return model
        if self.spec is None:
            found = find_by_hash(prefix)
            if found is None:
                raise ModelUnavailable(f"archive needs coding model {prefix[:16]}…, which is neither shipped nor "
                                   f"installed; pass it with --model")
            model = load_coding_model(found, self.engine)
            self._coding[model.hash] = model
            return model
        mine = self.coding
        raise ModelUnavailable(f"archive was made with coding model {prefix[:16]}…, not this one ({mine.hash[:16]}…); "
                           f"pass the matching --model")

    @property
    def adaptive(self):
        """The adaptive context model (any size)."""
        if self._adaptive is None:
            self._adaptive = load_adaptive_model()
        return self._adaptive

    @property
    def pages(self) -> list:
        """The context-mixing page models (one per fitted state: shipped, then the user's
        installed ones) new chunks choose from."""
        if self._page_choices is None:
            paths = self.pages_paths or [state_path(name) for name in SHIPPED_STATES] + installed_states()
            try:                        # (side by side: most of a state's load is zlib, which frees the GIL)
                with ThreadPoolExecutor(max(1, min(len(paths), 4))) as pool:
                    choices = list(pool.map(load_page_model, paths))
            except PageModelError as exc:
                raise ModelUnavailable(str(exc)) from None
            for model in choices:
                self._pages.setdefault(model.state_id, model)
            self._page_choices = choices
        return self._page_choices

    def blank_tile_nats(self) -> float:
        """The coding model's -ELBO of an empty tile: a floor under what bits-back pays a tile
        (used to rule bits-back out of a page without running the networks on it)."""
        model = self.coding
        if getattr(self, "_blank", (None,))[0] != model.hash:
            with self.limited():
                blank = np.zeros((8,) + tuple(model.tile_shape), np.uint8)
                nats = model.expected_rate(blank)["neg_elbo_nats"]
            self._blank = (model.hash, 0.5 * float(nats))      # half: room for images cheaper than blank
        return self._blank[1]

    def pages_for(self, wanted: str):
        """The page model whose fitted state an archive names: the caller's or a shipped one,
        else an installed ``*.pages.npz`` with that id (loaded, kept)."""
        if wanted not in self._pages:
            model = self._load_pages(wanted)
            self._pages[wanted] = model
        return self._pages[wanted]

    def pages_to_use_up(self, wanted: str):
        """A page model of state ``wanted`` whose state the caller may code in (and so change): a
        copy of a loaded one, else one loaded from its file for this use alone, which spares a
        decoder the copy and keeps no 62 MB state after it."""
        self._load_callers_states()
        if wanted in self._pages:
            kept = self._pages[wanted]
            return PageModel(kept.working_state(), kept.state_id)
        return self._load_pages(wanted, cache=False)

    def page_state_path(self, wanted: str):
        """The file of the page-model state ``wanted`` (ModelUnavailable when there is none)."""
        self._load_callers_states()
        if wanted in self._pages:
            return None              # (loaded already: the caller's, or an earlier chunk's)
        if wanted not in self._page_files:
            found = find_page_state(wanted)      # (by hash: a decoder loads only the state it needs)
            if found is None:
                raise ModelUnavailable(f"archive needs page model {wanted}, which is neither shipped nor "
                                       f"installed (a NAME.pages.npz in the model directories)")
            self._page_files[wanted] = found
        return self._page_files[wanted]

    def _load_callers_states(self) -> None:
        if self.pages_paths:
            self.pages               # noqa: B018 (the caller's states, loaded into the cache)

    def _load_pages(self, wanted: str, cache: bool = True):
        path = self.page_state_path(wanted)
        if path is None:
            return self._pages[wanted]
        try:
            model = load_page_model(path, cache)
        except PageModelError as exc:
            raise ModelUnavailable(str(exc)) from None
        if model.state_id != wanted:             # (the file changed since it was found)
            raise ModelUnavailable(f"{path}: no longer page model {wanted}")
        return model

    @property
    def context(self):
        """The static digit context model (28x28 only)."""
        if self._context is None:
            self._context = load_context_model()
        return self._context

    def load_all(self) -> None:
        """Load the models every method may need now (before threads share this object)."""
        self.adaptive, self.context, self.pages, self.verifier()          # noqa: B018
        try:
            self.coding                      # noqa: B018
        except SerecodecError:
            pass                             # no coding model: bits-back is then refused where it is needed

    def checks_inline(self) -> None:
        """Run checks (and estimates) in the calling thread from now on: in a worker process,
        whose core is busy with its own chunks, a checking thread only competes with it (2
        workers on 2 cores, 6,000 digits verified: 23.9 s inline, 26.9 s in threads)."""
        self._pools = {name: (_Inline(), os.getpid()) for name in ("verify", "estimate")}

    def _pool(self, name: str, workers: int):
        """This process's executor ``name``: a forked worker makes its own (the threads of its
        parent's pool do not exist in it)."""
        pool, pid = self._pools.get(name, (None, None))
        if pool is None or pid != os.getpid():
            pool = ThreadPoolExecutor(workers, thread_name_prefix=f"serecodec-{name}")
            self._pools[name] = (pool, os.getpid())
        return pool

    def verifier(self):
        """The threads that check a method's output while the encoder goes on (``verify_workers``)."""
        return self._pool("verify", self.verify_workers)

    def estimator(self):
        """The thread where ``auto`` works out later candidates' estimates beside the first
        candidate's coding (``PayloadMethod.estimate_ahead``); inline in a worker process."""
        return self._pool("estimate", 1)

    def limited(self):
        """BLAS threads for the coder's products. One is the default: on a busy 2-core machine a
        second OpenBLAS thread made encoding 16x slower (benchmarks/codec.py measures both)."""
        return threadpool_limits(limits=self.threads, user_api="blas")

    def warm(self):
        """The warm-start models (static digit model for 28x28 images, adaptive for the rest)."""
        return WarmStart(self.adaptive, self.context)


class _Inline:
    """An executor that runs each task at once, in the caller's thread."""

    @staticmethod
    def submit(task, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(task(*args, **kwargs))
        except Exception as exc:          # handed to whoever reads the future, as a pool does
            future.set_exception(exc)
        return future
