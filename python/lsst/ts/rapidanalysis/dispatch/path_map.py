"""Paths as the workers see them: the raw store and output root mounted elsewhere on other hosts.

At the summit the camera's image writer puts raws on a shared filesystem that the CSC and the
worker pods mount, not necessarily at the same place. The configuration's ``path_map`` lists
directory prefixes as the CSC sees them and as the workers see them. A job's input files and
its output directory go to the worker through `PathMap.to_worker`; the product paths a worker
returns come back through `PathMap.to_csc`.

With an empty map the workers see the CSC's paths. With a map, a path outside every mapped
directory cannot be given to a worker: `PathMapError` says which path and what is mapped.
Pure logic, no filesystem access.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PathMap", "PathMapError"]


class PathMapError(ValueError):
    """A path cannot be translated: it is outside every mapped directory, or the map is malformed."""


def _clean(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise PathMapError(f"path_map {what} {path!r} is not an absolute path")
    return posixpath.normpath(path)


def _under(path: str, prefix: str) -> str | None:
    """``path`` relative to ``prefix`` ("" for the prefix itself), or None if not under it."""
    if path == prefix:
        return ""
    if prefix == "/":
        return path[1:]
    return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None


@dataclasses.dataclass(frozen=True)
class PathMap:
    """Directory prefixes as (CSC, worker) pairs; the longest matching prefix wins.

    Parameters
    ----------
    pairs : `tuple` [`tuple` [`str`, `str`]]
        (CSC directory, worker directory), absolute.
    """

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_config(cls, entries: Iterable[Mapping[str, Any]]) -> PathMap:
        """From the configuration's ``path_map`` (a list of ``{csc, worker}``).

        Raises
        ------
        PathMapError
            A path is not absolute, or a CSC directory is given twice.
        """
        pairs: list[tuple[str, str]] = []
        for entry in entries:
            csc = _clean(entry.get("csc", ""), "csc")
            worker = _clean(entry.get("worker", ""), "worker")
            if any(csc == known for known, _ in pairs):
                raise PathMapError(f"path_map gives csc {csc!r} twice")
            pairs.append((csc, worker))
        return cls(tuple(pairs))

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def to_worker(self, path: str) -> str:
        """``path`` (as the CSC sees it) as the workers see it.

        Raises
        ------
        PathMapError
            The map is not empty and no CSC directory holds ``path``.
        """
        return self._translate(path, self.pairs, "CSC", "csc")

    def to_csc(self, path: str) -> str:
        """``path`` (as a worker sees it) as the CSC sees it; unmapped paths are returned as they are.

        A worker may return a path the map does not cover (a pipeline wrote outside the output
        root): it is kept, so that the product is still reported, under its worker path.
        """
        try:
            return self._translate(path, tuple((w, c) for c, w in self.pairs), "worker", "worker")
        except PathMapError:
            return path

    def covers(self, path: str) -> bool:
        """Whether `to_worker` can translate ``path``."""
        try:
            self.to_worker(path)
        except PathMapError:
            return False
        return True

    def _translate(self, path: str, pairs: tuple[tuple[str, str], ...], side: str, key: str) -> str:
        if not pairs:
            return path
        if not path.startswith("/"):
            raise PathMapError(f"{path!r} is not an absolute path, so path_map cannot give it to the workers")
        clean = posixpath.normpath(path)
        best: tuple[int, str, str] | None = None
        for source, target in pairs:
            rest = _under(clean, source)
            if rest is not None and (best is None or len(source) > best[0]):
                best = (len(source), target, rest)
        if best is None:
            mapped = ", ".join(source for source, _ in pairs)
            raise PathMapError(
                f"{path} is not under any path_map {key} directory ({mapped}): the workers cannot be told where "
                f"it is; add its {side} directory to path_map"
            )
        _, target, rest = best
        return posixpath.join(target, rest) if rest else target

    def results_to_csc(self, value: Any) -> Any:
        """Every absolute path string in a JSON-like result (nested dicts and lists) mapped back to the CSC's."""
        if not self.pairs:
            return value
        if isinstance(value, str):
            return self.to_csc(value) if value.startswith("/") else value
        if isinstance(value, list):
            return [self.results_to_csc(v) for v in value]
        if isinstance(value, dict):
            return {k: self.results_to_csc(v) for k, v in value.items()}
        return value
