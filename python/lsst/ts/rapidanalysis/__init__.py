"""Rapid Analysis CSC for the Rubin Observatory summit."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lsst-ts-rapidanalysis")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "?"
