"""Progress bars: tqdm's on a terminal, else a silent stand-in, so that quiet runs and pipes
never import tqdm (~35 ms of every command's start-up)."""
from __future__ import annotations

import sys
from contextlib import nullcontext


class SilentBar:
    """What a disabled bar does: nothing, with tqdm's methods the commands call."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "") -> None:
        pass


def silent_bar(total: int = 0, desc: str = ""):
    return nullcontext(SilentBar())


def progress_bar(total: int, desc: str, quiet: bool, least: int = 512):
    """A progress bar on a terminal only (never in pipes or logs), for work of at least ``least`` items."""
    if quiet or total < least or not sys.stderr.isatty():
        return silent_bar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)
