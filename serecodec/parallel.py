"""Chunks on every core: independent pieces of work fanned out to worker processes.

Threads were the first way (the products release the GIL), but a chunk's coding is mostly small
numpy steps and Python between the products, which hold the GIL: on 2 cores, decoding the 10k
test set with two threads took 20.6 s, with two processes 16.1 s, with one worker 33.3 s (whole
process; benchmarks/process.py and workers.py measure it). Workers are *forked* from the caller,
so they start in milliseconds with every model already loaded and the work's inputs (the images,
the archive) already in memory; only the items (spans, chunks) go to them and the results
(chunks, images) come back through pipes. Where fork is unsafe or missing (macOS, Windows) the
caller falls back to threads.

The results come back in item order whatever the worker count, and a worker computes exactly
what the caller would, so an archive does not depend on how many workers made it.
"""
from __future__ import annotations

import multiprocessing
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

from .errors import SerecodecError

_work: Callable | None = None         # set in each forked worker by _start


def fork_available() -> bool:
    """Forked workers are safe here: Linux and the BSDs (macOS's system libraries are not fork-safe)."""
    return sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()


def _start(work: Callable, setup: Callable) -> None:
    global _work
    _work = work
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the parent's to handle (it ends us)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)    # not the command line's handler: ending us is quiet
    setup()


def _call(item):
    return _work(item)


def imap_processes(work: Callable, items: Iterable, workers: int, setup: Callable = lambda: None) -> Iterator:
    """``work(item)`` for each item in forked processes, ``workers`` at a time, results in order
    (a worker takes the next item when it is free, so few results ever wait).

    ``work`` is handed over by the fork itself (never pickled), so it may be a closure over the
    caller's arrays and models; items and results are pickled; ``setup()`` runs once in each
    worker first. An exception in a worker is raised here; a worker that dies (killed, out of
    memory) is a ``SerecodecError``, not a hang; leaving the loop early ends the workers."""
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start,
                               initargs=(work, setup))
    finished = False
    try:
        futures = [pool.submit(_call, item) for item in items]    # (not map: it cancels, racing terminate)
        for future in futures:
            yield future.result()
        finished = True
    except BrokenProcessPool:
        raise SerecodecError("a worker process died (out of memory, or killed); try --threads 1") from None
    finally:
        if not finished:                   # an error or an early exit: end the workers now (the pool
            for process in list(getattr(pool, "_processes", {}).values()):     # then fails what they held)
                process.terminate()
        pool.shutdown(wait=finished)
