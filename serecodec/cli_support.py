"""What every ``serecodec`` command shares: expected errors as one line and exit status 1 (never
a traceback), progress bars on terminals only, and the gzip habits for files and stdio."""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from pathlib import Path

import click

from .errors import InputError, SerecodecError

SUFFIX = ".sere"


def friendly_errors(func):
    """Expected errors become one line on stderr and exit status 1, never a traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        previous = signal.signal(signal.SIGTERM, terminate) if main_thread() else None
        try:
            return func(*args, **kwargs)
        except SerecodecError as exc:
            fail(str(exc))
        except MemoryError:
            fail("out of memory (try a smaller input, or raise the machine's memory)")
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            click.echo("serecodec: interrupted", err=True)
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def terminate(signum, frame):
    raise KeyboardInterrupt      # runs the same clean-up (temporary files removed) as Ctrl-C


def fail(message: str) -> None:
    click.echo(f"serecodec: error: {message}", err=True)
    sys.exit(1)


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_existing(path: Path, force: bool) -> None:
    if (path.exists() or path.is_symlink()) and not force:
        raise InputError(f"{path}: already exists (use -f to overwrite)")


def read_input_bytes(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an archive") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None


def write_stdout(data: bytes) -> None:
    if sys.stdout.isatty():
        raise InputError("refusing to write binary data to a terminal (use -o FILE or a pipe)")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
