"""Every test gets its own DDS partition prefix and ``LSST_SITE=test``."""

from __future__ import annotations

import os

import pytest

from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix


@pytest.fixture(autouse=True)
def isolated_dds(monkeypatch: pytest.MonkeyPatch) -> str:
    """A random LSST_DDS_PARTITION_PREFIX, so tests never see each other's traffic."""
    monkeypatch.setenv("LSST_DDS_PARTITION_PREFIX", os.environ.get("LSST_DDS_PARTITION_PREFIX", "x"))
    prefix = set_random_lsst_dds_partition_prefix()
    monkeypatch.setenv("LSST_SITE", "test")
    return prefix
