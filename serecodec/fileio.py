"""Safe file output: atomic writes, and decoded files that stay inside their output directory.

A reader never sees a half-written file and an interrupted write never destroys the old one:
data goes to a temporary file beside the target (``.NAME.serecodec-PID-XXXX.tmp``), then a
rename. A rename replaces a symlink itself rather than writing through it. Temporary files are
removed on every exit Python sees (errors, Ctrl-C, SIGTERM through the CLI); after a kill -9,
the next write to the same target removes those whose process is gone. Results get the usual
permissions (0666 less the umask), not mkstemp's private 0600.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path, PurePosixPath

from .container.limits import MAX_NAME_BYTES
from .container.wire import name_bytes
from .errors import InputError

TMP_MARK = ".serecodec-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(path: Path) -> None:
    prefix = "." + path.name + TMP_MARK
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(path: Path, data) -> None:
    """Write ``path`` through a temporary file beside it, renamed into place when complete (a
    reader never sees half a file; an interrupted write leaves the old file). Missing parent
    directories are created; a failure names ``path``, never the temporary. ``data``: bytes, or
    a list of bytes-like parts written one after the other (no joined copy of large arrays)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot create the output directory ({exc.strerror or exc})") from None
    _remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + TMP_MARK + f"{os.getpid()}-", suffix=".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in data if isinstance(data, list) else [data]:
                fh.write(part)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safe_relative(name: str) -> PurePosixPath:
    """A stored name as a relative path that stays inside the output directory, or InputError."""
    path = PurePosixPath(name)
    raw = name_bytes(name)
    if (path.is_absolute() or ".." in path.parts or not path.parts or "\\" in name or b"\0" in raw
            or any(len(name_bytes(part)) > 255 for part in path.parts) or len(raw) > MAX_NAME_BYTES):
        raise InputError(f"archive holds an unsafe file name {name!r}")
    return path


def safe_output_paths(names: list, suffixes: list, archive: str) -> list:
    """Relative output paths for stored names; refuses unsafe names and clashes before anything
    is written (two equal paths, or a file where another name needs a directory)."""
    paths = [safe_relative(str(safe_relative(name)) + suffix) for name, suffix in zip(names, suffixes)]
    if len(set(paths)) != len(paths):
        raise InputError(f"{archive}: holds the same file name twice; use --npy to get every image")
    directories = {parent for path in paths for parent in path.parents if parent != PurePosixPath(".")}
    clash = directories.intersection(paths)
    if clash:
        raise InputError(f"{archive}: {sorted(clash)[0]} would be both a file and a directory; use --npy")
    return paths


def write_inside(outdir: Path, relative: PurePosixPath, data: bytes) -> Path:
    """Write ``outdir/relative`` atomically, creating directories, never through a symlink below
    ``outdir`` (so nothing lands outside it)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    current = outdir
    for part in relative.parts[:-1]:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current)
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise InputError(f"{current}: is a symlink or not a directory; refusing to write through it")
    target = current / relative.parts[-1]
    if os.path.isdir(target) and not os.path.islink(target):
        raise InputError(f"{target}: is a directory")
    atomic_write_bytes(target, data)
    return target
