"""One base for every expected failure, so a caller (and the CLI) can catch them all at once.

An expected failure is anything a user can cause: a bad or hostile file, a missing model, an
existing output. Each subclass names the file and the problem in its message; the CLI prints
that one line and exits 1. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class SerecodecError(Exception):
    """An expected failure; ``str(exc)`` is one line naming the file and the problem."""


class InputError(SerecodecError, ValueError):
    """Bad user input (an image, an array, a name, an option); the message names it."""


class ArchiveError(SerecodecError, ValueError):
    """The bytes are not a readable archive, or do not decode to its checksum; the message says why."""


class LimitError(SerecodecError, ValueError):
    """The input or archive asks for more pixels, images or memory than the configured limit."""


class VerificationError(SerecodecError, RuntimeError):
    """A fresh archive did not decode to its input: a bug, never written to disk."""


class ModelUnavailable(ArchiveError):
    """The archive names a coding model that is neither given, shipped nor installed: the
    archive may be intact, but this installation cannot decode it."""
