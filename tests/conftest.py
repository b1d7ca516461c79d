"""Every test gets its own DDS partition prefix and ``LSST_SITE=test``; results databases on both engines."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

import pytest

from lsst.ts.rapidanalysis.results.database import ResultsDatabase
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix


@pytest.fixture(autouse=True)
def isolated_dds(monkeypatch: pytest.MonkeyPatch) -> str:
    """A random LSST_DDS_PARTITION_PREFIX, so tests never see each other's traffic."""
    monkeypatch.setenv("LSST_DDS_PARTITION_PREFIX", os.environ.get("LSST_DDS_PARTITION_PREFIX", "x"))
    prefix = set_random_lsst_dds_partition_prefix()
    monkeypatch.setenv("LSST_SITE", "test")
    return prefix


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of the session's own (`postgres_server.running_postgres`): a database's URL.

    Tests that need an empty database make one with `postgres_server.fresh_database`. Skipped, saying
    why, where there are no PostgreSQL server binaries (CI installs them: ``.ci/run``).
    """
    from postgres_server import PostgresUnavailable, running_postgres

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as e:
            pytest.skip(str(e))
        yield server.url("ra_results")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[ResultsDatabase]:
    """An empty results database: a SQLite file (under ``tmp_path/results``, a directory it makes), or
    a new database on the session's PostgreSQL server. A test module may define its own ``db``."""
    from postgres_server import fresh_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results' / 'ra.sqlite3'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_url"))
    with ResultsDatabase(url) as database:
        yield database
