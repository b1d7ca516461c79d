"""Dispatching jobs to the Dask worker pool."""

from .job_manager import *  # noqa: F403
from .jobs import *  # noqa: F403
from .pool import *  # noqa: F403
