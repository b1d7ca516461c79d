"""Which workers may take jobs: a worker whose installed package differs from the CSC's gets none.

A job's code runs on the worker from the worker's own installation. A worker with another
version of ``lsst-ts-rapidanalysis`` (an image not yet rolled out, a host left behind) would run
other pipelines than the ones the CSC validated the configuration against, and write results of
another shape. The pool asks each worker once, when it joins (`worker_identity`, run on the
worker), and `exclusion` says why a worker may not take jobs ("" when it may).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

__all__ = ["WorkerIdentity", "exclusion", "worker_identity"]


def worker_identity() -> dict[str, str]:
    """What a worker says of itself (runs on the worker, through ``Client.run``)."""
    from .. import __version__

    return {"version": __version__, "host": socket.gethostname(), "pid": str(os.getpid())}


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    """A worker's answer to `worker_identity`, or why it gave none.

    Attributes
    ----------
    version : `str`
        Its ``lsst-ts-rapidanalysis`` version ("" if it did not say).
    host : `str`
        Its host name.
    error : `str`
        Why it could not say (e.g. the package cannot be imported there); "" if it said.
    """

    version: str = ""
    host: str = ""
    error: str = ""

    @classmethod
    def from_answer(cls, answer: Any) -> WorkerIdentity:
        """From what ``Client.run(..., on_error="return")`` gave for one worker."""
        if isinstance(answer, BaseException):
            return cls(error=f"{type(answer).__name__}: {answer}")
        if not isinstance(answer, dict):
            return cls(error=f"it answered {answer!r:.80}")
        return cls(version=str(answer.get("version", "")), host=str(answer.get("host", "")))


def exclusion(identity: WorkerIdentity, csc_version: str) -> str:
    """Why a worker may take no jobs, or "" if it may.

    Parameters
    ----------
    identity : `WorkerIdentity`
        What the worker said.
    csc_version : `str`
        The CSC's own version.
    """
    if identity.error:
        return f"it could not say its lsst-ts-rapidanalysis version ({identity.error})"
    if identity.version != csc_version:
        return f"it has lsst-ts-rapidanalysis {identity.version or '(none)'}, the CSC {csc_version}"
    return ""
