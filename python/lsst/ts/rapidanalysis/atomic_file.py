"""Write a file atomically: the one ``write_atomic`` of the package.

A reader (the raw store, a watcher of the output root, a person with ``ls``) must never see half a
file under its final name. `write_atomic` writes the bytes under a temporary name in the same
directory (so that the rename stays on one file system), optionally fsyncs them, then renames
the file into place with `os.replace`. If anything fails on the way, the temporary file is
removed and the final name is untouched: it holds what it held before, or does not exist.

The temporary name, ``.{name}.{pid}.{thread}.tmp``, starts with a dot (hidden from ``*.fits``
globs and the raw store) and is unique to the process and thread, so that two writers of the
same path never write into each other's temporary file; the last rename wins.

This module imports nothing of the package, so that any part of it (pipelines, simulator,
results) can use it.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Iterable

__all__ = ["write_atomic", "temporary_path"]

#: Permissions of a new file (before the umask), those of ``open(path, "wb")``.
FILE_MODE = 0o666


def temporary_path(path: pathlib.Path) -> pathlib.Path:
    """The temporary name `write_atomic` writes ``path`` under, in the same directory."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: pathlib.Path | str, data: bytes | Iterable[bytes], *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either all of it or what it was before.

    Parameters
    ----------
    path : `pathlib.Path` or `str`
        The file; its directory must exist.
    data : `bytes` or iterable of `bytes`
        The content; several chunks (e.g. a header and a pixel buffer) are written one after the
        other without joining them first (no copy of a large buffer).
    fsync : `bool`
        fsync the file before renaming it (durable across a power cut, slower).

    Raises
    ------
    OSError
        If the file cannot be written or renamed; no temporary file is left behind.
    """
    path = pathlib.Path(path)
    chunks = (data,) if isinstance(data, bytes | bytearray | memoryview) else data
    tmp = temporary_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
