"""The page's results database: opened on first use, from a thread, never created."""

from __future__ import annotations

import os
import threading
from typing import Any

from ..results.database import ResultsDatabase

__all__ = ["DatabaseUnavailable", "PageSource"]


class DatabaseUnavailable(RuntimeError):
    """The results database cannot be read (yet): the pages say so with a 503."""


class PageSource:
    """The results database and its `PageQueries`, opened on first use (from a thread).

    A page served before the CSC made the database (the demo starts both at once) shows a 503
    saying why, and works as soon as the database exists.

    Parameters
    ----------
    database : `str`, path-like or `ResultsDatabase`
        A SQLAlchemy URL or a SQLite file path (opened without creating anything), or an open
        database.
    """

    def __init__(self, database: str | os.PathLike[str] | ResultsDatabase) -> None:
        self._lock = threading.Lock()
        self._queries: Any = None
        self._database: ResultsDatabase | None = None
        self._owned = False
        if isinstance(database, ResultsDatabase):
            self._database = database
            self.description = repr(database)
        else:
            self._url = database
            self.description = str(database)

    def queries(self) -> Any:
        """The `PageQueries` (call from a thread: opening may block).

        Raises
        ------
        DatabaseUnavailable
            If the database cannot be opened.
        """
        with self._lock:
            if self._queries is None:
                from .queries import PageQueries

                if self._database is None:
                    try:
                        self._database = ResultsDatabase(self._url, create=False)
                    except Exception as e:
                        raise DatabaseUnavailable(f"results database {self.description}: {e}") from e
                    self._owned = True
                self._queries = PageQueries(self._database)
            return self._queries

    def close(self) -> None:
        """Close the database if this opened it."""
        with self._lock:
            if self._owned and self._database is not None:
                self._database.close()
            self._database = None
            self._queries = None
