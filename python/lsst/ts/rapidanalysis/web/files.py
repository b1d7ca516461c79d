"""Which product files the page may serve: only regular files under the output root.

A request names a file by its path relative to the output root (``/files/<relative path>``).
Anything that could reach outside the root is refused the same way (None, a 404 to the browser):
``..`` segments, encoded or double-encoded (``%2e%2e``, ``%252e%252e``), absolute paths,
backslashes, NUL and other control characters, and symbolic links whose target resolves outside
the root. The check is made on the resolved path, so a link inside the root to a file inside it
is fine, and whatever the URL decoding did, the file served is under the root. The results
database, which the CSC keeps under the output root by default, is not a product: not served.
"""

from __future__ import annotations

import os
import pathlib
import urllib.parse

__all__ = ["resolve_product", "product_href"]

#: Prefix of the URLs of product files.
FILES_PREFIX = "/files/"
#: Files under the output root that are never served: the results database and its journals.
_DATABASE_SUFFIXES = (".sqlite3", ".sqlite", ".db")


def _unsafe(part: str) -> bool:
    """A path segment that must not appear: empty-ish, dot segments, or characters no product name has."""
    if part in ("", ".", ".."):
        return True
    return any(ord(c) < 32 or c in "\\\x7f" for c in part)


def _is_database(name: str) -> bool:
    """A SQLite database or its journal (the CSC keeps results.sqlite3 under the output root): not a product."""
    lowered = name.lower()
    for suffix in ("-wal", "-shm", "-journal"):
        lowered = lowered.removesuffix(suffix)
    return lowered.endswith(_DATABASE_SUFFIXES)


def resolve_product(output_root: pathlib.Path, relative: str) -> pathlib.Path | None:
    """The file a ``/files/`` request names, or None if it must not be served.

    Parameters
    ----------
    output_root : `pathlib.Path`
        The products' root directory (resolved here too).
    relative : `str`
        The path after ``/files/``, as the router decoded it once.

    Returns
    -------
    path : `pathlib.Path` or None
        The resolved path of a regular file under ``output_root``; None for anything else.
    """
    # A second round of decoding must not change anything: "%2e%2e" that survived the first
    # decoding is an attempt at "..", and so is any "%" sequence in a product name.
    if "%" in relative or relative.startswith("/") or "\x00" in relative:
        return None
    parts = relative.split("/")
    if any(_unsafe(part) for part in parts):
        return None
    try:
        root = output_root.resolve(strict=True)
        candidate = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, an embedded NUL
        return None
    if not candidate.is_relative_to(root) or candidate == root:
        return None
    if not candidate.is_file() or _is_database(candidate.name):
        return None
    return candidate


def product_href(output_root: pathlib.Path, path: str | os.PathLike[str]) -> str | None:
    """The page's URL of a product file, or None if it is not under the output root.

    Parameters
    ----------
    output_root : `pathlib.Path`
        The products' root directory.
    path : `str` or path-like
        The product's path as the results database has it (absolute on the CSC's machine).
    """
    text = os.fspath(path)
    if not text:
        return None
    try:
        root = output_root.resolve()
        candidate = pathlib.Path(text)
        if not candidate.is_absolute():
            candidate = root / candidate
        relative = _under(candidate.resolve(), root) or _moved(candidate, root)
    except (OSError, RuntimeError, ValueError):
        return None
    if relative is None or not relative.parts:
        return None
    return FILES_PREFIX + "/".join(urllib.parse.quote(part, safe="") for part in relative.parts)


def _under(path: pathlib.Path, root: pathlib.Path) -> pathlib.PurePath | None:
    return path.relative_to(root) if path.is_relative_to(root) else None


def _moved(path: pathlib.Path, root: pathlib.Path) -> pathlib.PurePath | None:
    """Where a product recorded elsewhere is under ``root`` (the output root moved, or was mounted
    at another path): the longest tail of its path, of at least ``<instrument>/<dayObs>/<image>/
    <job>/<file>``'s last three parts, that is a file under the root."""
    parts = path.parts
    for start in range(1, len(parts) - 2):
        tail = pathlib.PurePath(*parts[start:])
        found = (root / tail).resolve()
        if found.is_relative_to(root) and found.is_file():
            return found.relative_to(root)
    return None
