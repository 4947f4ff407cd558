"""Fitted page-model states, inflated once into a cache file that later processes map
copy-on-write.

A state ships as a compressed npz (its bytes are its id) of 62 MB of tables: inflating it took
0.24 s here, and each working copy (the kernel changes the state it codes with) another 0.15 s,
most of it the system zeroing fresh pages. Mapped privately from an uncompressed file, a state
costs nothing to load and a working copy only the pages coding writes (~0.04 s if it wrote all
of them). The file: ``MAGIC``, a JSON header (the state's id, each array's dtype, shape and
offset, the SHA-256 of the arrays), the arrays at 64-byte offsets. A process checks the digest
the first time it maps a file; one that does not match, or does not parse, is ignored (and
rewritten from the npz). ``$SERECODEC_STATE_CACHE`` names the directory, or ``off``; by
default ``page-states`` in the user cache directory, holding the KEEP states used last.
Deleting it is always safe.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from .fileio import atomic_write_bytes

MAGIC = b"SEREPAGESTATE\x00\x00\x01"
ALIGN = 64
MAX_HEADER = 1 << 16
KEEP = 6                          # files kept: the shipped states and a few of the user's (62 MB each)
_checked: set = set()            # (path, size, inode) of files whose digest this process has checked
_writing: list = []               # cache writes still running (``store_later``)


def cache_dir() -> Optional[Path]:
    setting = os.environ.get("SERECODEC_STATE_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "off", "0", "no") else Path(setting).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "serecodec" / "page-states"


def _path(state_id: str) -> Optional[Path]:
    directory = cache_dir()
    return None if directory is None else directory / f"{state_id}.state"


def _raw(array: np.ndarray) -> np.ndarray:
    """An array's bytes, without a copy (empty arrays included)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(_raw(array))
    return h.hexdigest()


def store(state_id: str, arrays: dict) -> bool:
    """Write the cache file of a state (its arrays by name); False where it cannot be written
    (no cache, a read-only or full disk): the caller then works from the npz as before."""
    path = _path(state_id)
    return path is not None and _write(path, state_id, arrays)


def _write(path: Path, state_id: str, arrays: dict) -> bool:
    entries, offset = [], 0
    for name, array in arrays.items():
        entries.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        offset += -(-array.nbytes // ALIGN) * ALIGN
    header = json.dumps({"id": state_id, "arrays": entries, "sha256": _digest(arrays.values())}).encode()
    start = -(-(len(MAGIC) + 4 + len(header)) // ALIGN) * ALIGN
    parts = [MAGIC, len(header).to_bytes(4, "little"), header, bytes(start - len(MAGIC) - 4 - len(header))]
    for array in arrays.values():
        parts += [_raw(array), bytes(-array.nbytes % ALIGN)]
    try:
        atomic_write_bytes(path, parts)
    except Exception:                     # noqa: BLE001 (a cache that cannot be written is no cache)
        return False
    _evict(path.parent)
    return True


def store_later(state_id: str, arrays: dict) -> None:
    """``store`` in a daemon thread, so that a first run does not wait for the write (62 MB, a
    spiky 0.1-1 s on this machine's disk). ``arrays`` must not change meanwhile (a loaded state
    never does: coding works in copies). An exit cuts the write short: only a temporary is left,
    which the next write of that file removes."""
    path = _path(state_id)                # (the directory as it is now, not when the thread runs)
    if path is None:
        return
    thread = threading.Thread(target=_write, args=(path, state_id, arrays), daemon=True, name="serecodec-state-cache")
    thread.start()
    _writing.append(thread)


def wait() -> None:
    """Until the writes ``store_later`` started are done."""
    while _writing:
        _writing.pop().join()


def _evict(directory: Path) -> None:
    """Keep the KEEP files used last (``load`` marks a use by the file's time)."""
    try:
        files = sorted(directory.glob("*.state"), key=lambda f: f.stat().st_mtime, reverse=True)
        for stale in files[KEEP:]:
            stale.unlink()
    except OSError:
        pass


def load(state_id: str) -> Optional[dict]:
    """The arrays of a state's cache file, mapped copy-on-write (writing to them never reaches
    the file or another mapping); None if there is no sound file for ``state_id``."""
    path = _path(state_id)
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError):
        return None
    try:
        if mapped[:len(MAGIC)] != MAGIC:
            return None
        size = int.from_bytes(mapped[len(MAGIC):len(MAGIC) + 4], "little")
        if size > MAX_HEADER:
            return None
        header = json.loads(mapped[len(MAGIC) + 4:len(MAGIC) + 4 + size])
        start = -(-(len(MAGIC) + 4 + size) // ALIGN) * ALIGN
        if header["id"] != state_id:
            return None
        arrays = {}
        for entry in header["arrays"]:
            dtype, shape = np.dtype(entry["dtype"]), tuple(int(n) for n in entry["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            at = start + int(entry["offset"])
            if dtype.hasobject or count < 0 or at < start or at + count * dtype.itemsize > len(mapped):
                return None
            arrays[entry["name"]] = np.frombuffer(mapped, dtype, count, at).reshape(shape)
        key = (str(path), info.st_size, info.st_ino)
        if key not in _checked:
            if _digest(arrays.values()) != header["sha256"]:
                return None
            _checked.add(key)
            try:
                os.utime(path)            # a use, for ``_evict``
            except OSError:
                pass
        return arrays
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError):
        return None
